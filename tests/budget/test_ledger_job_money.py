"""A job's money state lives in the ledger, keyed by its UID: what it was admitted with, which pod
is each attempt's, and what each counted attempt was charged. A replay counts nothing twice (also
two operators at once), and verify() checks that a settled job was charged what its attempts were."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import update

from governance.budget.ledger import JA, Ledger
from governance.budget.types import BudgetSpec, JobTerms, ReserveRequest

NS = "team-a"
USD = 1_000_000


def terms(key: str = "uid-1", **kw: object) -> JobTerms:
    values: dict[str, object] = dict(key=key, job=f"{NS}/bell", budget=f"{NS}/{NS}", unit="USD", paid_by_session=False,
                                     backend="fake-manila", session="", model_qpu_seconds="1.511328",
                                     model_cpu_seconds="0", model_shots=2000, model_tasks=1)
    values.update(kw)
    return JobTerms(**values)  # type: ignore[arg-type]


def test_the_first_terms_recorded_stand(ledger: Ledger) -> None:
    assert ledger.job_terms("uid-1") is None
    first = ledger.record_terms(terms())
    # a replayed admission (or a second operator's) cannot change what the job was admitted with
    assert ledger.record_terms(terms(model_qpu_seconds="0", paid_by_session=True)) == first
    assert ledger.job_terms("uid-1") == first
    ledger.move_session("uid-1", "batch-2")
    assert ledger.job_terms("uid-1").session == "batch-2"


def test_an_attempt_is_counted_once_and_totals_are_exact(ledger: Ledger) -> None:
    one = ledger.count_attempt("uid-1", 1, 250_000, "0.1", "model")
    assert (one.counted_attempt, one.used_micro, one.qpu_seconds, one.replayed) == (1, 250_000, "0.1", False)
    # the same attempt again (a replayed pod event, a restarted operator): nothing changes
    again = ledger.count_attempt("uid-1", 1, 999_999, "9", "forged")
    assert (again.used_micro, again.qpu_seconds, again.replayed) == (250_000, "0.1", True)
    two = ledger.count_attempt("uid-1", 2, 2_418_125, "1.511328", "model")
    assert (two.counted_attempt, two.attempts, two.used_micro, two.qpu_seconds) == (
        2, frozenset({1, 2}), 2_668_125, "1.611328")
    assert ledger.attempt_totals("uid-1") == two
    assert ledger.attempt_totals("uid-other").used_micro == 0


def test_a_charge_must_be_a_non_negative_integer_and_a_decimal_quantity(ledger: Ledger) -> None:
    with pytest.raises(ValueError):
        ledger.count_attempt("uid-1", 1, -1, "0")
    with pytest.raises(ArithmeticError):
        ledger.count_attempt("uid-1", 1, 0, "abc")
    assert ledger.attempt_totals("uid-1").attempts == frozenset()


def test_only_the_recorded_pod_is_the_attempts_pod(ledger: Ledger) -> None:
    assert ledger.attempt_pod("uid-1", 1) is None
    assert ledger.record_pod("uid-1", 1, "pod-a")
    assert ledger.attempt_pod("uid-1", 1) == "pod-a"
    assert ledger.record_pod("uid-1", 1, "pod-a", None)  # a replay of the same record
    # the first was lost before it ran and is created again: it replaces the record it was made after
    assert ledger.record_pod("uid-1", 1, "pod-b", "pod-a")
    assert ledger.attempt_pod("uid-1", 1) == "pod-b"
    # a slower operator that created its pod before pod-b was recorded does not take the record over
    assert not ledger.record_pod("uid-1", 1, "pod-x", None)
    assert not ledger.record_pod("uid-1", 1, "pod-y", "pod-a")
    ledger.count_attempt("uid-1", 1, 10, "0")
    assert not ledger.record_pod("uid-1", 1, "pod-c", "pod-b")  # a counted attempt's pod no longer changes
    assert ledger.attempt_pod("uid-1", 1) == "pod-b"
    assert ledger.attempt_totals("uid-1").used_micro == 10


def test_two_operators_counting_the_same_attempt_count_it_once(database_url: str) -> None:
    ledgers = [Ledger(database_url) for _ in range(4)]
    barrier = threading.Barrier(len(ledgers))
    answers: list[object] = []

    def count(ledger: Ledger) -> None:
        barrier.wait()
        answers.append(ledger.count_attempt("uid-race", 1, 300_000, "0.2", "model"))

    threads = [threading.Thread(target=count, args=(ledger,)) for ledger in ledgers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(a.replayed for a in answers) == [False, True, True, True]  # type: ignore[attr-defined]
    assert ledgers[0].attempt_totals("uid-race").used_micro == 300_000
    for ledger in ledgers:
        ledger.close()


def test_verify_finds_a_settlement_that_is_not_what_the_attempts_were_charged(ledger: Ledger) -> None:
    ledger.upsert_budget(BudgetSpec(NS, NS, 10 * USD))
    ledger.reserve(ReserveRequest("uid-1", NS, NS, 3 * USD, job=f"{NS}/bell"))
    ledger.count_attempt("uid-1", 1, 0, "0")
    total = ledger.count_attempt("uid-1", 2, 2_418_125, "1.511328")
    ledger.settle("uid-1", total.used_micro, ran=True)
    assert ledger.verify() == []
    with ledger.engine.begin() as conn:  # what a bug (or a hand edit) that charged less would leave
        conn.execute(update(JA).where(JA.c.key == "uid-1", JA.c.attempt == 2).values(charge_micro=2_000_000))
    assert ledger.verify() == ["reservation uid-1: settled 2418125 != its counted attempts 2000000"]
