"""Budgets' statuses, written when something they show changed, and each budget woken at its
period's end. One thread for every budget of the cluster.

A kopf timer per budget ran every second for every budget, busy or idle (admit the queue, maybe
rewrite the status): about 1 ms of CPU per budget per second, a whole core at 1,000 namespaces
doing nothing. Nothing in a budget's status changes by itself except at a period's end: every
other change comes with an event the operator already handles (a reservation, a settlement, a
job changing phase, a spec change). So those mark the budget (`mark`), and the writer writes its
status at most once per `min_interval` (a burst of N jobs costs N marks and a write a second),
and only when the status differs from what it last wrote. At a period's end, the writer admits
the budget's queue (the new period has funds) and writes the new period's figures; on start,
kopf's resume of every budget catches up whatever rolled over while the operator was down.

While the ledger cannot be reached, a marked budget says so (Ready=False, LedgerUnavailable,
one Warning Event) and is tried again every HANDLER_RETRY_SECONDS until the ledger answers.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from .. import metrics
from ..budget.errors import DatabaseUnavailable, UnknownBudget
from .alarms import Alarms
from .retrying import HANDLER_RETRY_SECONDS
from .context import KopfContext

log = logging.getLogger("qgov.budgetstatus")

Key = tuple[str, str]  # (namespace, budget name)


class BudgetStatusWriter:
    def __init__(self, write: Callable[[Key], datetime | None], rollover: Callable[[Key], None],
                 unavailable: Callable[[Key, DatabaseUnavailable], None], min_interval: float = 1.0,
                 kopf_context: KopfContext | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        """`write(key)` writes the budget's status if it changed and returns its period's end (None:
        no end); `rollover(key)` admits its queue at a period's end; `unavailable(key, exc)` says
        the ledger is down. A budget that is gone raises UnknownBudget and is forgotten. Each runs
        in a kopf handler's context (`kopf_context`: kopf.event needs it). `clock`: the seconds that
        min_interval is measured in (tests pass their own)."""
        self._clock = clock
        self._write, self._rollover, self._unavailable = write, rollover, unavailable
        self._kopf_context = kopf_context or KopfContext()
        self.min_interval = min_interval
        self._due: dict[Key, float] = {}  # marked budgets -> monotonic time they may be written
        self._last: dict[Key, float] = {}  # monotonic time of each budget's last write
        self._ends = Alarms(self._period_ended, "qgov-budget-periods")
        self._wake = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="qgov-budget-status", daemon=True)

    def start(self) -> None:
        self._thread.start()
        self._ends.start()

    def stop(self) -> None:
        with self._wake:
            self._stopped = True
            self._wake.notify()
        self._thread.join(10)
        self._ends.stop()

    def mark(self, key: Key, *, delay: float = 0.0) -> None:
        """The budget's status may have changed: write it soon (at most once per min_interval)."""
        now = self._clock()
        with self._wake:
            due = max(now + delay, self._last.get(key, 0.0) + self.min_interval)
            if key not in self._due or due < self._due[key]:
                self._due[key] = due
                self._wake.notify()

    def forget(self, key: Key) -> None:
        """The budget is gone."""
        with self._wake:
            self._due.pop(key, None)
            self._last.pop(key, None)
        self._ends.cancel(key)
        metrics.forget_budget(key)

    def pending(self) -> int:
        """Budgets marked and not written yet."""
        with self._wake:
            return len(self._due)

    def _next(self) -> list[Key]:
        """Wait until a marked budget is due; return those that are (none: stopped)."""
        with self._wake:
            while not self._stopped:
                now = self._clock()
                due = [k for k, t in self._due.items() if t <= now]
                for key in due:
                    del self._due[key]
                if due:
                    return due
                self._wake.wait(min(self._due.values()) - now if self._due else None)
            return []

    def _run(self) -> None:
        while due := self._next():
            for key in due:
                self._attempt(key, self._write_one)

    def _write_one(self, key: Key) -> None:
        end = self._write(key)
        with self._wake:
            self._last[key] = self._clock()
        if end is None:
            self._ends.cancel(key)
        else:
            self._ends.set(key, end.timestamp())

    def _period_ended(self, key: Key) -> None:
        if self._attempt(key, self._rollover):
            self.mark(key)  # the new period's figures
        else:  # the period still ended: admit its queue once the ledger answers
            self._ends.set(key, time.time() + HANDLER_RETRY_SECONDS)

    def _attempt(self, key: Key, work: Callable[[Key], Any]) -> bool:
        """work(key); False when it must be tried again (it is marked or re-armed by the caller)."""
        try:
            self._kopf_context.run(work, key)  # kopf.event needs a handler's context
            return True
        except UnknownBudget:
            self.forget(key)
            return True
        except DatabaseUnavailable as exc:
            metrics.ledger_unavailable()
            self._quietly(self._unavailable, key, exc)
        except Exception as exc:  # noqa: BLE001 - one budget's failure must not stop the others
            log.warning(f"budget {key[0]}/{key[1]}: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}")
        self.mark(key, delay=HANDLER_RETRY_SECONDS)
        return False

    @staticmethod
    def _quietly(fn: Callable[..., Any], *args: Any) -> None:
        try:
            fn(*args)
        except Exception as exc:  # noqa: BLE001 - reporting the outage may fail too (the API)
            log.debug(f"budget status: {type(exc).__name__}: {exc}")
