"""Money that was spent is never dropped: work that ran is charged even when its reservation was
released (a late charge), and the ledger, its report and verify() all show it."""

from __future__ import annotations

from sqlalchemy import select

from governance.budget.ledger import Ledger
from governance.budget.models import LedgerEntry
from governance.budget.report import period_window, render
from governance.budget.types import BudgetSpec, Decision, ReserveRequest

NS = "team-a"
USD = 1_000_000


def budget(ledger: Ledger, limit: int, **kw) -> None:
    ledger.upsert_budget(BudgetSpec(NS, NS, limit, **kw))


def req(key: str, amount: int) -> ReserveRequest:
    return ReserveRequest(key, NS, NS, amount, job=f"{NS}/{key}", backend="fake_manila")


def entries(ledger: Ledger, key: str) -> list[tuple[str, int, int]]:
    with ledger.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(
            select(LedgerEntry.kind, LedgerEntry.held_delta, LedgerEntry.spent_delta)
            .where(LedgerEntry.reservation_key == key).order_by(LedgerEntry.id))]


def test_work_that_ran_after_its_reservation_was_released_is_charged_late(ledger: Ledger) -> None:
    budget(ledger, 12 * USD)
    ledger.reserve(req("ran", 300_000))
    ledger.release("ran")  # released by mistake while its pod ran
    outcome = ledger.settle("ran", 300_000, ran=True)
    assert outcome.late and not outcome.replayed and outcome.actual_micro == 300_000
    assert outcome.overrun_micro == 300_000  # no hold covered any of it
    row = ledger.reservation("ran")
    assert row.state == "settled" and row.actual_micro == 300_000 and row.message.startswith("late charge")
    assert entries(ledger, "ran") == [("reserve", 300_000, 0), ("release", -300_000, 0), ("late", 0, 300_000)]
    balance = ledger.balance(NS, NS)
    assert (balance.spent_micro, balance.held_micro) == (300_000, 0)
    assert ledger.verify() == []
    again = ledger.settle("ran", 300_000, ran=True)  # a replay (a second operator) charges nothing twice
    assert again.replayed and again.late and ledger.balance(NS, NS).spent_micro == 300_000
    assert entries(ledger, "ran")[-1] == ("late", 0, 300_000) and len(entries(ledger, "ran")) == 3


def test_without_ran_a_released_reservation_still_cannot_be_settled(ledger: Ledger) -> None:
    import pytest

    from governance.budget.errors import InvalidTransition

    budget(ledger, 12 * USD)
    ledger.reserve(req("a", USD))
    ledger.release("a")
    with pytest.raises(InvalidTransition, match="released, not held"):
        ledger.settle("a", USD)
    assert ledger.balance(NS, NS).spent_micro == 0


def test_nothing_used_means_nothing_charged_late(ledger: Ledger) -> None:
    budget(ledger, 12 * USD)
    ledger.reserve(req("idle", USD))
    ledger.release("idle")
    outcome = ledger.settle("idle", 0, ran=True)
    assert not outcome.late and outcome.actual_micro == 0
    assert ledger.reservation("idle").state == "released"
    assert entries(ledger, "idle") == [("reserve", USD, 0), ("release", -USD, 0)]


def test_a_held_reservation_settles_as_usual_with_ran(ledger: Ledger) -> None:
    budget(ledger, 12 * USD)
    ledger.reserve(req("a", USD))
    outcome = ledger.settle("a", 700_000, ran=True)
    assert not outcome.late and outcome.released_micro == 300_000 and outcome.overrun_micro == 0
    assert ledger.verify() == []


def test_work_that_ran_while_its_reservation_was_still_queued_leaves_the_queue_and_is_charged(
        ledger: Ledger) -> None:
    budget(ledger, 1 * USD, enforcement="queue")
    assert ledger.reserve(req("first", USD)).admitted
    assert ledger.reserve(req("queued", 600_000)).decision is Decision.QUEUED
    assert ledger.reserve(req("behind", 400_000)).decision is Decision.QUEUED
    outcome = ledger.settle("queued", 600_000, ran=True)
    assert outcome.late
    balance = ledger.balance(NS, NS)
    assert balance.queued == 1 and balance.spent_micro == 600_000
    assert ledger.reservation("behind").state == "queued"  # first still holds the whole limit
    assert ledger.verify() == []


def test_the_report_and_its_table_show_late_charges(ledger: Ledger) -> None:
    budget(ledger, 12 * USD)
    for key in ("a", "b"):
        ledger.reserve(req(key, 300_000))
    ledger.release("a")
    ledger.settle("a", 300_000, ran=True)
    ledger.settle("b", 250_000)
    balance = ledger.balance(NS, NS)
    report = ledger.report(NS, period_window(balance.period_start, balance.period_end))
    assert report.late.jobs == 1 and report.late.amounts == {"USD": 300_000}
    table = render(report, "table")
    assert "Late charges: 1 jobs, 0.30 USD" in table
    assert '"USD": "0.30"' in render(report, "json")
