"""Group commit for reservations: concurrent callers share one transaction per budget.

Every reservation against a budget serialises on that budget's row lock, so one
transaction per request caps throughput at 1 / (lock hold time). Kubernetes' ResourceQuota
admission batches per namespace for the same reason. Callers hand their request to one
flusher thread, which takes everything pending, decides it in `Ledger.reserve_many` (one
lock, one commit per budget) and wakes the callers. Under no load a batch is one request,
so latency stays that of a single transaction; under load batches grow by themselves.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future

from .ledger import Ledger
from .types import ReserveOutcome, ReserveRequest


class ReservationBatcher:
    def __init__(self, ledger: Ledger, *, max_batch: int = 256) -> None:
        self.ledger = ledger
        self.max_batch = max_batch
        self._pending: list[tuple[ReserveRequest, Future[ReserveOutcome]]] = []
        self._wake = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="qgov-reservation-flusher", daemon=True)
        self._thread.start()

    def submit(self, request: ReserveRequest) -> Future[ReserveOutcome]:
        future: Future[ReserveOutcome] = Future()
        with self._wake:
            if self._closed:
                raise RuntimeError("the reservation batcher is closed")
            self._pending.append((request, future))
            self._wake.notify()
        return future

    def reserve(self, request: ReserveRequest) -> ReserveOutcome:
        """Blocking: for threads (kopf's sync handlers run in a thread pool)."""
        return self.submit(request).result()

    async def reserve_async(self, request: ReserveRequest) -> ReserveOutcome:
        """Non-blocking: for coroutines on kopf's event loop."""
        return await asyncio.wrap_future(self.submit(request))

    def close(self) -> None:
        with self._wake:
            self._closed = True
            self._wake.notify()
        self._thread.join()

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._pending and not self._closed:
                    self._wake.wait()
                if not self._pending and self._closed:
                    return
                batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
            groups: dict[tuple[str, str], list[tuple[ReserveRequest, Future[ReserveOutcome]]]] = {}
            for item in batch:
                groups.setdefault((item[0].namespace, item[0].budget), []).append(item)
            for group in groups.values():  # one budget's failure (say, unknown) fails only its callers
                try:
                    outcomes = self.ledger.reserve_many([request for request, _ in group])
                except BaseException as exc:  # noqa: BLE001 - every waiting caller must learn of the failure
                    for _, future in group:
                        future.set_exception(exc)
                else:
                    for (_, future), outcome in zip(group, outcomes):
                        future.set_result(outcome)
