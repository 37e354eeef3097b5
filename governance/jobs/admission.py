"""What to do with a new job: fail it, refuse it, queue it, or admit it (in a session, unbudgeted,
or with a reservation in its budget).

`decide_admission` is called with what is known so far (`AdmissionFacts`) and answers either with
what it needs to know next (a `Need...`: the backend, the budget that pays, the estimate, a
session, the ledger's answer) or with the outcome. The caller (handlers/jobadmission.py) finds each
answer (API reads, the cost model, the ledger) and asks again, so each read happens only when
the one before allows it, and the decisions are here, without I/O:

    facts = AdmissionFacts(namespace, spec_or_error)
    while isinstance(step := decide_admission(facts), Need): facts = <answer step>
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Union

from ..assessment import Estimate, Problem
from ..api.specs import Backend, JobSpec, SpecError
from ..budget.money import format_amount
from ..budget.policy import Ruling
from ..budget.types import Decision, ReserveOutcome
from .phases import Phase

Choice = Union[tuple[str, str], Problem, None]  # (budget name, unit) | why none pays | None: unbudgeted


class _Unasked:
    def __repr__(self) -> str:
        return "UNASKED"


UNASKED: Any = _Unasked()  # a fact not looked up yet (None is an answer: no budget)


@dataclass(frozen=True)
class AdmissionFacts:
    namespace: str
    spec: JobSpec | SpecError  # the parsed spec, or why it does not parse
    backend: Backend | Problem | None = None  # None: not looked up yet
    in_sessions: bool = False  # the backend's provider runs every job in a Runtime session (set with backend)
    budget: Choice = UNASKED
    estimate: Estimate | Problem | None = None  # None: not priced yet
    placement: tuple[str, str] | Problem | None = None  # (session, mode); None: not placed yet
    # the ledger's outcome, or the budget policy's ruling over balances read without a lock (the
    # webhook's: it reserves nothing); Problem: the budget is gone; None: not asked yet
    reservation: ReserveOutcome | Ruling | Problem | None = None

    def answer(self, **facts: Any) -> AdmissionFacts:
        return replace(self, **facts)


# ------------------------------------------------------------------ what is needed next


class Need:
    """A fact the decision needs: the caller finds it and asks again."""


@dataclass(frozen=True)
class NeedBackend(Need):
    name: str  # answer: backend (Backend | Problem) and in_sessions


@dataclass(frozen=True)
class NeedBudget(Need):
    wanted: str | None  # spec.budget; answer: budget (the choice)


@dataclass(frozen=True)
class NeedEstimate(Need):
    spec: JobSpec
    backend: Backend
    unit: str  # answer: estimate (Estimate | Problem)


@dataclass(frozen=True)
class NeedSession(Need):
    requested: str | None  # spec.session (None: an automatic batch); answer: placement
    backend: Backend
    credentials_secret: str | None


@dataclass(frozen=True)
class NeedReservation(Need):
    budget: str
    amount_micro: int
    session: str  # the session it runs in, for the ledger's report ("" when none)
    # answer: reservation (the ledger's outcome, or Problem("UnknownBudget", ...) when it is gone; a
    # caller that reserves nothing answers policy.decide's ruling over the balances it read)


# ------------------------------------------------------------------ outcomes


@dataclass(frozen=True)
class Priced:
    """What an admission records in the job's status once the job is priced."""

    estimate: Estimate
    backend: str
    budget: str | None
    session: str | None = None
    paid_by_session: bool = False

    def status(self, generation: int | None) -> dict[str, Any]:
        status = {"estimatedCost": format_amount(self.estimate.amount_micro), "currency": self.estimate.unit,
                  "estimatedMicro": str(self.estimate.amount_micro), "backend": self.backend, "attempts": 0,
                  "budget": self.budget,
                  # what was priced: the executor runs this generation of the spec or nothing
                  "admittedGeneration": generation}
        if self.session is not None:
            status["session"] = self.session
        if self.paid_by_session:
            status["paidBySession"] = True
        return status


@dataclass(frozen=True)
class Fail:
    """The job cannot run as written (Failed)."""

    reason: str
    message: str
    field: str | None = None  # the spec's field at fault, when one is


@dataclass(frozen=True)
class Refuse:
    """No budget pays for it (Refused)."""

    reason: str
    message: str
    budget: str | None = None  # the budget that refused it (it is told too)
    priced: Priced | None = None


@dataclass(frozen=True)
class Queue:
    """The budget pays once funds are freed (Queued)."""

    priced: Priced
    message: str


@dataclass(frozen=True)
class Admit:
    """It runs now (Admitted, first attempt)."""

    priced: Priced
    reason: str
    message: str
    unbudgeted: bool = False  # out of the ordinary: an Event says so, and it needs the executor identity


Outcome = Union[Fail, Refuse, Queue, Admit]


def decide_admission(f: AdmissionFacts) -> Need | Outcome:
    """The next fact needed, or what to do with the job (see the module's docstring)."""
    if isinstance(f.spec, SpecError):
        return Fail("InvalidSpec", str(f.spec), f.spec.field)
    spec = f.spec
    if f.backend is None:
        return NeedBackend(spec.backend)
    if isinstance(f.backend, Problem):
        return Fail(f.backend.reason, f.backend.message, "spec.backend")
    backend = f.backend
    if f.budget is UNASKED:
        return NeedBudget(spec.budget)
    if isinstance(f.budget, Problem):
        return Refuse(f.budget.reason, f.budget.message)
    budget, unit = f.budget if f.budget else (None, "USD")
    if f.estimate is None:
        return NeedEstimate(spec, backend, unit)
    if isinstance(f.estimate, Problem):
        if f.estimate.reason == "MaxCostExceeded":
            return Refuse(f.estimate.reason, f.estimate.message)
        return Fail(f.estimate.reason, f.estimate.message)
    priced = Priced(f.estimate, backend.name, budget)
    if f.in_sessions or spec.session:
        if f.placement is None:
            return NeedSession(spec.session, backend, spec.credentials_secret)
        if isinstance(f.placement, Problem):
            return Fail(f.placement.reason, f.placement.message, "spec.session")
        session, mode = f.placement
        priced = replace(priced, session=session)
        if mode == "dedicated":  # the session reserved its wall-clock time: its jobs are not charged again
            return Admit(replace(priced, budget=None, paid_by_session=True), "InDedicatedSession",
                         f"runs in dedicated session {session}, which pays for its time")
    if budget is None:
        return Admit(priced, "Unbudgeted", "admitted without a budget (the operator allows unbudgeted work)",
                     unbudgeted=True)
    if f.reservation is None:
        return NeedReservation(budget, f.estimate.amount_micro, priced.session or spec.session or "")
    if isinstance(f.reservation, Problem):  # the budget was deleted a moment ago
        return Refuse(f.reservation.reason, f.reservation.message)
    outcome = f.reservation
    if outcome.decision is Decision.REFUSED:
        return Refuse("BudgetExceeded", outcome.message, budget, priced)
    if outcome.decision is Decision.QUEUED:
        return Queue(priced, outcome.message)
    return Admit(priced, "BudgetReserved", f"reserved {f.estimate.describe()} in budget {f.namespace}/{budget}")


PHASE_OF = {Fail: Phase.FAILED, Refuse: Phase.REFUSED, Queue: Phase.QUEUED, Admit: Phase.ADMITTED}


def phase_of(outcome: Outcome) -> Phase:
    return PHASE_OF[type(outcome)]
