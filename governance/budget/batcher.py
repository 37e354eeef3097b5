"""Group commit for reservations: concurrent callers share one transaction per budget.

Every reservation against a budget serialises on that budget's row lock, so one
transaction per request caps throughput at 1 / (lock hold time). Kubernetes' ResourceQuota
admission batches per namespace for the same reason. Callers hand their request to one
flusher thread, which takes everything pending, decides it in `Ledger.reserve_many` (one
lock, one commit per budget) and wakes the callers. Under no load a batch is one request,
so latency stays that of a single transaction; under load batches grow by themselves.

Lingering (like PostgreSQL's commit_delay, but adaptive): the callers just served usually
come straight back with their next request. Taking only what is pending the moment a batch
commits splits N steady callers into two alternating half-size batches, so after a batch
the flusher waits, at most `linger` seconds, until as many requests are pending as callers
were just served plus those already waiting. With one caller that is one request: no
wait. A caller that does not come back costs the others at most `linger` once.
"""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import Future

from .ledger import Ledger
from .types import ReserveOutcome, ReserveRequest


class ReservationBatcher:
    def __init__(self, ledger: Ledger, *, max_batch: int = 256, linger: float = 0.001) -> None:
        self.ledger = ledger
        self.max_batch = max_batch
        self.linger = linger
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
        expect = 1
        while True:
            with self._wake:
                while not self._pending and not self._closed:
                    self._wake.wait()
                if not self._pending and self._closed:
                    return
                deadline = time.monotonic() + self.linger
                while len(self._pending) < expect and not self._closed:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._wake.wait(left)
                batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
            outcomes_by_future = self._decide(batch)
            with self._wake:  # count before waking the callers, or those already back count twice
                expect = min(self.max_batch, len(batch) + len(self._pending))
            for future, result in outcomes_by_future:
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)

    def _decide(
        self, batch: list[tuple[ReserveRequest, Future[ReserveOutcome]]]
    ) -> list[tuple[Future[ReserveOutcome], ReserveOutcome | BaseException]]:
        """Decide a batch, one `reserve_many` per budget: one budget's failure (say, unknown)
        fails only its own callers."""
        results: list[tuple[Future[ReserveOutcome], ReserveOutcome | BaseException]] = []
        groups: dict[tuple[str, str], list[tuple[ReserveRequest, Future[ReserveOutcome]]]] = {}
        for item in batch:
            groups.setdefault((item[0].namespace, item[0].budget), []).append(item)
        for group in groups.values():
            try:
                outcomes = self.ledger.reserve_many([request for request, _ in group])
            except BaseException as exc:  # noqa: BLE001 - every waiting caller must learn of the failure
                results.extend((future, exc) for _, future in group)
            else:
                results.extend((future, outcome) for (_, future), outcome in zip(group, outcomes, strict=True))
        return results
