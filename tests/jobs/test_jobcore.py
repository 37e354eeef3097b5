"""The job core (governance/jobs): admission outcomes, the retry schedule, what an attempt costs.
Plain values in, plain values out: no cluster, no ledger."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from governance.assessment import Estimate, Problem
from governance.api.specs import SpecError, parse_backend, parse_job
from governance.budget.costmodel import PriceList, Usage
from governance.budget.types import AttemptTotals, Balance, Decision, QueueChange, ReservationState, ReserveOutcome
from governance.jobs.events import Event
from governance.jobs import (ACTIVE, FAILURES, TERMINAL, AlreadyCounted, Finish, JobStatus, Phase, Retry, after_attempt,
                             attempt_charge, queued_change, queued_priced, retry_delay, stalled_with)
from governance.jobs.attempts import reported_usage
from governance.jobs.admission import (AdmissionFacts, Admit, Fail, NeedBackend, NeedBudget, NeedEstimate, NeedReservation,
                                       NeedSession, Queue, Refuse, decide_admission)

NS = "team-a"
QASM = 'OPENQASM 2.0; include "qelib1.inc"; qreg q[1]; creg c[1]; h q[0]; measure q[0] -> c[0];'
AER = parse_backend("aer-sim", {"provider": "aer", "pricing": {"perCPUSecond": "0.01"}})
IBM = parse_backend("ibm-torino", {"provider": "ibm", "name": "ibm_torino", "pricing": {"perQPUSecond": "1.60"}})
ESTIMATE = Estimate(Usage(qpu_seconds=Decimal("2")), 3_200_000, "USD", 1)
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc)


def spec(**fields: object) -> AdmissionFacts:
    return AdmissionFacts(NS, parse_job({"backend": "aer-sim", "circuits": [QASM], **fields}))


def ledger(decision: Decision, message: str = "") -> ReserveOutcome:
    balance = Balance(NS, "b", "USD", 10_000_000, 0, 0, NOW, None)
    return ReserveOutcome("uid", decision, decision.value, ESTIMATE.amount_micro, balance, message)


# ------------------------------------------------------------------ admission


def test_an_invalid_spec_fails_naming_the_field() -> None:
    try:
        parse_job({"backend": "aer-sim", "circuits": [QASM], "shots": 0})
    except SpecError as exc:
        outcome = decide_admission(AdmissionFacts(NS, exc))
    assert isinstance(outcome, Fail)
    assert (outcome.reason, outcome.field) == ("InvalidSpec", "spec.shots")
    assert "at least 1" in outcome.message


def test_the_facts_are_asked_for_in_order_and_a_reservation_admits() -> None:
    facts = spec(budget="b")
    assert decide_admission(facts) == NeedBackend("aer-sim")
    facts = facts.answer(backend=AER)
    assert decide_admission(facts) == NeedBudget("b")
    facts = facts.answer(budget=("b", "USD"))
    assert decide_admission(facts) == NeedEstimate(facts.spec, AER, "USD")
    facts = facts.answer(estimate=ESTIMATE)
    assert decide_admission(facts) == NeedReservation("b", 3_200_000, "")
    outcome = decide_admission(facts.answer(reservation=ledger(Decision.ADMITTED)))
    assert isinstance(outcome, Admit) and outcome.reason == "BudgetReserved" and not outcome.unbudgeted
    assert outcome.message == f"reserved 3.20 USD in budget {NS}/b"
    assert outcome.priced.status(7) == {"estimatedCost": "3.20", "currency": "USD", "estimatedMicro": "3200000",
                                        "backend": "aer-sim", "attempts": 0, "budget": "b", "admittedGeneration": 7}


def test_an_unknown_backend_fails_and_no_budget_is_asked_for() -> None:
    outcome = decide_admission(spec().answer(backend=Problem("UnknownBackend", "no QiskitBackend 'x'")))
    assert isinstance(outcome, Fail) and outcome.reason == "UnknownBackend"


def test_no_budget_to_pay_refuses_without_telling_a_budget() -> None:
    outcome = decide_admission(spec().answer(backend=AER, budget=Problem("NoBudget", "no QiskitBudget")))
    assert outcome == Refuse("NoBudget", "no QiskitBudget")


def test_above_max_cost_refuses_other_estimate_problems_fail() -> None:
    priced = spec().answer(backend=AER, budget=("b", "USD"))
    assert isinstance(decide_admission(priced.answer(estimate=Problem("MaxCostExceeded", "too dear"))), Refuse)
    assert isinstance(decide_admission(priced.answer(estimate=Problem("TooManyQubits", "too big"))), Fail)


def test_a_full_budget_refuses_and_says_which_budget_with_the_price() -> None:
    facts = spec().answer(backend=AER, budget=("b", "USD"), estimate=ESTIMATE)
    outcome = decide_admission(facts.answer(reservation=ledger(Decision.REFUSED, "over the limit")))
    assert isinstance(outcome, Refuse)
    assert (outcome.reason, outcome.budget, outcome.message) == ("BudgetExceeded", "b", "over the limit")
    assert outcome.priced is not None and outcome.priced.estimate is ESTIMATE


def test_a_queueing_budget_queues() -> None:
    facts = spec().answer(backend=AER, budget=("b", "USD"), estimate=ESTIMATE)
    outcome = decide_admission(facts.answer(reservation=ledger(Decision.QUEUED, "waits for funds")))
    assert isinstance(outcome, Queue) and outcome.message == "waits for funds"


def test_the_policys_ruling_over_a_snapshot_decides_as_the_ledgers_reservation() -> None:
    """What the webhook answers (it reserves nothing): the budget policy's ruling over the balance
    it read leads to the outcome the ledger's reservation of the same amount leads to."""
    from governance.budget import policy

    facts = spec().answer(backend=AER, budget=("b", "USD"), estimate=ESTIMATE)
    for enforcement, held, expected in (("hard", 0, Admit), ("hard", 8_000_000, Refuse), ("queue", 8_000_000, Queue)):
        snapshot = policy.Snapshot(f"{NS}/b", "USD", 10_000_000, 0, held, 0, enforcement)
        ruling = policy.decide([snapshot], ESTIMATE.amount_micro)
        outcome = decide_admission(facts.answer(reservation=ruling))
        assert type(outcome) is expected
        reserved = decide_admission(facts.answer(reservation=ledger(ruling.decision, ruling.message)))
        assert outcome == reserved
    assert outcome.message.startswith(f"queued for budget {NS}/b (position 1): requested 3.20 USD")


def test_a_budget_deleted_during_the_reservation_refuses() -> None:
    facts = spec().answer(backend=AER, budget=("b", "USD"), estimate=ESTIMATE)
    outcome = decide_admission(facts.answer(reservation=Problem("UnknownBudget", "gone")))
    assert outcome == Refuse("UnknownBudget", "gone")


def test_unbudgeted_work_is_admitted_out_of_the_ordinary() -> None:
    outcome = decide_admission(spec().answer(backend=AER, budget=None, estimate=ESTIMATE))
    assert isinstance(outcome, Admit) and outcome.unbudgeted and outcome.reason == "Unbudgeted"
    assert outcome.priced.budget is None


def test_a_session_provider_places_the_job_before_reserving() -> None:
    facts = AdmissionFacts(NS, parse_job({"backend": "ibm-torino", "circuits": [QASM]})).answer(
        backend=IBM, in_sessions=True, budget=("b", "USD"), estimate=ESTIMATE)
    assert decide_admission(facts) == NeedSession(None, IBM, None)
    facts = facts.answer(placement=("batch-1", "batch"))
    assert decide_admission(facts) == NeedReservation("b", 3_200_000, "batch-1")
    failed = decide_admission(facts.answer(placement=Problem("SessionEnded", "closed")))
    assert isinstance(failed, Fail) and failed.field == "spec.session"


def test_a_dedicated_session_pays_so_nothing_is_reserved() -> None:
    facts = spec(session="s").answer(backend=AER, budget=("b", "USD"), estimate=ESTIMATE,
                                     placement=("s", "dedicated"))
    outcome = decide_admission(facts)
    assert isinstance(outcome, Admit) and outcome.reason == "InDedicatedSession"
    status = outcome.priced.status(1)
    assert status["budget"] is None and status["paidBySession"] is True and status["session"] == "s"


# ------------------------------------------------------------------ attempts


def counted(*attempts: int, used: int = 0, qpu: str = "0", replayed: bool = False) -> AttemptTotals:
    """The ledger's totals of a job whose `attempts` were counted (Ledger.count_attempt's answer)."""
    return AttemptTotals("uid", max(attempts, default=0), frozenset(attempts), used, qpu, replayed)


def test_retries_back_off_doubling_until_the_limit_then_give_up() -> None:
    assert [retry_delay(2.0, a) for a in (1, 2, 3, 4)] == [2.0, 4.0, 8.0, 16.0]
    first = after_attempt(counted(1), False, 1, False, {"error": "node lost"}, 137, 2, 2.0, NOW)
    assert isinstance(first, Retry) and first.at == NOW + timedelta(seconds=2)
    assert first.message == "attempt 1 failed (node lost); retrying in 2s"
    second = after_attempt(counted(1, 2), False, 2, False, {}, 1, 2, 2.0, NOW)
    assert isinstance(second, Retry) and second.delay == 4.0
    last = after_attempt(counted(1, 2, 3), False, 3, False, {}, 1, 2, 2.0, NOW)
    assert isinstance(last, Finish) and last.phase is Phase.FAILED and last.reason == "ExecutorFailed"
    assert last.message("0.00 USD") == "attempt 3 failed: exit code 1; qgov gave up after 3 attempts; charged 0.00 USD"


def test_a_deterministic_error_is_not_retried() -> None:
    outcome = after_attempt(counted(1), False, 1, False, {"error": "bad circuit"}, 2, 5, 2.0, NOW)
    assert isinstance(outcome, Finish) and outcome.reason == "InvalidJob" and outcome.deterministic
    assert "does not retry a deterministic error" in outcome.message("0.00 USD")


def test_every_attempt_is_charged_once_what_the_ledger_counted() -> None:
    report = {"usage": {"qpuSeconds": "99"}}  # the report's figure is never what is charged
    first = after_attempt(counted(1, used=1250, qpu="1.5"), False, 1, False, report, 1, 2, 2.0, NOW)
    assert isinstance(first, Retry) and (first.used_micro, first.qpu_seconds) == (1250, Decimal("1.5"))
    # the same end again (a replayed event) after the retry was scheduled: nothing to do
    again = counted(1, used=1250, qpu="1.5", replayed=True)
    assert isinstance(after_attempt(again, True, 1, False, report, 1, 2, 2.0, NOW), AlreadyCounted)
    # counted but its status write of the end was lost: settled with what was counted, not twice
    replay = after_attempt(again, False, 1, True, report, 0, 2, 2.0, NOW)
    assert isinstance(replay, Finish) and replay.phase is Phase.SUCCEEDED and replay.used_micro == 1250
    assert replay.message("0.00 USD") == "succeeded on attempt 1; charged 0.00 USD"


def test_an_attempt_costs_its_trusted_usage_exactly() -> None:
    prices = PriceList.from_strings(perQPUSecond="1.60", perShot="0.00035")
    usage = Usage(qpu_seconds=Decimal("2.5"), shots=1000)
    assert attempt_charge(usage, prices, "USD", False) == 4_000_000 + 350_000
    assert attempt_charge(usage, prices, "QPU-seconds", False) == 2_500_000
    assert attempt_charge(usage, prices, "USD", True) == 0  # a dedicated session pays for its time
    assert attempt_charge(None, prices, "USD", False) == 0  # nothing ran
    assert attempt_charge(usage, None, "USD", False) == 0  # the backend is gone: its prices are unknown


@pytest.mark.parametrize("usage,problem", [
    ({"qpuSeconds": "abc"}, "malformed"), ({"qpuSeconds": "NaN"}, "not finite"), ({"shots": "1.5"}, "malformed"),
    ({"cpuSeconds": "-1"}, "negative"), ("0", "not an object"), ({"qpuSeconds": [1]}, "malformed")])
def test_a_malformed_usage_report_is_named_not_raised(usage: object, problem: str) -> None:
    shown, why = reported_usage({"usage": usage})
    assert shown is None and problem in why


def test_a_well_formed_usage_report_is_read_exactly_for_display() -> None:
    assert reported_usage({"usage": {"qpuSeconds": "0.000001", "shots": 3}}) == (
        Usage(qpu_seconds=Decimal("0.000001"), shots=3), "")
    assert reported_usage({}) == (None, "")


def test_status_view_reads_what_the_handlers_read() -> None:
    parsed = JobStatus.of({"status": {"phase": "Failed", "usedMicro": "12", "report": {"attempt": 1},
                                      "conditions": [{"type": "Stalled", "status": "True"}]}})
    assert parsed.terminal and parsed.used_micro == 12 and parsed.currency == "USD"
    assert parsed.condition_is("Stalled", "True") and not parsed.condition_is("Stalled", "False")
    assert JobStatus.of({}) == JobStatus()
    assert {p.value for p in Phase} >= TERMINAL and "Queued" not in TERMINAL


def test_the_core_imports_no_kubernetes_kopf_or_database() -> None:
    code = ("import sys, governance.jobs; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'kopf', 'kubernetes', 'sqlalchemy'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_phases_are_one_definition_that_loads_without_qiskit() -> None:
    """`qgov ledger audit` judges phases without pricing circuits: the phases (and the audit that
    uses them) load without qiskit; the admission module, which prices circuits, loads it."""
    code = ("import sys, governance.audit as audit, governance.jobs as jobs; "
            "print(audit.TERMINAL is jobs.TERMINAL, 'qiskit' in sys.modules, end=' '); "
            "import governance.jobs.admission; print('qiskit' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["True", "False", "True"]


@pytest.mark.parametrize("outcome,phase", [(Fail("x", "y"), Phase.FAILED), (Refuse("x", "y"), Phase.REFUSED)])
def test_outcomes_map_to_phases(outcome: object, phase: Phase) -> None:
    from governance.jobs.admission import phase_of

    assert phase_of(outcome) is phase  # type: ignore[arg-type]


def test_every_outcome_has_its_phase() -> None:
    """handlers/jobadmission.py writes the phase phase_of gives: each outcome an admission can end in has
    one, and the phases that carry a True Failed condition are the failures."""
    from governance.jobs.admission import PHASE_OF, Outcome, Priced, phase_of

    priced = Priced(ESTIMATE, "aer-sim", "b")
    assert set(PHASE_OF) == set(Outcome.__args__)  # type: ignore[attr-defined]
    assert phase_of(Queue(priced, "waits")) is Phase.QUEUED and phase_of(Admit(priced, "r", "m")) is Phase.ADMITTED
    assert {p.value for p in (phase_of(Fail("x", "y")), phase_of(Refuse("x", "y")))} == FAILURES
    assert FAILURES <= TERMINAL and not FAILURES & ACTIVE


def test_a_stall_is_said_once_per_reason_while_it_lasts() -> None:
    """The pod sweep (a pod stuck in Pending) and the pod's creation (refused by the API server)
    both write Stalled only for a new reason. A Stalled condition that is False (the pod ran since)
    stalls nothing: the same reason coming back is said again."""
    said = {"conditions": [{"type": "Stalled", "status": "True", "message": "image cannot be pulled"}]}
    over = {"conditions": [{"type": "Stalled", "status": "False", "message": "image cannot be pulled"}]}
    assert stalled_with(said, "image cannot be pulled")
    assert not stalled_with(said, "no node fits")
    assert not stalled_with(over, "image cannot be pulled")
    assert not stalled_with({}, "image cannot be pulled")
    assert not stalled_with({"conditions": [{"type": "Admitted", "status": "True",
                                             "message": "image cannot be pulled"}]}, "image cannot be pulled")


def test_a_job_left_queued_catches_up_with_the_ledger() -> None:
    """A job still Queued after the ledger admitted (held) or refused its reservation is started or
    refused (by handle_job when the operator starts, by the pod sweep otherwise); a reservation
    still queued, released or gone changes nothing. Only a priced job is waiting in the queue."""
    assert queued_priced({"phase": "Queued", "estimatedMicro": "3200000"})
    assert queued_priced({"phase": "Queued", "estimatedMicro": "0"})
    assert not queued_priced({"phase": "Queued"}) and not queued_priced({"phase": "Queued", "estimatedMicro": ""})
    assert not queued_priced({"phase": "Admitted", "estimatedMicro": "3200000"})
    assert queued_change("uid", ReservationState.HELD, "ignored") == QueueChange("uid", Decision.ADMITTED, "")
    assert queued_change("uid", ReservationState.REFUSED, "the budget was lowered") == \
        QueueChange("uid", Decision.REFUSED, "the budget was lowered")
    assert queued_change("uid", ReservationState.REFUSED, "x").reason == "BudgetExceeded"
    for state in (ReservationState.QUEUED, ReservationState.RELEASED, ReservationState.SETTLED, None):
        assert queued_change("uid", state, "x") is None


def test_a_job_waiting_for_its_session_is_recognised_by_that_session_only() -> None:
    """The session's tick starts the jobs that wait for it: the message the job was given, exactly,
    for this session; not a message that only begins the same way, nor another session's."""
    from governance.jobs.placement import WaitForSession, session_not_open, waits_for

    step = session_not_open("s", None, "", False, 0, "ibm-torino")
    assert isinstance(step, WaitForSession) and waits_for("s", step.message)
    assert not waits_for("s2", step.message) and not waits_for("s", WaitForSession("s2").message)
    assert not waits_for("s", "admitted from the queue: funds were freed")


def test_an_attempts_end_says_so_in_one_event() -> None:
    retry = after_attempt(counted(1), False, 1, False, {"error": "node lost"}, 137, 2, 2.0, NOW)
    assert isinstance(retry, Retry) and (retry.event.type, retry.event.reason) == ("Warning", "AttemptFailed")
    done = after_attempt(counted(1), False, 1, True, {}, 0, 2, 2.0, NOW)
    assert isinstance(done, Finish) and done.event("ok") == Event("Normal", "Succeeded", "ok")
    failed = after_attempt(counted(1), False, 1, False, {}, 2, 2, 2.0, NOW)
    assert isinstance(failed, Finish) and failed.event("no") == Event("Warning", "Failed", "no")


# ------------------------------------------------------------------ a session that is not open


def test_a_job_waits_for_its_session_to_open() -> None:
    from governance.jobs.placement import WaitForSession, session_not_open

    assert session_not_open("s", None, "", True, 0, "ibm-torino") == WaitForSession("s")
    assert WaitForSession("s").message == "waiting for QiskitSession s to open"


def test_a_failed_session_fails_its_jobs_with_its_reason() -> None:
    from governance.jobs.placement import EndUnstarted, session_not_open

    assert session_not_open("s", "Failed", "credentials refused", True, 0, "ibm-torino") == \
        EndUnstarted("SessionFailed", "QiskitSession s failed: credentials refused")


def test_an_ended_batch_moves_its_jobs_twice_then_fails_them() -> None:
    from governance.jobs.placement import EndUnstarted, MoveToNewBatch, session_not_open

    assert session_not_open("b1", "Expired", "", True, 0, "ibm-torino") == NeedBackend("ibm-torino")
    first = session_not_open("b1", "Expired", "", True, 0, "ibm-torino", True)
    assert isinstance(first, MoveToNewBatch) and first.moves == 1 and "(move 1 of 2)" in first.message
    second = session_not_open("b2", "Closed", "", True, 1, "ibm-torino", True)
    assert isinstance(second, MoveToNewBatch) and second.moves == 2
    third = session_not_open("b3", "Expired", "", True, 2, "ibm-torino")
    assert isinstance(third, EndUnstarted) and third.reason == "SessionEnded" and "waited through 3 sessions" in \
        third.message
    no_backend = session_not_open("b1", "Expired", "", True, 0, "ibm-torino", False)
    assert isinstance(no_backend, EndUnstarted) and no_backend.reason == "SessionEnded"


def test_a_named_session_that_ended_fails_its_jobs_without_moving_them() -> None:
    from governance.jobs.placement import EndUnstarted, session_not_open

    outcome = session_not_open("mine", "Closed", "", False, 0, "ibm-torino")
    assert isinstance(outcome, EndUnstarted) and "name an open session in spec.session" in outcome.message


def test_a_dedicated_session_costs_its_wall_clock_time_exactly() -> None:
    from governance import providers

    dedicated_session_cost = providers.get("ibm").session_cost  # one home: the provider's price
    prices = PriceList.from_strings(perQPUSecond="1.60", perShot="0.00035")  # shots are not what it pays for
    assert dedicated_session_cost(3600, prices, "USD") == 5_760_000_000  # an hour: 5760.00 USD
    assert dedicated_session_cost(0, prices, "USD") == 0
    assert dedicated_session_cost(90, prices, "QPU-seconds") == 90_000_000
    with pytest.raises(ValueError):
        dedicated_session_cost(1, prices, "EUR")
