"""Ledger behaviour a team notices: what is admitted, refused, queued, charged and released."""

from __future__ import annotations

import re
import threading
from dataclasses import FrozenInstanceError
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import CheckConstraint

from governance.budget.batcher import ReservationBatcher
from governance.budget.errors import InvalidTransition, LedgerError, UnknownBudget, UnknownReservation
from governance.budget.ledger import Ledger
from governance.budget.models import Reservation
from governance.budget.report import period_window
from governance.budget.types import (FINISHED_STATES, OPEN_STATES, BudgetRow, BudgetSpec, Decision,
                                     ReservationRow, ReservationState, ReserveRequest)

NS = "team-a"
USD = 1_000_000


def budget(ledger: Ledger, limit: int, **kw) -> None:
    ledger.upsert_budget(BudgetSpec(NS, kw.pop("name", NS), limit, **kw))


def req(key: str, amount: int, name: str = NS, **kw) -> ReserveRequest:
    return ReserveRequest(key, NS, name, amount, job=kw.pop("job", key), **kw)


def test_admits_until_the_limit_then_refuses_with_a_quota_style_message(ledger: Ledger) -> None:
    budget(ledger, 10 * USD)
    ledger.adjust(NS, NS, 9_100_000, key="earlier-spend")
    assert ledger.reserve(req("a", 500_000)).admitted
    refused = ledger.reserve(req("b", 3_200_000))
    assert refused.decision is Decision.REFUSED
    assert refused.message == (
        "exceeded budget team-a/team-a: requested 3.20 USD, spent 9.10 USD, reserved 0.50 USD, limit 10.00 USD"
    )
    balance = ledger.balance(NS, NS)
    assert (balance.spent_micro, balance.held_micro, balance.remaining_micro) == (9_100_000, 500_000, 400_000)
    assert ledger.verify() == []


def test_exactly_the_limit_is_admitted_and_one_micro_more_is_not(ledger: Ledger) -> None:
    budget(ledger, 3 * USD)
    assert ledger.reserve(req("a", 2 * USD)).admitted
    assert not ledger.reserve(req("b", USD + 1)).admitted
    assert ledger.reserve(req("c", USD)).admitted
    assert ledger.balance(NS, NS).remaining_micro == 0


def test_a_replayed_reserve_returns_the_first_outcome_and_holds_nothing_more(ledger: Ledger) -> None:
    budget(ledger, 10 * USD)
    first = ledger.reserve(req("job-uid-1", 4 * USD))
    again = ledger.reserve(req("job-uid-1", 4 * USD))
    assert again.replayed and again.decision is Decision.ADMITTED and not first.replayed
    assert ledger.balance(NS, NS).held_micro == 4 * USD


def test_a_refusal_is_final_for_its_key_even_after_funds_free(ledger: Ledger) -> None:
    budget(ledger, 5 * USD)
    ledger.reserve(req("a", 4 * USD))
    refused = ledger.reserve(req("b", 4 * USD))
    ledger.release("a")
    replay = ledger.reserve(req("b", 4 * USD))
    assert replay.decision is Decision.REFUSED and replay.message == refused.message and replay.replayed
    assert ledger.balance(NS, NS).held_micro == 0


def test_settle_charges_the_actual_and_releases_the_rest_once(ledger: Ledger) -> None:
    budget(ledger, 10 * USD)
    ledger.reserve(req("a", 4 * USD))
    settled = ledger.settle("a", 1_250_000)
    assert (settled.actual_micro, settled.released_micro, settled.overrun) == (1_250_000, 2_750_000, False)
    replay = ledger.settle("a", 3 * USD)  # a replay with another figure changes nothing
    assert replay.replayed and replay.actual_micro == 1_250_000
    balance = ledger.balance(NS, NS)
    assert (balance.spent_micro, balance.held_micro) == (1_250_000, 0)
    assert ledger.verify() == []


def test_an_actual_above_the_reservation_is_charged_in_full_and_flagged(ledger: Ledger) -> None:
    budget(ledger, 10 * USD)
    ledger.reserve(req("a", 2 * USD))
    settled = ledger.settle("a", 3 * USD)
    assert settled.overrun and settled.overrun_micro == USD and settled.released_micro == 0
    assert ledger.balance(NS, NS).spent_micro == 3 * USD
    assert ledger.reservation("a").overrun_micro == USD


def test_state_transitions_that_make_no_sense_are_refused_or_harmless(ledger: Ledger) -> None:
    budget(ledger, 10 * USD)
    ledger.reserve(req("a", USD))
    ledger.release("a")
    with pytest.raises(InvalidTransition, match="released, not held"):
        ledger.settle("a", USD)
    ledger.reserve(req("b", USD))
    ledger.settle("b", USD)
    assert ledger.release("b").replayed  # releasing a settled reservation changes nothing
    assert ledger.balance(NS, NS).spent_micro == USD
    with pytest.raises(UnknownReservation):
        ledger.release("never-reserved")
    with pytest.raises(ValueError):
        ledger.settle("b", -1)


def test_unknown_budget_says_how_to_create_one(ledger: Ledger) -> None:
    with pytest.raises(UnknownBudget, match="create a QiskitBudget"):
        ledger.reserve(req("a", 1, name="missing"))


def test_queue_admits_in_fifo_order_as_funds_free(ledger: Ledger) -> None:
    budget(ledger, 10 * USD, enforcement="queue")
    assert ledger.reserve(req("running", 8 * USD)).admitted
    q1 = ledger.reserve(req("q1", 5 * USD))
    q2 = ledger.reserve(req("q2", USD))  # would fit now, but must not overtake q1
    assert (q1.decision, q1.queue_position, q2.decision, q2.queue_position) == (
        Decision.QUEUED, 1, Decision.QUEUED, 2)
    assert "queued for budget team-a/team-a (position 1)" in q1.message
    assert ledger.balance(NS, NS).held_micro == 8 * USD
    settled = ledger.settle("running", 3 * USD)  # frees 5: q1 fits (3+5), q2 too (3+5+1)
    assert settled.admitted_from_queue == ("q1", "q2")
    assert ledger.reservation("q1").state == "held" and ledger.reservation("q2").state == "held"
    assert ledger.balance(NS, NS).held_micro == 6 * USD
    assert ledger.reserve(req("q1", 5 * USD)).decision is Decision.ADMITTED  # replay reflects the admission
    assert ledger.verify() == []


def test_the_oldest_queued_is_the_head_of_the_queue_and_none_once_it_is_empty(ledger: Ledger, clock) -> None:
    budget(ledger, 10 * USD, enforcement="queue")
    budget(ledger, 10 * USD, enforcement="queue", name="other")
    ledger.reserve(req("running", 8 * USD))
    assert ledger.oldest_queued(NS, NS) is None
    clock.advance(minutes=1)
    head = clock()
    ledger.reserve(req("q1", 5 * USD))
    clock.advance(minutes=1)
    second = clock()
    ledger.reserve(req("q2", 3 * USD))
    ledger.reserve(req("elsewhere", 20 * USD, name="other"))  # refused: another budget's queue is not this one
    assert ledger.oldest_queued(NS, NS) == head and head.tzinfo is not None
    ledger.release("q1")  # cancelled while waiting: q2 (3) is the head, still waiting for the 8 held
    assert ledger.oldest_queued(NS, NS) == second
    ledger.release("running")  # q2 admitted: nothing waits
    assert ledger.oldest_queued(NS, NS) is None
    assert ledger.oldest_queued(NS, "other") is None


def test_queue_head_blocks_smaller_work_behind_it(ledger: Ledger) -> None:
    budget(ledger, 10 * USD, enforcement="queue")
    ledger.reserve(req("a", 6 * USD))
    ledger.reserve(req("big", 7 * USD))
    ledger.reserve(req("small", USD))
    ledger.release("a")  # 10 free: big (7) then small (1) both fit
    assert [ledger.reservation(k).state for k in ("big", "small")] == ["held", "held"]


def test_queued_work_runs_when_the_limit_is_raised_or_is_cancelled(ledger: Ledger) -> None:
    budget(ledger, 2 * USD, enforcement="queue")
    ledger.reserve(req("a", 2 * USD))
    ledger.reserve(req("b", USD))
    ledger.reserve(req("c", USD))
    assert ledger.release("c").state == "released"  # cancelled while queued: nothing was held
    _, changes = ledger.upsert_budget(BudgetSpec(NS, NS, 3 * USD, enforcement="queue"))
    assert [(c.key, c.decision) for c in changes] == [("b", Decision.ADMITTED)]
    assert ledger.balance(NS, NS).held_micro == 3 * USD
    assert ledger.verify() == []


def test_cancelling_the_head_of_the_queue_lets_the_next_in(ledger: Ledger) -> None:
    budget(ledger, 10 * USD, enforcement="queue")
    ledger.reserve(req("running", 6 * USD))
    ledger.reserve(req("head", 5 * USD))
    ledger.reserve(req("next", 3 * USD))  # fits, but waits behind the head
    assert ledger.release("head").admitted_from_queue == ("next",)
    assert ledger.reservation("next").state == "held"
    assert ledger.balance(NS, NS).held_micro == 9 * USD
    assert ledger.verify() == []


def test_a_request_larger_than_the_whole_limit_is_refused_not_queued(ledger: Ledger) -> None:
    budget(ledger, 2 * USD, enforcement="queue")
    out = ledger.reserve(req("huge", 3 * USD))
    assert out.decision is Decision.REFUSED
    assert ledger.balance(NS, NS).queued == 0


def test_a_lowered_limit_refuses_queued_work_that_can_never_fit(ledger: Ledger) -> None:
    budget(ledger, 5 * USD, enforcement="queue")
    ledger.reserve(req("a", 5 * USD))
    ledger.reserve(req("b", 4 * USD))
    _, changes = ledger.upsert_budget(BudgetSpec(NS, NS, 3 * USD, enforcement="queue"))
    assert [(c.key, c.decision) for c in changes] == [("b", Decision.REFUSED)]
    assert "larger than the whole limit" in changes[0].message
    assert ledger.verify() == []


def test_a_stale_spec_applied_late_never_lowers_a_newer_limit(ledger: Ledger) -> None:
    """Two operators apply the same QiskitBudget's specs in either order (a failover): generation 3
    raised the limit and admitted the queue; generation 2, applied after it, changes nothing."""
    uid = "3f1c-budget"
    ledger.upsert_budget(BudgetSpec(NS, NS, 2 * USD, enforcement="queue", uid=uid, generation=2))
    ledger.reserve(req("a", 2 * USD))
    ledger.reserve(req("b", 2 * USD))
    _, changes = ledger.upsert_budget(BudgetSpec(NS, NS, 4 * USD, enforcement="queue", uid=uid, generation=3))
    assert [c.key for c in changes] == ["b"]
    balance, changes = ledger.upsert_budget(BudgetSpec(NS, NS, 2 * USD, enforcement="queue", uid=uid, generation=2))
    assert changes == () and balance.limit_micro == 4 * USD
    assert ledger.balance(NS, NS).limit_micro == 4 * USD
    # the same generation again (a resume) applies; so does an administrator's change (no generation)
    ledger.upsert_budget(BudgetSpec(NS, NS, 4 * USD, enforcement="queue", uid=uid, generation=3))
    ledger.upsert_budget(BudgetSpec(NS, NS, 5 * USD, enforcement="queue"))
    assert ledger.balance(NS, NS).limit_micro == 5 * USD
    # the stored generation survives that change: generation 2 is still stale
    ledger.upsert_budget(BudgetSpec(NS, NS, USD, enforcement="queue", uid=uid, generation=2))
    assert ledger.balance(NS, NS).limit_micro == 5 * USD
    # the budget deleted and created again under the same name: a new UID, generations start over
    ledger.upsert_budget(BudgetSpec(NS, NS, 6 * USD, enforcement="queue", uid="9a7e-budget", generation=1))
    assert ledger.balance(NS, NS).limit_micro == 6 * USD
    assert ledger.verify() == []


def test_period_rollover_starts_fresh_and_settles_held_work_in_its_own_period(ledger: Ledger, clock) -> None:
    clock.now = datetime(2026, 11, 30, 23, 0, tzinfo=timezone.utc)
    budget(ledger, 10 * USD, period="monthly", anchor=datetime(2026, 1, 1, tzinfo=timezone.utc))
    ledger.reserve(req("late-november", 6 * USD))
    assert not ledger.reserve(req("refused", 6 * USD)).admitted
    clock.advance(hours=2)  # December
    december = ledger.reserve(req("december", 6 * USD))
    assert december.admitted and december.balance.period_start == datetime(2026, 12, 1, tzinfo=timezone.utc)
    ledger.settle("late-november", 5 * USD)  # charged to November, where it was admitted
    nov = ledger.balance(NS, NS, at=datetime(2026, 11, 15, tzinfo=timezone.utc))
    dec = ledger.balance(NS, NS)
    assert (nov.spent_micro, nov.held_micro) == (5 * USD, 0)
    assert (dec.spent_micro, dec.held_micro) == (0, 6 * USD)
    assert ledger.verify() == []


def test_rollover_admits_queued_work_into_the_new_period(ledger: Ledger, clock) -> None:
    clock.now = datetime(2026, 11, 24, 23, 30, tzinfo=timezone.utc)
    budget(ledger, 10 * USD, period="daily", enforcement="queue",
           anchor=datetime(2026, 1, 1, tzinfo=timezone.utc))
    ledger.reserve(req("today", 10 * USD))
    ledger.settle("today", 10 * USD)
    assert ledger.reserve(req("waiting", 4 * USD)).decision is Decision.QUEUED
    assert ledger.admit_queued() == []  # still the same day: nothing frees
    clock.advance(hours=1)
    changes = ledger.admit_queued()
    assert [(c.key, c.decision) for c in changes] == [("waiting", Decision.ADMITTED)]
    assert ledger.balance(NS, NS).held_micro == 4 * USD
    assert ledger.verify() == []


def test_warning_thresholds_are_reported_once_per_period(ledger: Ledger, clock) -> None:
    budget(ledger, 10 * USD, warn_at=(50, 80), period="daily")
    assert ledger.reserve(req("a", 4 * USD)).thresholds_crossed == ()
    assert ledger.reserve(req("b", USD)).thresholds_crossed == (50,)
    assert ledger.reserve(req("c", 4 * USD)).thresholds_crossed == (80,)
    ledger.release("c")
    assert ledger.reserve(req("d", 4 * USD)).thresholds_crossed == ()  # 80% was already announced
    clock.advance(days=1)
    assert ledger.reserve(req("e", 9 * USD)).thresholds_crossed == (50, 80)


def test_adjustments_are_idempotent_and_credits_cannot_go_below_zero(ledger: Ledger) -> None:
    budget(ledger, 10 * USD)
    ledger.adjust(NS, NS, 2 * USD, key="invoice-7")
    ledger.adjust(NS, NS, 2 * USD, key="invoice-7")
    assert ledger.balance(NS, NS).spent_micro == 2 * USD
    with pytest.raises(LedgerError, match="more than the 2.00 USD spent"):
        ledger.adjust(NS, NS, -3 * USD, key="credit-1")
    ledger.adjust(NS, NS, -2 * USD, key="credit-2")
    assert ledger.balance(NS, NS).spent_micro == 0
    assert ledger.verify() == []


def test_budget_unit_cannot_change_under_recorded_amounts(ledger: Ledger) -> None:
    budget(ledger, 10 * USD)
    with pytest.raises(LedgerError, match="unit cannot change"):
        ledger.upsert_budget(BudgetSpec(NS, NS, 10 * USD, unit="QPU-seconds"))


def test_a_batch_decides_exactly_as_the_same_calls_one_by_one(ledger: Ledger, databases) -> None:
    budget(ledger, 10 * USD)
    requests = [req(f"k{i}", amount) for i, amount in enumerate([3, 4, 5, 2, 1, 1]) for amount in [amount * USD]]
    requests.append(req("k0", 3 * USD))  # a duplicate inside the batch
    batched = ledger.reserve_many(requests)
    other = Ledger(databases.new(), clock=ledger.clock)
    other.upsert_budget(BudgetSpec(NS, NS, 10 * USD))
    one_by_one = [other.reserve(r) for r in requests]
    assert [o.decision for o in batched] == [o.decision for o in one_by_one]
    assert [o.decision.value for o in batched] == [
        "admitted", "admitted", "refused", "admitted", "admitted", "refused", "admitted"]
    assert batched[-1].replayed
    assert ledger.balance(NS, NS) == other.balance(NS, NS)
    other.close()


def test_batcher_serves_concurrent_threads_and_isolates_a_bad_budget(ledger: Ledger) -> None:
    budget(ledger, 50 * USD)
    batcher = ReservationBatcher(ledger)
    results: dict[str, object] = {}

    def worker(i: int) -> None:
        name = NS if i % 10 else "missing"
        try:
            results[f"k{i}"] = batcher.reserve(req(f"k{i}", USD, name=name)).decision
        except UnknownBudget as exc:
            results[f"k{i}"] = exc

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(80)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    batcher.close()
    errors = [k for k, v in results.items() if isinstance(v, UnknownBudget)]
    admitted = [k for k, v in results.items() if v is Decision.ADMITTED]
    assert sorted(errors) == sorted(f"k{i}" for i in range(0, 80, 10))
    assert len(admitted) == 50  # 72 valid requests of 1 USD against 50 USD
    assert ledger.balance(NS, NS).held_micro == 50 * USD
    assert ledger.verify() == []


def test_budgets_in_qpu_seconds_are_kept_apart_from_usd_budgets(ledger: Ledger) -> None:
    ledger.upsert_budget(BudgetSpec(NS, "qpu", 60 * USD, unit="QPU-seconds"))
    budget(ledger, USD)
    ledger.reserve(req("a", 30 * USD, name="qpu"))
    assert ledger.balance(NS, "qpu").describe() == (
        "spent 0.00 QPU-seconds, reserved 30.00 QPU-seconds, limit 60.00 QPU-seconds")
    assert ledger.balance(NS, NS).held_micro == 0


def test_a_retired_budget_admits_nothing_refuses_its_queue_and_still_settles(ledger: Ledger) -> None:
    budget(ledger, 2 * USD, enforcement="queue")
    ledger.reserve(req("running", 2 * USD))
    ledger.reserve(req("waiting", USD))
    changes = ledger.retire_budget(NS, NS)
    assert [(c.key, c.decision, c.reason) for c in changes] == [("waiting", Decision.REFUSED, "BudgetDeleted")]
    with pytest.raises(UnknownBudget, match="was deleted"):
        ledger.reserve(req("new", 1))
    assert ledger.budgets(NS) == []
    assert ledger.settle("running", USD).actual_micro == USD  # what it held still settles
    assert ledger.retire_budget(NS, NS) == ()  # idempotent
    budget(ledger, 2 * USD)  # created again: alive, with its history
    assert ledger.reserve(req("again", USD)).admitted and ledger.balance(NS, NS).spent_micro == USD
    assert ledger.verify() == []


def test_settle_reports_queued_work_it_refuses_not_only_what_it_admits(ledger: Ledger) -> None:
    budget(ledger, 10 * USD, enforcement="queue")
    ledger.reserve(req("running", 6 * USD))
    ledger.reserve(req("small", 5 * USD))  # queued behind nothing but funds
    ledger.reserve(req("huge", 9 * USD))  # queued behind "small"
    ledger.upsert_budget(BudgetSpec(NS, NS, 8 * USD, enforcement="queue"))  # head blocks: "huge" not examined yet
    settled = ledger.settle("running", USD)
    assert [(c.key, c.decision) for c in settled.queue_changes] == [("small", Decision.ADMITTED),
                                                                   ("huge", Decision.REFUSED)]
    assert settled.admitted_from_queue == ("small",)
    assert "larger than the whole limit" in settled.queue_changes[1].message
    assert ledger.verify() == []


def test_a_budgets_status_reads_the_same_figures_as_its_separate_reads(ledger: Ledger, clock) -> None:
    budget(ledger, 10 * USD, enforcement="queue", period="monthly")
    ledger.reserve(req("settled", 2 * USD, backend="fake_manila"))
    ledger.settle("settled", 1_500_000)
    clock.advance(days=1)
    ledger.reserve(req("running", 6 * USD, backend="aer"))
    clock.advance(minutes=1)
    ledger.reserve(req("waiting", 5 * USD))
    reads = ledger.status_reads(NS, NS)
    balance = ledger.balance(NS, NS)
    assert reads.balance == balance and (balance.spent_micro, balance.held_micro, balance.queued) == (
        1_500_000, 6 * USD, 1)
    assert reads.report == ledger.report(NS, period_window(balance.period_start, balance.period_end), NS)
    assert {line.name: line.spent + line.held for line in reads.report.by_backend} == {
        "fake_manila": 1_500_000, "aer": 6 * USD}
    assert reads.daily == ledger.daily_spend(NS, NS) and sum(reads.daily.values()) == 7_500_000
    assert reads.oldest_queued == ledger.oldest_queued(NS, NS) == clock()
    ledger.release("waiting")
    assert ledger.status_reads(NS, NS).oldest_queued is None
    with pytest.raises(UnknownBudget):
        ledger.status_reads(NS, "nobody")
    # a new period before anything is reserved in it, a new limit, then other period settings
    clock.advance(days=31)
    assert ledger.status_reads(NS, NS).balance == ledger.balance(NS, NS)
    assert ledger.status_reads(NS, NS).balance.spent_micro == 0
    budget(ledger, 12 * USD, enforcement="queue", period="monthly")
    assert ledger.status_reads(NS, NS).balance == ledger.balance(NS, NS)
    assert ledger.status_reads(NS, NS).balance.limit_micro == 12 * USD
    budget(ledger, 12 * USD, enforcement="queue", period="weekly")
    reads = ledger.status_reads(NS, NS)
    assert reads.balance == ledger.balance(NS, NS)
    assert reads.balance.period_end - reads.balance.period_start == timedelta(days=7)
    assert reads.report == ledger.report(NS, period_window(reads.balance.period_start, reads.balance.period_end), NS)


def test_the_reservation_states_are_exactly_what_the_schema_stores() -> None:
    """ReservationState's values are the strings the reservations table allows (its CHECK
    constraint, unchanged since the first migration): the enum changed no stored value."""
    [check] = [c for c in Reservation.__table__.constraints
               if isinstance(c, CheckConstraint) and "state IN" in str(c.sqltext)]
    assert set(re.findall(r"'(\w+)'", str(check.sqltext))) == {s.value for s in ReservationState}
    assert set(OPEN_STATES) | set(FINISHED_STATES) == set(ReservationState)
    assert not set(OPEN_STATES) & set(FINISHED_STATES)
    assert ReservationState.HELD == "held" and f"{ReservationState.SETTLED}" == "settled"


def test_the_ledger_reads_are_typed_views_that_outlive_their_connection(ledger: Ledger) -> None:
    """budgets(), reservation() and reservations() return frozen copies with the stored values,
    the state a ReservationState, the budget named on every reservation."""
    budget(ledger, 3 * USD, enforcement="queue", warn_at=(50, 90))
    budget(ledger, 60 * USD, name="qpu", unit="QPU-seconds")
    ledger.reserve(req("ran", USD, backend="aer", session="s1"))
    ledger.settle("ran", 700_000)
    ledger.reserve(req("runs", 2 * USD))
    ledger.reserve(req("waits", USD))
    [qpu, usd] = ledger.budgets(NS)
    assert isinstance(usd, BudgetRow) and (usd.name, usd.unit, usd.limit_micro, usd.enforcement) == (
        NS, "USD", 3 * USD, "queue")
    assert (qpu.name, qpu.unit, usd.warn_at, usd.queued_count, usd.retired_at) == (
        "qpu", "QPU-seconds", "50,90", 1, None)
    ran = ledger.reservation("ran")
    assert isinstance(ran, ReservationRow) and ran.state is ReservationState.SETTLED and not ran.compacted
    assert (ran.budget_namespace, ran.budget_name, ran.job, ran.backend, ran.session) == (NS, NS, "ran", "aer", "s1")
    assert (ran.amount_micro, ran.actual_micro, ran.overrun_micro, ran.budget_id) == (USD, 700_000, 0, usd.id)
    with pytest.raises(FrozenInstanceError):
        ran.state = ReservationState.HELD  # type: ignore[misc]
    assert ledger.reservation("waits").state is ReservationState.QUEUED and ledger.reservation("waits").queue_seq
    assert [(r.key, r.state) for r in ledger.reservations(OPEN_STATES)] == [
        ("runs", ReservationState.HELD), ("waits", ReservationState.QUEUED)]
    assert [r.key for r in ledger.reservations()] == ["ran", "runs", "waits"]
    assert [r.key for r in ledger.reservations((ReservationState.RELEASED,))] == []
