"""The budget status writer: one thread for every budget, writing a status only when marked (at
most once per interval), waking a budget at its period's end, waiting out a ledger outage."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone

import pytest

from governance.budget.errors import DatabaseUnavailable, UnknownBudget
from governance.handlers.budgetstatus import BudgetStatusWriter

A, B = ("team-a", "a"), ("team-b", "b")


class Calls:
    def __init__(self) -> None:
        self.log: list[tuple[str, tuple[str, str]]] = []
        self.changed = threading.Condition()
        self.fail_writes: Exception | None = None
        self.period_end: datetime | None = None
        self.next_period_end: datetime | None = None  # what the period after a rollover ends at

    def record(self, what: str, key: tuple[str, str]) -> None:
        with self.changed:
            self.log.append((what, key))
            self.changed.notify_all()

    def write(self, key: tuple[str, str]) -> datetime | None:
        self.record("write", key)
        if self.fail_writes is not None:
            raise self.fail_writes
        return self.period_end

    def rollover(self, key: tuple[str, str]) -> None:
        self.period_end = self.next_period_end
        self.record("rollover", key)

    def unavailable(self, key: tuple[str, str], exc: DatabaseUnavailable) -> None:
        self.record("unavailable", key)

    def wait_for(self, check: Callable[[list], bool], timeout: float = 10) -> list:
        with self.changed:
            assert self.changed.wait_for(lambda: check(self.log), timeout), self.log
            return list(self.log)


@pytest.fixture
def calls() -> Calls:
    return Calls()


@pytest.fixture
def writer(calls: Calls) -> Iterator[BudgetStatusWriter]:
    w = BudgetStatusWriter(calls.write, calls.rollover, calls.unavailable, min_interval=0.2)
    w.start()
    yield w
    w.stop()


def test_a_burst_of_marks_is_one_write_and_nothing_unmarked_is_written(calls) -> None:
    """The interval is measured by the writer's own clock, moved by hand here: however slowly the
    machine makes the 200 marks, they fall within one interval."""
    now = [100.0]
    writer = BudgetStatusWriter(calls.write, calls.rollover, calls.unavailable, min_interval=0.2,
                                clock=lambda: now[0])
    writer.start()
    try:
        for _ in range(200):
            writer.mark(A)
        calls.wait_for(lambda log: ("write", A) in log)
        time.sleep(0.6)  # real time passes, the interval does not: nothing more is written
        assert calls.log == [("write", A)]
        now[0] += 0.2  # the interval is over: a budget marked meanwhile (the burst's late marks) may go
        writer.mark(A)
        writer.mark(B)
        log = calls.wait_for(lambda log: len(log) == 3)
        assert sorted(log[1:]) == [("write", A), ("write", B)]
        time.sleep(0.3)
        assert len(calls.log) == 3  # one write each, the burst's included
    finally:
        writer.stop()


def test_the_period_end_wakes_the_budget_then_its_status_is_written(writer, calls) -> None:
    calls.period_end = datetime.now(timezone.utc) + timedelta(seconds=0.5)  # then a period without end
    writer.mark(A)
    log = calls.wait_for(lambda log: log.count(("write", A)) == 2)
    assert log == [("write", A), ("rollover", A), ("write", A)]
    time.sleep(0.5)
    assert len(calls.log) == 3


def test_an_outage_is_reported_and_the_write_tried_again_until_the_ledger_answers(writer, calls) -> None:
    calls.fail_writes = DatabaseUnavailable("database postgresql://***@db/qgov: connection refused")
    writer.mark(A)
    calls.wait_for(lambda log: ("unavailable", A) in log)
    calls.fail_writes = None
    log = calls.wait_for(lambda log: log.count(("write", A)) == 2)  # retried by itself, nobody marked it
    assert log == [("write", A), ("unavailable", A), ("write", A)]


def test_a_budget_that_is_gone_is_forgotten(writer, calls) -> None:
    calls.fail_writes = UnknownBudget("gone")
    writer.mark(A)
    calls.wait_for(lambda log: ("write", A) in log)
    time.sleep(0.5)
    assert calls.log == [("write", A)] and writer.pending() == 0
