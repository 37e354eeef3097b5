"""A QiskitJob's admission: the facts the core's decision asks for (governance/jobs/admission.py),
read when it asks (backend, budget, estimate, session, reservation), and the status it ends in;
the job's terms as the ledger records them."""

from __future__ import annotations

import logging
from typing import Any

from .. import metrics, providers
from ..assessment import Problem, assess, unknown_backend
from ..assessment import choose_budget as budget_that_pays
from ..api import GROUP, VERSION
from ..api.specs import Backend, JobSpec, SpecError, budgets_that_may_come, parse_job
from ..budget.batcher import ReservationBatcher
from ..budget.costmodel import Usage
from ..budget.errors import UnknownBudget, UnknownReservation
from ..budget.ledger import Ledger
from ..budget.money import format_quantity
from ..budget.types import JobTerms, ReserveOutcome, ReserveRequest, job_labels
from ..jobs import JobStatus, Phase
from ..jobs.admission import (AdmissionFacts, Fail, Need, NeedBackend, NeedBudget, NeedEstimate, NeedReservation,
                              NeedSession, Outcome, Queue, Refuse, decide_admission, phase_of)
from ..jobs.events import Event
from ..snapshot import ClusterSnapshot
from .budgetnotify import BudgetNotifier
from .config import OperatorConfig
from ..jobs.status import queued_status, terminal_status
from .jobstatus import admitted_status, failed_status
from .kube import Kube, emit, unless_gone
from .retrying import NotYet
from .sessionview import SessionDirectory

log = logging.getLogger("qgov.jobs")


class Admission:
    """Admits jobs: validates, prices and reserves, and records what a job is admitted with."""

    def __init__(self, config: OperatorConfig, ledger: Ledger, batcher: ReservationBatcher, kube: Kube,
                 notifier: BudgetNotifier, directory: SessionDirectory,
                 snapshot: ClusterSnapshot) -> None:
        """`snapshot`: backends and budgets as the watches see them (governance/snapshot.py): admission
        needs no API call for them."""
        self.config, self.ledger, self.batcher, self.kube = config, ledger, batcher, kube
        self.notifier, self.directory, self.snapshot = notifier, directory, snapshot

    def load_backend(self, name: str) -> Backend | Problem:
        """The backend as the watch keeps it, else one GET (created a moment ago, not seen yet)."""
        found = self.snapshot.backend(name, self._get_backend)
        return unknown_backend(name) if found is None else found

    def _get_backend(self, name: str) -> dict[str, Any] | None:
        return unless_gone(lambda: self.kube.custom.get_cluster_custom_object(GROUP, VERSION, "qiskitbackends", name))

    def choose_budget(self, namespace: str, wanted: str | None) -> tuple[str, str] | Problem | None:
        """(name, unit) of the budget that pays; None when unbudgeted work is allowed."""
        # the first job of the namespace since start: the ledger's budgets, read once
        budgets = self.snapshot.budgets_or_load(namespace, lambda: {b.name: b.unit for b in self.ledger.budgets(namespace)})
        if (wanted and wanted not in budgets) or not budgets:
            self._unless_budget_is_coming(namespace, wanted)
        return budget_that_pays(namespace, wanted, budgets, self.config.allow_unbudgeted)

    def _unless_budget_is_coming(self, namespace: str, wanted: str | None) -> None:
        """Budgets and jobs come on separate watches: a job applied with its budget (`kubectl apply
        -f budget.yaml -f job.yaml`) can arrive first. When the cluster has the budget the ledger does
        not know yet, the job waits for it (NotYet: retried within seconds) instead of being refused.
        A budget whose spec was found invalid never comes: its jobs are refused."""
        listed = self.kube.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, "qiskitbudgets")["items"]
        names = set(budgets_that_may_come(listed))
        coming = wanted in names if wanted else bool(names)
        if coming:
            raise NotYet(f"QiskitBudget {wanted or ', '.join(sorted(names))} in {namespace} is not in the ledger yet")

    def admit(self, job: dict[str, Any]) -> dict[str, Any]:
        """Decide a job (governance/jobs/admission.py) and return its new status (pods are created by
        the caller). Each fact the decision needs is read here, when it asks for it."""
        meta = job["metadata"]
        namespace, uid = meta["namespace"], meta["uid"]
        try:
            spec: JobSpec | SpecError = parse_job(job.get("spec") or {})
        except SpecError as exc:
            spec = exc
        facts = AdmissionFacts(namespace, spec)
        while isinstance(step := decide_admission(facts), Need):
            if isinstance(step, NeedBackend):
                backend = self.load_backend(step.name)
                facts = facts.answer(backend=backend,
                                     in_sessions=not isinstance(backend, Problem) and providers.of(backend).needs_session)
            elif isinstance(step, NeedBudget):
                facts = facts.answer(budget=self.choose_budget(namespace, step.wanted))
            elif isinstance(step, NeedEstimate):
                facts = facts.answer(estimate=assess(step.spec, step.backend, step.unit))
            elif isinstance(step, NeedSession):
                facts = facts.answer(placement=self.directory.session_for_job(
                    namespace, uid, step.requested, step.backend, step.credentials_secret))
            elif isinstance(step, NeedReservation):
                facts = facts.answer(reservation=self._reserve(job, step, facts))
        return self._apply_admission(job, step)

    def _reserve(self, job: dict[str, Any], step: NeedReservation, facts: AdmissionFacts) -> ReserveOutcome | Problem:
        meta = job["metadata"]
        namespace = meta["namespace"]
        try:
            outcome = metrics.timed_reserve(self.batcher.reserve, ReserveRequest(
                meta["uid"], namespace, step.budget, step.amount_micro, job=f"{namespace}/{meta['name']}",
                # decide_admission asks for a reservation only once the backend is known (a Backend)
                backend=facts.backend.name if isinstance(facts.backend, Backend) else "", session=step.session))
        except UnknownBudget as exc:  # deleted a moment ago
            return Problem("UnknownBudget", str(exc))
        if outcome.thresholds_crossed:
            self.notifier.budget_event(
                namespace, step.budget, "Warning", "BudgetThresholdCrossed",
                f"{max(outcome.thresholds_crossed)}% of the budget is committed: {outcome.balance.describe()}")
        return outcome

    def _apply_admission(self, job: dict[str, Any], outcome: Outcome) -> dict[str, Any]:
        """The status (and Events) for the admission's outcome; its phase is the core's (phase_of)."""
        meta, phase = job["metadata"], phase_of(outcome).value
        if isinstance(outcome, Fail):
            return failed_status(job, phase, outcome.reason, outcome.message)
        base = outcome.priced.status(meta.get("generation")) if outcome.priced is not None else None
        if isinstance(outcome, Refuse):
            return self.refuse(job, outcome.reason, outcome.message, outcome.budget, base, phase)
        assert base is not None and outcome.priced is not None
        self._record_terms(job, outcome.priced)
        if isinstance(outcome, Queue):
            emit(job, Event("Normal", "Queued", outcome.message))
            return queued_status(job, base, phase, outcome.message)
        if outcome.unbudgeted:
            log.info(f"admitting {meta['namespace']}/{meta['name']} without a budget (QGOV_ALLOW_UNBUDGETED)")
            # its pod runs as qgov-executor too, which a budget would have provided (a real API server
            # refuses a pod whose ServiceAccount does not exist)
            self.notifier.provide_executor_identity(job, meta["namespace"])
        return admitted_status(job, base, phase, outcome.reason, outcome.message, event=outcome.unbudgeted)

    def _record_terms(self, job: dict[str, Any], priced: Any) -> JobTerms:
        """Record in the ledger what the job is admitted with, before its status says so: the budget,
        whether a dedicated session pays, its session, and the model's usage of the circuits just
        priced. Its charges are computed from these, never from its status."""
        meta = job["metadata"]
        backend = self.load_backend(priced.backend)
        model = providers.of(backend).model_of_estimate(priced.estimate.usage) if isinstance(backend, Backend) \
            else Usage()
        return self.ledger.record_terms(JobTerms(
            meta["uid"], f"{meta['namespace']}/{meta['name']}",
            f"{meta['namespace']}/{priced.budget}" if priced.budget else "", priced.estimate.unit,
            priced.paid_by_session, priced.backend, priced.session or "", format_quantity(model.qpu_seconds),
            format_quantity(model.cpu_seconds), model.shots, model.tasks, job_labels(meta.get("labels"))))

    def terms(self, job: dict[str, Any]) -> JobTerms:
        """What the job was admitted with, from the ledger. A job admitted by an operator older than
        the ledger's job_money table has no record: its terms are rebuilt once from what the ledger
        does know (its reservation: budget, session) and the spec as priced, and recorded."""
        meta = job["metadata"]
        terms = self.ledger.job_terms(meta["uid"])
        if terms is not None:
            return terms
        try:
            reservation = self.ledger.reservation(meta["uid"])
        except UnknownReservation:
            reservation = None
        namespace = meta["namespace"]
        budget_row = next((b for b in self.ledger.budgets(namespace) if reservation is not None
                           and b.id == reservation.budget_id), None)
        spec, backend_name = job.get("spec") or {}, (reservation.backend if reservation else "") or \
            (job.get("spec") or {}).get("backend", "")
        backend = self.load_backend(backend_name)
        model = Usage()
        if isinstance(backend, Backend):
            try:
                model = providers.of(backend).modelled_usage(parse_job(spec), backend)
            except Exception as exc:  # noqa: BLE001 - a spec that no longer parses: the model is unknown
                log.warning(f"job {namespace}/{meta['name']}: no model of its usage ({type(exc).__name__})")
        return self.ledger.record_terms(JobTerms(
            meta["uid"], f"{namespace}/{meta['name']}", f"{namespace}/{budget_row.name}" if budget_row else "",
            budget_row.unit if budget_row else "USD", reservation is None and JobStatus.of(job).paid_by_session,
            backend_name, (reservation.session if reservation else "") or "", format_quantity(model.qpu_seconds),
            format_quantity(model.cpu_seconds), model.shots, model.tasks, job_labels(meta.get("labels"))))

    def refuse(self, job: dict[str, Any], reason: str, message: str, budget: str | None,
                base: dict[str, Any] | None = None, phase: str = Phase.REFUSED.value) -> dict[str, Any]:
        emit(job, Event("Warning", reason, message))
        if budget:
            self.notifier.budget_event(job["metadata"]["namespace"], budget, "Warning", "JobRefused",
                                       f"refused QiskitJob {job['metadata']['name']}: {message}")
        return terminal_status(job, phase, reason, message, **(base or {}))
