"""`audit`: every rule that crosses a QiskitJob's status with its ledger reservation, one test each."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

from governance.audit import audit
from governance.budget.types import ReservationRow, ReservationState

NS = "team-a"


def job(name: str, phase: str | None = None, *, budget: str | None = NS, uid: str | None = None,
        deleting: bool = False, **status: Any) -> dict[str, Any]:
    """A QiskitJob as the API returns it."""
    meta: dict[str, Any] = {"namespace": NS, "name": name, "uid": uid or f"uid-{name}"}
    if deleting:
        meta["deletionTimestamp"] = "2026-11-24T12:00:00Z"
    body: dict[str, Any] = {"metadata": meta}
    if phase is not None:
        body["status"] = {"phase": phase, "budget": budget, "currency": "USD", **status}
    return body


def res(key: str, state: str, amount: int = 300_000, actual: int | None = None, overrun: int = 0,
        job_name: str | None = None) -> ReservationRow:
    """A row of Ledger.reservations() (the columns the audit does not read left empty)."""
    return ReservationRow(id=None, key=key, budget_id=1, budget_namespace=NS, budget_name=NS,
                          job=f"{NS}/{job_name or key.removeprefix('uid-')}", backend="", session="",
                          amount_micro=amount, actual_micro=actual, overrun_micro=overrun,
                          state=ReservationState(state), period_start=None, queue_seq=None, message="",
                          created_at=None, admitted_at=None, finished_at=None, created_period=None, top_cost=None)


def only(problems: list[str]) -> str:
    assert len(problems) == 1, problems
    return problems[0]


def test_a_consistent_cluster_and_ledger_agree() -> None:
    jobs = [job("ran", "Succeeded", actualCost="0.25", usedMicro="250000"),
            job("running", "Running"), job("admitted", "Admitted"), job("waits", "Queued"),
            job("refused", "Refused"), job("capped", "Refused"),  # maxCost: refused before any reservation
            job("bad", "Failed", budget=None), job("unbudgeted", "Succeeded", budget=None, actualCost="0.10"),
            job("in-session", "Succeeded", budget=None, paidBySession=True, actualCost="0.00"),
            job("new")]  # no status yet
    sessions = [{"metadata": {"namespace": NS, "name": "s", "uid": "uid-session"}}]
    reservations = [res("uid-ran", "settled", actual=250_000), res("uid-running", "held"),
                    res("uid-admitted", "held"), res("uid-waits", "queued"), res("uid-refused", "refused"),
                    res("uid-session", "held", 5_000_000, job_name="session/s"),
                    res("uid-long-gone", "settled", actual=1), res("uid-deleted", "released")]  # history
    assert audit(jobs, sessions, reservations) == []


def test_a_job_charged_in_its_status_while_the_ledger_released_it_is_reported() -> None:
    line = only(audit([job("bell", "Succeeded", actualCost="0.30", usedMicro="300000")], [],
                      [res("uid-bell", "released")]))
    assert line == ("team-a/bell (phase Succeeded): status says charged 0.30 USD, the ledger has a released "
                    "reservation (reserved 0.30 USD, actual none)")


def test_a_settled_amount_that_differs_from_the_status_charge_is_reported() -> None:
    line = only(audit([job("bell", "Failed", actualCost="0.30", usedMicro="300000")], [],
                      [res("uid-bell", "settled", actual=290_000)]))
    assert line == ("team-a/bell (phase Failed): status says charged 0.30 USD, the ledger has a settled "
                    "reservation (reserved 0.30 USD, actual 0.29 USD)")


def test_used_micro_that_disagrees_with_the_charge_is_reported() -> None:
    line = only(audit([job("bell", "Succeeded", actualCost="0.30", usedMicro="310000")], [],
                      [res("uid-bell", "settled", actual=300_000)]))
    assert "status says charged 0.30 USD (usedMicro 0.31 USD)" in line and "a settled reservation" in line


def test_a_released_reservation_agrees_with_a_charge_of_nothing_but_no_other() -> None:
    """A released reservation whose job then used nothing: no money moved on either side."""
    assert audit([job("idle", "Failed", actualCost="0.00", usedMicro="0")], [], [res("uid-idle", "released")]) == []
    line = only(audit([job("idle", "Failed", actualCost="0.01", usedMicro="10000")], [],
                      [res("uid-idle", "released")]))
    assert "status says charged 0.01 USD, the ledger has a released reservation" in line


def test_a_job_that_ran_without_any_reservation_is_reported() -> None:
    line = only(audit([job("bell", "Succeeded", actualCost="0.30")], [], []))
    assert line == "team-a/bell (phase Succeeded): status says charged 0.30 USD, the ledger has no reservation"


def test_an_overrun_settlement_matching_the_status_is_clean_and_shown_when_not() -> None:
    assert audit([job("big", "Succeeded", actualCost="0.50", usedMicro="500000")], [],
                 [res("uid-big", "settled", actual=500_000, overrun=200_000)]) == []
    line = only(audit([job("big", "Succeeded", actualCost="0.40")], [],
                      [res("uid-big", "settled", actual=500_000, overrun=200_000)]))
    assert "(reserved 0.30 USD, actual 0.50 USD, overrun 0.20 USD)" in line


def test_an_unreadable_charge_is_reported_not_raised() -> None:
    line = only(audit([job("bell", "Succeeded", actualCost="lots")], [], [res("uid-bell", "settled", actual=1)]))
    assert line.startswith("team-a/bell (phase Succeeded): unreadable charge in its status (status.actualCost:")


def test_an_admitted_job_without_a_reservation_is_reported() -> None:
    line = only(audit([job("bell", "Admitted")], [], []))
    assert line == "team-a/bell (phase Admitted): admitted job lacks a reservation in budget team-a"


def test_a_running_job_whose_reservation_is_not_held_is_reported() -> None:
    line = only(audit([job("bell", "Running")], [], [res("uid-bell", "released")]))
    assert line == ("team-a/bell (phase Running): an admitted job needs a held reservation, the ledger has a "
                    "released reservation (reserved 0.30 USD, actual none)")


def test_a_queued_job_whose_reservation_the_ledger_admitted_is_reported() -> None:
    line = only(audit([job("bell", "Queued")], [], [res("uid-bell", "held")]))
    assert line == ("team-a/bell (phase Queued): a queued job needs a queued reservation, the ledger has a held "
                    "reservation (reserved 0.30 USD, actual none) (the ledger admitted it and the job was never "
                    "started)")
    assert "needs a queued reservation, the ledger has no reservation" in only(audit([job("q", "Queued")], [], []))


def test_every_finished_job_that_holds_money_is_reported() -> None:
    jobs = [job(f"{phase.lower()}", phase, actualCost="0.30") for phase in ("Succeeded", "Failed", "Refused",
                                                                           "Cancelled")]
    reservations = [res("uid-succeeded", "held"), res("uid-failed", "queued"), res("uid-refused", "held"),
                    res("uid-cancelled", "queued")]
    problems = audit(jobs, [], reservations)
    assert problems == sorted(problems) and len(problems) == 4
    for line, (name, phase, state) in zip(problems, [("cancelled", "Cancelled", "queued"),
                                                      ("failed", "Failed", "queued"),
                                                      ("refused", "Refused", "held"),
                                                      ("succeeded", "Succeeded", "held")], strict=True):
        assert line == (f"team-a/{name} (phase {phase}): finished job holds money: the ledger has a {state} "
                        "reservation (reserved 0.30 USD, actual none)")


def test_a_refused_job_with_a_settled_reservation_is_reported() -> None:
    assert audit([job("r", "Refused")], [], [res("uid-r", "released")]) == []
    line = only(audit([job("r", "Refused")], [], [res("uid-r", "settled", actual=300_000)]))
    assert line == ("team-a/r (phase Refused): a refused job must hold or spend nothing, the ledger has a settled "
                    "reservation (reserved 0.30 USD, actual 0.30 USD)")


def test_a_job_without_a_budget_in_its_status_must_hold_nothing() -> None:
    assert audit([job("free", "Succeeded", budget=None, actualCost="0.10")], [],
                 [res("uid-free", "released")]) == []
    line = only(audit([job("free", "Running", budget=None, paidBySession=True)], [], [res("uid-free", "held")]))
    assert line == ("team-a/free (phase Running): no budget in its status, yet the ledger has a held reservation "
                    "(reserved 0.30 USD, actual none)")


def test_a_job_being_deleted_is_skipped_but_still_exists() -> None:
    deleting = job("bye", "Succeeded", deleting=True, actualCost="0.30")
    assert audit([deleting], [], [res("uid-bye", "held")]) == []


def test_a_reservation_for_a_job_that_does_not_exist_is_reported() -> None:
    reservations = [res("uid-ghost", "held", 1_234_567), res("uid-ghost-2", "queued"),
                    res("uid-old", "settled", actual=5)]  # finished history of a deleted job: fine
    problems = audit([], [], reservations)
    assert problems == [
        ("team-a/ghost-2: reservation for a job that does not exist: a queued reservation (reserved 0.30, "
         "actual none), key uid-ghost-2"),
        ("team-a/ghost: reservation for a job that does not exist: a held reservation (reserved 1.234567, "
         "actual none), key uid-ghost"),
    ]


def test_a_dedicated_sessions_reservation_is_checked_only_for_existence() -> None:
    session = {"metadata": {"namespace": NS, "name": "s", "uid": "uid-session"}, "status": {"phase": "Closed"}}
    held = res("uid-session", "held", 5_000_000, job_name="session/s")
    assert audit([], [session], [held]) == []
    line = only(audit([], [], [held]))
    assert line.startswith("team-a/session/s: reservation for a job that does not exist: a held reservation")


def test_the_result_is_sorted_and_deterministic() -> None:
    jobs = [job(n, "Admitted") for n in ("zeta", "alpha", "mid")]
    first = audit(jobs, [], [res("uid-orphan", "held")])
    assert first == sorted(first) and first == audit(list(reversed(jobs)), [], [res("uid-orphan", "held")])
    assert [line.split()[0] for line in first] == ["team-a/alpha", "team-a/mid", "team-a/orphan:", "team-a/zeta"]


def test_the_audit_module_needs_neither_kopf_nor_kubernetes() -> None:
    code = ("import sys, governance.audit; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'kopf', 'kubernetes'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"
