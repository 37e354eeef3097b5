"""Wake-ups at wall-clock times for many objects, on one thread: a finished job's time to live,
a budget's period end. A kopf timer per object costs CPU every interval for every idle object;
this costs nothing until something is due."""

from __future__ import annotations

import heapq
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("qgov.alarms")
RETRY_SECONDS = 30.0  # an alarm whose work failed rings again this much later


class Alarms:
    """Wake-ups at wall-clock times for many keys, on one thread; a key's new time replaces its old."""

    def __init__(self, fire: Callable[[Any], None], name: str) -> None:
        self._fire = fire
        self._heap: list[tuple[float, Any]] = []
        self._at: dict[Any, float] = {}  # the live time of each key (older heap entries are stale)
        self._wake = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with self._wake:
            self._stopped = True
            self._wake.notify()
        self._thread.join(10)

    def set(self, key: Any, at: float) -> None:
        with self._wake:
            if self._at.get(key) == at:
                return
            self._at[key] = at
            heapq.heappush(self._heap, (at, key))
            self._wake.notify()

    def cancel(self, key: Any) -> None:
        with self._wake:
            self._at.pop(key, None)

    def __len__(self) -> int:
        with self._wake:
            return len(self._at)

    def _due(self) -> list[Any]:
        with self._wake:
            while not self._stopped:
                now = time.time()
                due = []
                while self._heap and (self._heap[0][0] <= now or self._at.get(self._heap[0][1]) != self._heap[0][0]):
                    at, key = heapq.heappop(self._heap)
                    if self._at.get(key) == at:
                        del self._at[key]
                        due.append(key)
                if due:
                    return due
                self._wake.wait(self._heap[0][0] - now if self._heap else None)
            return []

    def _run(self) -> None:
        while True:
            due = self._due()
            if not due:
                return
            for key in due:
                try:
                    self._fire(key)
                except Exception as exc:  # noqa: BLE001 - tried again a little later
                    log.warning(f"{key}: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}")
                    self.set(key, time.time() + RETRY_SECONDS)
