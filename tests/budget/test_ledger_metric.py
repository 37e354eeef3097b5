"""qgov_ledger_unavailable_total, what the alert QgovLedgerUnreachable reads: the budget status writer
counts each attempt that finds the ledger's database unreachable, and nothing while it answers."""

from __future__ import annotations

import threading

from prometheus_client import REGISTRY

from governance.budget.errors import DatabaseUnavailable
from governance.handlers.budgetstatus import BudgetStatusWriter


def unavailable_count() -> float:
    return REGISTRY.get_sample_value("qgov_ledger_unavailable_total") or 0.0


def test_each_attempt_that_finds_the_ledger_unreachable_is_counted_until_it_answers() -> None:
    outage = threading.Event()
    outage.set()
    reported, answered = threading.Semaphore(0), threading.Event()

    def write(key: tuple[str, str]) -> None:
        if outage.is_set():
            raise DatabaseUnavailable("database postgresql://***@db/qgov: connection refused")
        answered.set()

    writer = BudgetStatusWriter(write, lambda key: None, lambda key, exc: reported.release(), min_interval=0.05)
    before = unavailable_count()
    writer.start()
    try:
        writer.mark(("team-a", "lab"))
        assert reported.acquire(timeout=10)  # the first failed write ...
        assert reported.acquire(timeout=10)  # ... and its retry, nobody marking it again
        assert unavailable_count() >= before + 2
        outage.clear()
        assert answered.wait(timeout=10)
        settled = unavailable_count()
        writer.mark(("team-a", "lab"))  # a write that goes through counts nothing
        answered.clear()
        assert answered.wait(timeout=10)
        assert unavailable_count() == settled
    finally:
        writer.stop()
