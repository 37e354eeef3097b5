"""The admission review: an AdmissionReview request in, a verdict out. Pure: what it needs from
the cluster and the ledger comes through `Sources` (served from caches by the server adapter).

Nothing is decided here that the controller does not decide the same way: a QiskitJob goes
through the controller's own decision (`decide_admission`, governance/jobs/admission.py), and
the webhook only answers the facts it asks for (the backend, the budget that pays, the estimate,
the session, the budget policy's ruling: `_Answers`), so a refusal at `kubectl apply` carries
the very message the job's status would carry. The webhook reserves nothing (the object may never be stored:
another webhook, a dry run, a lost connection), so it can be wrong in one direction only: two
jobs that each fit the balances it read can both pass, and the controller, which reserves
under the budget's lock, refuses the second. It is never the one that lets money through.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from .. import providers
from ..assessment import Estimate, Problem, assess, backend_from_object, choose_budget, unknown_backend
from ..providers.base import UnknownBackendModel
from ..api.specs import Backend, JobSpec, SpecError, parse_budget, parse_job, parse_session
from ..budget import policy
from ..budget.money import format_amount
from ..budget.types import Balance
from ..jobs.admission import (Admit, AdmissionFacts, Fail, Need, NeedBackend, NeedBudget, NeedEstimate, NeedReservation,
                              NeedSession, Outcome, Queue, Refuse, decide_admission)
from ..jobs.phases import Phase
from ..providers.ibm.iam import credentials_problem


@dataclass(frozen=True)
class BudgetView:
    """A budget as the ledger last showed it (read without a lock)."""

    name: str
    unit: str
    enforcement: str  # hard | queue
    balance: Balance | None  # None: the balances could not be read


class Sources(Protocol):
    allow_unbudgeted: bool
    ibm_default_secret: str  # the credential Secret of sessions that name none

    def backend(self, name: str) -> Backend | Problem | None:
        """A QiskitBackend (parsed), the problem with it, or None when there is none."""

    def budgets(self, namespace: str) -> Mapping[str, BudgetView] | None:
        """The ledger's budgets of the namespace; None when the ledger cannot be read."""

    def budgets_in_cluster(self, namespace: str) -> Mapping[str, str]:
        """The namespace's QiskitBudget objects (name -> unit) the ledger may not know yet."""

    def secret_keys(self, namespace: str, name: str) -> frozenset[str] | None:
        """The keys (never the values) of a Secret with a non-empty value; None when there is none."""


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    message: str = ""
    reason: str = ""  # CamelCase, as the controller's conditions
    warnings: tuple[str, ...] = field(default_factory=tuple)


ALLOW = Verdict(True)
KINDS = ("QiskitJob", "QiskitBudget", "QiskitBackend", "QiskitSession")


def review(request: Mapping[str, Any], sources: Sources) -> Verdict:
    """Judge one AdmissionReview `request` (its `request` field)."""
    kind = (request.get("kind") or {}).get("kind")
    operation = request.get("operation")
    obj = request.get("object") or {}
    if operation not in ("CREATE", "UPDATE") or kind not in KINDS:
        return ALLOW
    meta = obj.get("metadata") or {}
    if meta.get("deletionTimestamp"):
        return ALLOW  # finalizers coming off: never stand in the way of a deletion
    old = request.get("oldObject") or {}
    if operation == "UPDATE" and (old.get("spec") or {}) == (obj.get("spec") or {}):
        return ALLOW  # metadata, labels, finalizers: nothing admission decides changed
    spec = obj.get("spec") or {}
    namespace = request.get("namespace") or meta.get("namespace") or ""
    name = meta.get("name") or request.get("name") or ""
    if kind == "QiskitJob":
        if operation == "UPDATE" and _decided(old):
            return _job_update(old)
        return review_job(namespace, spec, sources)  # a new spec before the controller priced it: as a create
    try:
        if kind == "QiskitBudget":
            parse_budget(namespace, name, spec)
        elif kind == "QiskitSession":
            session = parse_session(spec)
            backend = sources.backend(session.backend)
            if backend is None:
                problem = unknown_backend(session.backend)
                return Verdict(False, problem.message, problem.reason)
            if isinstance(backend, Problem):
                return Verdict(False, backend.message, backend.reason)
            if providers.of(backend).needs_credentials:  # a local session needs none
                secret = session.credentials_secret or sources.ibm_default_secret
                missing = credentials_problem(secret, namespace, sources.secret_keys(namespace, secret))
                if missing:
                    field = "spec.credentialsSecret" if session.credentials_secret else "spec"
                    return Verdict(False, f"{field}: {missing}", "CredentialsMissing")
        else:
            backend = backend_from_object(name, obj)
            if isinstance(backend, Problem):
                return Verdict(False, backend.message, backend.reason)
            provider = providers.of(backend)
            try:  # the device model every estimate on it is made with
                provider.max_qubits(backend)
            except UnknownBackendModel as exc:
                field = provider.model_field(spec)
                return Verdict(False, f"QiskitBackend {name}: {field}: {exc}", "UnknownBackend")
    except SpecError as exc:
        return Verdict(False, str(exc), "InvalidSpec")
    return ALLOW


def _decided(old: Mapping[str, Any]) -> bool:
    status = old.get("status") or {}
    return status.get("admittedGeneration") is not None or bool(status.get("phase"))


def _job_update(old: Mapping[str, Any]) -> Verdict:
    """A job's spec may change until the controller has priced it, never after: the executor
    runs the generation that was priced, so an edit would only fail later, at run time."""
    status = old.get("status") or {}
    phase = status.get("phase") or Phase.ADMITTED.value
    if status.get("admittedGeneration") is not None:
        price = f" at {status['estimatedCost']} {status.get('currency') or 'USD'}" if status.get("estimatedCost") else ""
        why = f"; it was priced{price} as admitted, generation {status['admittedGeneration']}"
    else:  # refused or failed before a price was admitted: the controller never looks at it again
        why = ", and a decided job is never reconsidered"
    return Verdict(False, f"spec: the spec of a QiskitJob cannot change once it is decided (phase {phase}{why}): "
                          "create a new QiskitJob instead", "SpecImmutable")


def review_job(namespace: str, spec: Mapping[str, Any], sources: Sources) -> Verdict:
    """The controller's admission of a job, up to the reservation: the same `decide_admission`
    loop as handlers/jobadmission.py `admit`, each fact it asks for answered from `sources` (`_Answers`)."""
    try:
        parsed: JobSpec | SpecError = parse_job(dict(spec))
    except SpecError as exc:
        parsed = exc
    answers = _Answers(namespace, sources)
    facts = AdmissionFacts(namespace, parsed)
    while isinstance(step := decide_admission(facts), Need):
        answered = answers.answer(step, facts)
        if isinstance(answered, Verdict):  # what only the controller can tell: it decides
            return answered
        facts = answered
    return answers.verdict(step, facts)


UNREAD = "unread"  # the mode of a named session: the webhook does not read sessions


@dataclass
class _Answers:
    """The webhook's answer to each fact the decision asks for: the controller's reads, from the
    snapshot in `sources`, except that it reserves nothing (the budget policy rules over the
    balances it read) and places no job in a session (an automatic batch is one more batch job; a
    named session's mode, which says whether the budget pays, is the controller's to read)."""

    namespace: str
    sources: Sources
    warnings: list[str] = field(default_factory=list)  # told after the verdict's own
    views: Mapping[str, BudgetView] = field(default_factory=dict)
    balance: Balance | None = None  # the paying budget's, when the policy ruled over it

    def answer(self, step: Need, facts: AdmissionFacts) -> AdmissionFacts | Verdict:
        if isinstance(step, NeedBackend):
            backend = self.sources.backend(step.name)
            if backend is None:
                backend = unknown_backend(step.name)
            return facts.answer(backend=backend,
                                in_sessions=not isinstance(backend, Problem) and providers.of(backend).needs_session)
        if isinstance(step, NeedBudget):
            return facts.answer(budget=self._budget(step.wanted))
        if isinstance(step, NeedEstimate):
            return facts.answer(estimate=assess(step.spec, step.backend, step.unit))
        if isinstance(step, NeedSession):
            return facts.answer(placement=("", "batch") if step.requested is None else (step.requested, UNREAD))
        assert isinstance(step, NeedReservation)
        return self._rule(step, facts)

    def _budget(self, wanted: str | None) -> tuple[str, str] | Problem | None:
        namespace, sources = self.namespace, self.sources
        budgets = sources.budgets(namespace)
        if budgets is None:  # the ledger is unreachable: price the job, the controller decides the rest
            choice = choose_budget(namespace, wanted, sources.budgets_in_cluster(namespace), sources.allow_unbudgeted)
            if not isinstance(choice, Problem):
                self.warnings.append("the budget ledger cannot be read now: the operator decides when it can")
            return choice
        units = {b.name: b.unit for b in budgets.values()}
        if (wanted and wanted not in units) or not units:
            # applied together with its budget (`kubectl apply -f budget.yaml -f job.yaml`): the
            # controller waits for a budget the cluster has and the ledger does not know yet
            coming = {n: u for n, u in sources.budgets_in_cluster(namespace).items() if n not in units}
            if (wanted in coming) if wanted else coming:
                units = {**units, **coming}
                self.warnings.append(f"QiskitBudget {wanted or ', '.join(sorted(coming))} is not in the "
                                     "ledger yet: the operator decides when it is")
        self.views = budgets
        return choose_budget(namespace, wanted, units, sources.allow_unbudgeted)

    def _rule(self, step: NeedReservation, facts: AdmissionFacts) -> AdmissionFacts | Verdict:
        """The budget policy's ruling over the balance read, as the ledger would rule (it reserves nothing)."""
        label = f"{self.namespace}/{step.budget}"
        if isinstance(facts.placement, tuple) and facts.placement[1] == UNREAD:
            return Verdict(True, warnings=(f"{_priced(facts)}; runs in QiskitSession {facts.placement[0]}: what "
                                           f"budget {label} pays is decided with the session", *self.warnings))
        view = self.views.get(step.budget)
        if view is None or view.balance is None:
            return Verdict(True, warnings=(_priced(facts), *self.warnings))
        balance = self.balance = view.balance
        snapshot = policy.Snapshot(label, balance.unit, balance.limit_micro, balance.spent_micro, balance.held_micro,
                                   balance.queued, view.enforcement)
        return facts.answer(reservation=policy.decide([snapshot], step.amount_micro))

    def verdict(self, outcome: Outcome, facts: AdmissionFacts) -> Verdict:
        if isinstance(outcome, (Fail, Refuse)):
            return Verdict(False, outcome.message, outcome.reason)
        priced = _priced(facts)
        if isinstance(outcome, Admit) and outcome.unbudgeted:
            return Verdict(True, warnings=(f"{priced}; namespace {self.namespace} has no budget: the operator "
                                           "admits unbudgeted work", *self.warnings))
        if self.balance is None:
            return Verdict(True, warnings=(priced, *self.warnings))
        left = (f"budget {self.namespace}/{outcome.priced.budget}: "
                f"{format_amount(self.balance.remaining_micro, self.balance.unit)} left this period")
        if isinstance(outcome, Queue):
            return Verdict(True, warnings=(f"{priced}; {left}", f"the job will wait: {outcome.message}",
                                           *self.warnings))
        return Verdict(True, warnings=(f"{priced}; {left}", *self.warnings))


def _priced(facts: AdmissionFacts) -> str:
    estimate, backend = facts.estimate, facts.backend
    assert isinstance(estimate, Estimate) and isinstance(backend, Backend)
    return f"estimated {estimate.describe()} ({_usage(estimate, backend)})"


def _usage(estimate: Estimate, backend: Backend) -> str:
    """What the estimate is made of, in the backend's own terms."""
    return providers.of(backend).describe_usage(estimate.usage, backend)


def response(review_request: Mapping[str, Any], verdict: Verdict) -> dict[str, Any]:
    """The AdmissionReview v1 answer to `review_request` (the whole review the API server sent)."""
    answer: dict[str, Any] = {"uid": (review_request.get("request") or {}).get("uid", ""),
                              "allowed": verdict.allowed}
    if not verdict.allowed:
        # code 403 and the message as ResourceQuota's refusals: kubectl prints `... denied the request: <message>`
        answer["status"] = {"code": 403, "reason": "Forbidden", "message": verdict.message}
    if verdict.warnings:
        answer["warnings"] = [w[:400] for w in verdict.warnings]  # the API server drops longer ones
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": answer}
