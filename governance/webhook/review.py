"""The admission review: an AdmissionReview request in, a verdict out. Pure: what it needs from
the cluster and the ledger comes through `Sources` (served from caches by the server adapter).

Nothing is decided here that the controller does not decide the same way: a QiskitJob goes
through `parse_job`, `choose_budget` and `assess` (governance/admission.py) and the budget
policy the ledger decides with (`policy.decide`, governance/budget/policy.py), so a refusal at
`kubectl apply` carries the very message the job's status would carry. The webhook reserves nothing (the object may never be stored:
another webhook, a dry run, a lost connection), so it can be wrong in one direction only: two
jobs that each fit the balances it read can both pass, and the controller, which reserves
under the budget's lock, refuses the second. It is never the one that lets money through.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from .. import providers
from ..admission import Estimate, Problem, assess, backend_from_object, choose_budget, unknown_backend
from ..backends import UnknownBackendModel, max_qubits
from ..api.specs import Backend, SpecError, parse_budget, parse_job, parse_session
from ..budget import policy
from ..budget.money import format_amount
from ..budget.types import Balance, Decision
from ..sessions.tokens import credentials_problem


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
                problem = credentials_problem(secret, namespace, sources.secret_keys(namespace, secret))
                if problem:
                    field = "spec.credentialsSecret" if session.credentials_secret else "spec"
                    return Verdict(False, f"{field}: {problem}", "CredentialsMissing")
        else:
            backend = backend_from_object(name, obj)
            if isinstance(backend, Problem):
                return Verdict(False, backend.message, backend.reason)
            try:  # the device model every estimate on it is made with
                max_qubits(backend)
            except UnknownBackendModel as exc:
                field = providers.of(backend).model_field(spec)
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
    phase = status.get("phase") or "Admitted"
    if status.get("admittedGeneration") is not None:
        price = f" at {status['estimatedCost']} {status.get('currency') or 'USD'}" if status.get("estimatedCost") else ""
        why = f"; it was priced{price} as admitted, generation {status['admittedGeneration']}"
    else:  # refused or failed before a price was admitted: the controller never looks at it again
        why = ", and a decided job is never reconsidered"
    return Verdict(False, f"spec: the spec of a QiskitJob cannot change once it is decided (phase {phase}{why}): "
                          "create a new QiskitJob instead", "SpecImmutable")


def review_job(namespace: str, spec: Mapping[str, Any], sources: Sources) -> Verdict:
    """The controller's admission of a job (handlers/jobs.py `admit`), up to the reservation."""
    try:
        parsed = parse_job(dict(spec))
    except SpecError as exc:
        return Verdict(False, str(exc), "InvalidSpec")
    backend = sources.backend(parsed.backend)
    if backend is None:
        backend = unknown_backend(parsed.backend)
    if isinstance(backend, Problem):
        return _deny(backend)
    warnings: list[str] = []
    budgets = sources.budgets(namespace)
    if budgets is None:  # the ledger is unreachable: price the job, the controller decides the rest
        coming = sources.budgets_in_cluster(namespace)
        choice = choose_budget(namespace, parsed.budget, coming, sources.allow_unbudgeted)
        if isinstance(choice, Problem):
            return _deny(choice)
        warnings.append("the budget ledger cannot be read now: the operator decides when it can")
        views: Mapping[str, BudgetView] = {}
    else:
        units = {b.name: b.unit for b in budgets.values()}
        if (parsed.budget and parsed.budget not in units) or not units:
            # applied together with its budget (`kubectl apply -f budget.yaml -f job.yaml`): the
            # controller waits for a budget the cluster has and the ledger does not know yet
            coming = {n: u for n, u in sources.budgets_in_cluster(namespace).items() if n not in units}
            if (parsed.budget in coming) if parsed.budget else coming:
                units = {**units, **coming}
                warnings.append(f"QiskitBudget {parsed.budget or ', '.join(sorted(coming))} is not in the "
                                "ledger yet: the operator decides when it is")
        choice = choose_budget(namespace, parsed.budget, units, sources.allow_unbudgeted)
        if isinstance(choice, Problem):
            return _deny(choice)
        views = budgets
    unit = choice[1] if choice else "USD"
    estimate = assess(parsed, backend, unit)
    if isinstance(estimate, Problem):
        return _deny(estimate)
    priced = f"estimated {estimate.describe()} ({_usage(estimate, backend)})"
    if choice is None:
        return Verdict(True, warnings=(f"{priced}; namespace {namespace} has no budget: the operator admits "
                                       "unbudgeted work", *warnings))
    label = f"{namespace}/{choice[0]}"
    if parsed.session:
        return Verdict(True, warnings=(f"{priced}; runs in QiskitSession {parsed.session}: what budget {label} "
                                       "pays is decided with the session", *warnings))
    view = views.get(choice[0])
    if view is None or view.balance is None:
        return Verdict(True, warnings=(priced, *warnings))
    balance = view.balance
    snapshot = policy.Snapshot(label, balance.unit, balance.limit_micro, balance.spent_micro, balance.held_micro,
                               balance.queued, view.enforcement)
    ruling = policy.decide([snapshot], estimate.amount_micro)
    decision, message = ruling.decision, ruling.message
    if decision is Decision.REFUSED:
        return Verdict(False, message, "BudgetExceeded")
    left = f"budget {label}: {format_amount(balance.remaining_micro, balance.unit)} left this period"
    if decision is Decision.QUEUED:
        return Verdict(True, warnings=(f"{priced}; {left}", f"the job will wait: {message}", *warnings))
    return Verdict(True, warnings=(f"{priced}; {left}", *warnings))


def _deny(problem: Problem) -> Verdict:
    return Verdict(False, problem.message, problem.reason)


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
