"""QiskitJob handlers: admit (validate, price, reserve), run (executor pods), settle, retry, delete.

Every step is idempotent: the ledger replays by the job's UID, executor pods have
deterministic names, and a job in a terminal phase is never touched again. An operator
killed at any moment and restarted picks up where it was (kopf's initial listing, pod events).
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import secrets
from decimal import Decimal
import logging
import sys
from concurrent.futures import Executor
from dataclasses import dataclass
from functools import partial
from datetime import datetime, timezone
from typing import Any, Literal, cast

import kopf
from kubernetes.client.rest import ApiException

from .. import metrics, providers
from ..admission import Problem, assess, backend_from_object, look_up_backend, unknown_backend
from ..admission import choose_budget as budget_that_pays
from ..api import FINALIZER, GROUP, JOB_LABEL, JOB_UID_LABEL, SESSION_LABEL, VERSION, label_value
from ..api.specs import Backend, JobSpec, SpecError, budgets_that_may_come, parse_job
from ..budget.batcher import ReservationBatcher
from ..budget.errors import DatabaseUnavailable, UnknownBudget, UnknownReservation
from ..budget.ledger import Ledger
from ..budget.money import format_amount, format_quantity
from ..budget.costmodel import Usage
from ..budget.types import (AttemptTotals, Decision, JobTerms, job_labels, QueueChange, ReserveOutcome, ReserveRequest,
                            SettleOutcome)
from ..jobs import (ACTIVE, FAILURES, STALLED, TERMINAL, AlreadyCounted, JobStatus, Phase, Retry, after_attempt,
                    attempt_charge, queued_change, queued_priced, stalled_with)
from ..jobs.admission import (AdmissionFacts, Fail, Need, NeedBackend, NeedBudget, NeedEstimate, NeedReservation,
                              NeedSession, Outcome, Queue, Refuse, decide_admission, phase_of)
from ..jobs.attempts import DEFAULT_BACKOFF_LIMIT, reported_usage
from ..jobs.ownpod import (CLAIM_ANNOTATION, CLAIM_PREFIX, NOT_RECORDED, adoptable, carries_claim, claim_record,
                           foreign_pod, recorded_uid)
from ..jobs.events import Event
from ..jobs import webhookprobe
from ..providers.base import ExecutorNeeds
from ..jobs.placement import EndUnstarted, MoveToNewBatch, WaitForSession, session_not_open
from ..sessions.status import SessionStatus
from .alarms import Alarms
from .budgetnotify import BudgetNotifier
from .config import OperatorConfig
from .conditions import iso, now_iso, parse_iso, set_condition
from .expiry import expires_at
from . import rawevents
from ..jobs import runnerreport as runner_reports
from ..jobs.results import result_names, written_by
from .identity import missing_account
from .jobphases import JobPhases
from .kube import JOBS as PLURAL
from .kube import Kube, discard, emit, unless_gone
from .pods import POD_ENDED, executor_pod, owner_name, pod_name
from .retrying import NotYet, Watcher, later, run_retrying
from .context import KopfContext
from .sessionview import AUTO_BATCH_LABEL, SessionDirectory, ended_phase, local_runner, executor_session

log = logging.getLogger("qgov.jobs")


# ---------------------------------------------------------------------- status helpers


def job_conditions(job: dict[str, Any], *changes: tuple[str, bool, str, str]) -> list[dict[str, Any]]:
    conditions = (job.get("status") or {}).get("conditions")
    for type_, ok, reason, message in changes:
        conditions = set_condition(conditions, type_, ok, reason, message, job["metadata"].get("generation"))
    return conditions or []


def _ledger_answered(job: dict[str, Any]) -> tuple[tuple[str, bool, str, str], ...]:
    """The condition change for a status written after the ledger answered (an admission, a
    settlement): LedgerUnavailable turns False in the same write. Written on its own later, the
    clearing could be undone by a write built from an older read of the job."""
    if JobStatus.of(job).condition_is(LEDGER_UNAVAILABLE, "True"):
        return ((LEDGER_UNAVAILABLE, False, "LedgerAvailable", "the budget ledger is reachable again"),)
    return ()


def _terminal(job: dict[str, Any], phase: str, reason: str, message: str, **extra: Any) -> dict[str, Any]:
    """A status for a job that ends here; Events go out with the same reason."""
    changes = [("Complete", phase == Phase.SUCCEEDED.value, reason, message), *_ledger_answered(job)]
    if phase in FAILURES:
        changes.append(("Failed", True, reason, message))
    if phase == Phase.REFUSED.value:
        changes.append(("Admitted", False, reason, message))
    conditions = job_conditions(job, *changes)
    return {"phase": phase, "message": message, "conditions": conditions, "completionTime": now_iso(),
            "retryAt": None, **extra}


def _admitted(job: dict[str, Any], base: dict[str, Any], phase: str, reason: str, message: str,
              event: bool = False) -> dict[str, Any]:
    """A job admitted at once. The Admitted condition records it (reason, message, time); an Event
    is posted only when the admission is out of the ordinary (no budget). A routine admission is
    the expected path: an Event for each doubled the API writes of a burst (and etcd's Event
    load) and was a tenth of the operator's CPU per job. Queueing, admission from the queue,
    refusals, retries and the end of every job each post one."""
    if event:
        emit(job, Event("Normal", "Admitted", message))
    return dict(base, phase=phase, message=message, attempts=1,
                conditions=job_conditions(job, ("Admitted", True, reason, message), *_ledger_answered(job)))


def _fail(job: dict[str, Any], phase: str, reason: str, message: str) -> dict[str, Any]:
    emit(job, Event("Warning", reason, message))
    return _terminal(job, phase, reason, message)


# ---------------------------------------------------------------------- the job handlers' collaborators


class Jobs:
    """What the QiskitJob handlers use, given at start-up (startup.py) rather than looked up, and
    what they do with it: admit, run, settle, retry and finalize jobs. The kopf handlers at the end
    of this module find it in kopf's memo (`memo.jobs`); the budget and session handlers and the pod
    sweep are given it."""

    def __init__(self, config: OperatorConfig, ledger: Ledger, batcher: ReservationBatcher, kube: Kube,
                 notifier: BudgetNotifier, directory: SessionDirectory, kopf_context: KopfContext,
                 job_phases: JobPhases, budget_units: dict[str, dict[str, str]], expiry: Alarms,
                 executor: Executor | None) -> None:
        """`batcher`: the ledger's reservations, batched (budget/batcher.py); `kube`: the API
        (kube.py); `notifier`: what jobs tell budgets (budgetnotify.py); `directory`: the sessions
        jobs run in (sessionview.py); `kopf_context`: whether the operator runs, and kopf's context
        for kopf.event; `job_phases`: the counts per budget and phase a budget's status shows (kept
        from the watch here); `budget_units`: the budgets known, by namespace (shared with the
        budget handlers); `expiry`: finished jobs' deletion times (expiry.py); `executor`: kopf's
        thread pool, for the work the async handlers hand off."""
        self.config, self.ledger, self.batcher, self.kube = config, ledger, batcher, kube
        self.notifier, self.directory, self.kopf_context = notifier, directory, kopf_context
        self.job_phases, self.budget_units, self.expiry, self.executor = job_phases, budget_units, expiry, executor
        self.active_jobs: dict[str, dict[str, Any]] = {}  # uid -> latest body of unfinished jobs (the pod sweep's)
        self.backends: dict[str, Backend | Problem] = {}  # QiskitBackend name -> parsed (from the watch)
        # (namespace, QiskitSession name, Runtime job id) -> (IBM's metered usage | None, why none):
        # set by startup.py once the session handlers (which hold the credentials) exist
        self.metering: Any = None

    def watcher(self, ref: JobRef) -> JobWatcher:
        """What a job's retried work reports to (retrying.py)."""
        return JobWatcher(ref, self.kube, self.notifier)

    async def in_thread(self, fn: Any, *args: Any) -> Any:
        """fn(*args) in kopf's thread pool, in a copy of this context (kopf.event needs kopf's context
        variables), as kopf runs a sync handler."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, contextvars.copy_context().run, fn, *args)

    # ------------------------------------------------------------------ watch events

    def backend_event(self, type: str | None, name: str, body: dict[str, Any]) -> None:
        """Keep the backends in memory, from their watch: admission needs no API call for them."""
        if type == "DELETED":
            self.backends.pop(name, None)
        else:
            self.backends[name] = backend_from_object(name, body)

    async def job_event_arrived(self, type: str | None, body: Any) -> None:
        """A job's watch event, on the event loop (see on_job_event)."""
        self.kopf_context.remember()
        meta, status = body["metadata"], body.get("status") or {}
        key = (meta["namespace"], meta["name"], meta["uid"])
        if type == "DELETED" or status.get("phase") in TERMINAL:
            self.active_jobs.pop(meta["uid"], None)
        else:  # what the pod sweep looks at (podsweep.py): unfinished jobs only, as the watch last saw them
            self.active_jobs[meta["uid"]] = dict(body)
        if type == "DELETED":
            changed = self.job_phases.forget(meta["uid"])
            self.expiry.cancel(key)
        else:
            budget = status.get("budget")
            changed = self.job_phases.observe(meta["uid"], (meta["namespace"], budget) if budget else None,
                                              status.get("phase"))
            if status.get("phase") in TERMINAL and not meta.get("deletionTimestamp") and \
                    (at := expires_at(body, self.config.job_ttl_seconds)) is not None:
                self.expiry.set(key, at)
        for namespace, name in changed:  # the budget's status shows these counts
            self.notifier.refresh_budget_status(namespace, name)
        if type != "DELETED" and not status.get("phase") and meta.get("creationTimestamp") and \
                webhookprobe.STATE.warn_once(meta["uid"], parse_iso(meta["creationTimestamp"])):
            emit(dict(body), Event("Warning", webhookprobe.NOT_CALLED_REASON,
                                   webhookprobe.not_called_message(webhookprobe.STATE.detail)))
        if _job_has_work(type, body):
            job = dict(body)
            ref = JobRef.of(job)
            await self.in_thread(run_retrying, f"job {meta['namespace']}/{meta['name']}",
                                 partial(self.job_event, type, job), partial(self._job_event_again, type, ref),
                                 self.watcher(ref))

    async def executor_pod_arrived(self, type: str, body: Any) -> None:
        """An executor pod's watch event, on the event loop (see on_executor_pod)."""
        phase = (body.get("status") or {}).get("phase")
        if (phase == "Running" or phase in POD_ENDED) if type != "DELETED" else phase not in POD_ENDED:
            pod = dict(body)
            meta, labels = pod["metadata"], pod["metadata"].get("labels") or {}
            ref = JobRef(meta["namespace"], owner_name(pod, "QiskitJob") or labels.get(JOB_LABEL, ""),
                         labels.get(JOB_UID_LABEL, ""))
            await self.in_thread(run_retrying, f"executor pod {meta['namespace']}/{meta['name']}",
                                 partial(self.executor_pod_event, type, pod), None, self.watcher(ref))

    # ------------------------------------------------------------------ admission, running, settling

    def load_backend(self, name: str) -> Backend | Problem:
        """The backend as the watch keeps it, else one GET (created a moment ago, not seen yet)."""
        found = look_up_backend(name, self.backends, lambda n: unless_gone(
            lambda: self.kube.custom.get_cluster_custom_object(GROUP, VERSION, "qiskitbackends", n)))
        return unknown_backend(name) if found is None else found

    def choose_budget(self, namespace: str, wanted: str | None) -> tuple[str, str] | Problem | None:
        """(name, unit) of the budget that pays; None when unbudgeted work is allowed."""
        budgets = self.budget_units.get(namespace)
        if budgets is None:  # first job of the namespace since start: read the ledger once
            budgets = self.budget_units.setdefault(namespace, {b.name: b.unit for b in self.ledger.budgets(namespace)})
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
            return _fail(job, phase, outcome.reason, outcome.message)
        base = outcome.priced.status(meta.get("generation")) if outcome.priced is not None else None
        if isinstance(outcome, Refuse):
            return self._refuse(job, outcome.reason, outcome.message, outcome.budget, base, phase)
        assert base is not None and outcome.priced is not None
        self._record_terms(job, outcome.priced)
        if isinstance(outcome, Queue):
            status = dict(base, phase=phase, message=outcome.message)
            status["conditions"] = job_conditions(job, ("Admitted", False, "Queued", outcome.message),
                                                  *_ledger_answered(job))
            emit(job, Event("Normal", "Queued", outcome.message))
            return status
        if outcome.unbudgeted:
            log.info(f"admitting {meta['namespace']}/{meta['name']} without a budget (QGOV_ALLOW_UNBUDGETED)")
            # its pod runs as qgov-executor too, which a budget would have provided (a real API server
            # refuses a pod whose ServiceAccount does not exist)
            self.notifier.provide_executor_identity(job, meta["namespace"])
        return _admitted(job, base, phase, outcome.reason, outcome.message, event=outcome.unbudgeted)

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

    def _refuse(self, job: dict[str, Any], reason: str, message: str, budget: str | None,
                base: dict[str, Any] | None = None, phase: str = Phase.REFUSED.value) -> dict[str, Any]:
        emit(job, Event("Warning", reason, message))
        if budget:
            self.notifier.budget_event(job["metadata"]["namespace"], budget, "Warning", "JobRefused",
                                       f"refused QiskitJob {job['metadata']['name']}: {message}")
        return _terminal(job, phase, reason, message, **(base or {}))

    def _start_attempt(self, job: dict[str, Any], attempt: int, status: dict[str, Any] | None = None) -> None:
        """Write the attempt into the job's status, THEN create its pod: a pod that finishes fast is
        never mistaken for a stale attempt. The pod's name is deterministic, so it can be named first."""
        meta = job["metadata"]
        written = {**(status or {}), "phase": Phase.ADMITTED.value, "attempts": attempt, "retryAt": None,
                   "podName": pod_name(meta["name"], attempt)}
        self.kube.patch_job_status(meta["namespace"], meta["name"], written)
        self.create_attempt_pod(dict(job, status={**(job.get("status") or {}), **written}), attempt)

    def create_attempt_pod(self, job: dict[str, Any], attempt: int) -> None:
        """Start the attempt: its executor pod, or nothing when a local session's runner runs it or
        its IBM session is not open (then wait for it, or move on when it has ended)."""
        placed = self.attempt_placement(job)
        if placed.kind == "wait":
            self._session_not_open(job, job["status"]["session"], placed.session)
        elif placed.kind == "pod":
            self.create_pod(job, attempt, placed.needs)
        else:  # a runner's report that came before the attempt was written (or while the operator was down)
            meta = job["metadata"]
            configmap = unless_gone(lambda: self.kube.core.read_namespaced_config_map(
                runner_reports.report_name(meta["name"], attempt), meta["namespace"]))
            if configmap is not None:
                self.runner_report(self.kube.core.api_client.sanitize_for_serialization(configmap))

    def attempt_placement(self, job: dict[str, Any]) -> Placement:
        """Where the job's current attempt runs."""
        session_name = JobStatus.of(job).session
        if not session_name:
            return Placement("pod")
        session = self.kube.get_session(job["metadata"]["namespace"], session_name)
        if local_runner(session):
            return Placement("runner")  # the session's runner pod takes the attempt from the job's status
        remote = executor_session(session) if session is not None else None
        if remote is None:
            return Placement("wait", session=session)
        backend = self.load_backend((job.get("spec") or {}).get("backend", ""))
        # a backend deleted since admission: the executor reads it and ends the attempt with that error
        needs = providers.of(backend).executor_needs(remote) if not isinstance(backend, Problem) else None
        return Placement("pod", needs)

    def create_pod(self, job: dict[str, Any], attempt: int, needs: ExecutorNeeds | None) -> bool:
        """Create the attempt's executor pod and record its UID in the ledger (only that pod is the
        attempt); False when the operator's pod exists already (a replay, or a race). A pod of that
        name the operator did not create is deleted (PodNameTaken) and the creation retried; a
        refusal of the create is said on the job (Stalled) and retried with backoff."""
        meta = job["metadata"]
        body = executor_pod(job, attempt, self.config.executor_image, needs, self.config.executor_image_pull_policy,
                            self.config.executor_pod)
        previous = self.ledger.attempt_pod(meta["uid"], attempt)
        if recorded_uid(previous) is not None:  # a replay (a resume, a second operator): is the recorded pod there?
            name, namespace = body["metadata"]["name"], meta["namespace"]
            existing = unless_gone(lambda: self.kube.core.read_namespaced_pod(name, namespace))
            if existing is not None and existing.metadata.uid == previous:
                return False  # the record stays the pod's UID: its events are never taken for a stranger's
        # claimed before the create, so a pod created by an operator that dies before recording its
        # UID is still known for its own (ownpod.adoptable) and its work is charged; a claim already
        # held is kept, since the pod of the operator that made it may carry it
        claim = previous if previous is not None and previous.startswith(CLAIM_PREFIX) \
            else claim_record(secrets.token_hex(16))
        if not self.ledger.record_pod(meta["uid"], attempt, claim, previous):
            return False  # another operator is creating the attempt's pod, or the attempt was counted
        body["metadata"].setdefault("annotations", {})[CLAIM_ANNOTATION] = claim.removeprefix(CLAIM_PREFIX)
        try:
            uid = self.kube.create_pod(meta["namespace"], body)
        except ApiException as exc:
            if exc.status == 409:
                return self._name_taken(job, attempt, body["metadata"]["name"], previous, claim)
            if exc.status is not None and 400 <= exc.status < 500:
                self._stalled_on_refusal(job, exc)
            raise
        if not self.ledger.record_pod(meta["uid"], attempt, uid, claim):
            # another operator recorded its own pod for the attempt meanwhile (a failover): this one goes
            self.kube.delete_pod_uid(meta["namespace"], body["metadata"]["name"], uid)
            return False
        return True

    def _name_taken(self, job: dict[str, Any], attempt: int, name: str, previous: str | None, claim: str) -> bool:
        """The attempt's pod name is taken: by the operator's own pod (a replay: False; its record,
        `previous` before this create's `claim`, is put back), or by a pod it did not create, which
        is deleted, said on the job, and replaced (NotYet: retried)."""
        namespace, uid = job["metadata"]["namespace"], job["metadata"]["uid"]
        pod = self.kube.core.read_namespaced_pod(name, namespace)
        body = self.kube.core.api_client.sanitize_for_serialization(pod)
        if pod.metadata.uid == recorded_uid(previous) or adoptable(body, previous, _young(body)):
            self.ledger.record_pod(uid, attempt, pod.metadata.uid, claim)
            return False
        recorded = self.ledger.attempt_pod(uid, attempt)
        if pod.metadata.uid == recorded:
            return False
        age = (datetime.now(timezone.utc) - pod.metadata.creation_timestamp).total_seconds()
        if recorded_uid(previous) is None and age < ADOPTION_GRACE_SECONDS and pod.metadata.deletion_timestamp is None:
            # maybe another operator's, created a moment ago and not recorded yet (a failover): wait
            # for its record before calling it a squatter
            raise NotYet(f"pod {namespace}/{name} is not recorded as the attempt's pod (yet)")
        message = (f"a pod named {name} that qgov did not create was in the way of attempt {attempt}; qgov "
                   f"deleted it and creates its own (only pods qgov creates run or report a job's attempts)")
        if pod.metadata.deletion_timestamp is None:
            log.warning(f"job {namespace}/{job['metadata']['name']}: {message}")
            emit(job, Event("Warning", "PodNameTaken", message))
        self.kube.delete_pod_uid(namespace, name, pod.metadata.uid)
        raise NotYet(f"pod {namespace}/{name} was taken by a pod qgov did not create; it was deleted")

    def _stalled_on_refusal(self, job: dict[str, Any], exc: ApiException) -> None:
        """The API server refused the attempt's pod (a missing ServiceAccount, Pod Security admission,
        a quota...): say why on the job, once per reason (Stalled, and a Warning Event with the API
        server's words); the money stays held, and the creation is retried with backoff (run_retrying)
        until the cause is fixed or the job is deleted."""
        message = missing_account(exc)
        reason = "ServiceAccountMissing"
        if message is None:
            reason = _refusal_reason(exc)
            message = (f"the API server refused the executor pod (HTTP {exc.status} {reason}): "
                       f"{_refusal_message(exc)}; qgov keeps the money held and tries again with backoff")
        if stalled_with(job.get("status") or {}, message):
            return
        metrics.pod_stalled(reason)
        meta = job["metadata"]
        self.kube.patch_job_status(meta["namespace"], meta["name"], {
            "message": message, "conditions": job_conditions(job, (STALLED, True, reason, message))})
        emit(job, Event("Warning", reason, message))

    def _session_not_open(self, job: dict[str, Any], session_name: str, session: dict[str, Any] | None) -> None:
        """An ibm job whose session is not open: wait for it to open, or move on when it has ended
        (governance/jobs/placement.py decides)."""
        meta, status = job["metadata"], JobStatus.of(job)
        automatic = session is None or ((session.get("metadata") or {}).get("labels") or {}).get(AUTO_BATCH_LABEL)
        failure = SessionStatus.of(session).message
        decide = partial(session_not_open, session_name, ended_phase(session), failure, bool(automatic),
                         status.session_moves, job["spec"]["backend"])
        step, backend = decide(), None
        if isinstance(step, NeedBackend):
            backend = self.load_backend(step.name)
            step = decide(not isinstance(backend, Problem))
        if isinstance(step, WaitForSession):
            self.kube.patch_job_status(meta["namespace"], meta["name"], {"message": step.message})
        elif isinstance(step, MoveToNewBatch) and isinstance(backend, Backend):
            new = self.directory.auto_batch(meta["namespace"], backend, f"{meta['uid']}/{step.moves}",
                                            self.directory.credentials_secret(job["spec"].get("credentialsSecret")))
            message = f"{step.message}, {new}"
            self.terms(job)  # recorded (an older operator's job), then moved
            self.ledger.move_session(meta["uid"], new)
            emit(job, Event("Normal", "SessionRequeued", message))
            self._mark(job, finalizer=False, session=new)
            self.kube.patch_job_status(meta["namespace"], meta["name"], {"session": new, "sessionMoves": step.moves,
                                                                         "message": message})
        elif isinstance(step, EndUnstarted):
            self._finish_unstarted(job, step.reason, step.message)

    def _finish_unstarted(self, job: dict[str, Any], reason: str, message: str) -> None:
        """Fail a job whose next attempt cannot start; what earlier attempts used is charged."""
        namespace, name = job["metadata"]["namespace"], job["metadata"]["name"]
        status = JobStatus.of(job)
        used = self.ledger.attempt_totals(job["metadata"]["uid"]).used_micro  # the ledger's, not the status'
        charged, _ = self._settle(job, used)
        emit(job, Event("Warning", reason, message))
        self.kube.patch_job_status(namespace, name, _terminal(job, Phase.FAILED.value, reason,
                                                              f"{message}; charged {format_amount(charged)}",
                                                              actualCost=format_amount(charged), usedMicro=str(used)))
        if status.budget:
            self.notifier.refresh_budget_status(namespace, status.budget)

    def start_session_jobs(self, namespace: str, session_name: str) -> None:
        """A session opened: start the attempts of its jobs that were waiting for it."""
        for job in self.directory.session_jobs(namespace, session_name):
            status = JobStatus.of(job)
            if status.phase == Phase.ADMITTED.value and status.attempts >= 1 and not status.retry_at:
                self.create_attempt_pod(job, status.attempts)

    def start_admitted(self, changes: tuple[QueueChange, ...] | list[QueueChange]) -> None:
        """Jobs that the ledger admitted from its queue (funds freed): start them, or refuse them."""
        for change in changes:
            try:
                reservation = self.ledger.reservation(change.key)
            except UnknownReservation:
                continue
            namespace, _, name = reservation.job.partition("/")
            job = self.kube.get_job(namespace, name)
            if job is None or job["metadata"]["uid"] != change.key:
                continue
            if JobStatus.of(job).phase != Phase.QUEUED.value:
                continue
            if change.decision is Decision.REFUSED:
                self.kube.patch_job_status(namespace, name, self._refuse(job, change.reason, change.message, None))
                metrics.queue_decision(job, Phase.REFUSED.value, change.reason)
                continue
            message = "admitted from the queue: funds were freed"
            metrics.queue_decision(job, Phase.ADMITTED.value, "AdmittedFromQueue")
            emit(job, Event("Normal", "Admitted", message))
            self._start_attempt(job, 1, {"message": message, "conditions": job_conditions(
                job, ("Admitted", True, "AdmittedFromQueue", message))})

    def job_event(self, type: str | None, job: dict[str, Any]) -> None:
        """What a job's event asks for, in a worker thread. Raises when it could not be done (a
        ledger or API outage): run through run_retrying, which tries again until it is."""
        meta = job["metadata"]
        if meta.get("deletionTimestamp"):
            if FINALIZER in (meta.get("finalizers") or []):
                self.finalize_job(job)
                self._remove_finalizer(job)
            return
        if type != "MODIFIED":
            self.handle_job(job)

    def _job_event_again(self, type: str | None, ref: JobRef) -> None:
        """A retry of job_event reads the job afresh: the event that failed may be long stale."""
        job = self.kube.get_job(ref.namespace, ref.name)
        if job is not None and job["metadata"]["uid"] == ref.uid:
            self.job_event(type, job)

    def runner_report(self, configmap: dict[str, Any]) -> None:
        """A local session's runner said what an attempt is doing, in the attempt's report ConfigMap
        (executor/session.py; a namespace member can write it too): that it runs, or how it ended.
        Taken only for the job's current attempt when a runner runs it, and only as the signal that
        the attempt ended and whether it succeeded: what it is charged is the trusted source's."""
        parsed = runner_reports.parse(configmap)
        if parsed is None:
            return
        namespace = configmap["metadata"]["namespace"]
        job = self.kube.get_job(namespace, parsed.job)
        if job is None or job["metadata"]["uid"] != parsed.job_uid or job["metadata"].get("deletionTimestamp"):
            return
        status = JobStatus.of(job)
        if status.terminal or parsed.attempt != status.attempts or status.retry_at or \
                self.attempt_placement(job).kind != "runner":
            return
        if parsed.running:
            if status.phase == Phase.ADMITTED.value:
                self.kube.patch_job_status(namespace, parsed.job, {
                    "phase": Phase.RUNNING.value, "podName": parsed.runner, "startTime": status.start_time or now_iso()})
            return
        report = dict(parsed.report)
        if parsed.problem:
            report["error"] = parsed.problem
        self.attempt_finished(job, parsed.attempt, parsed.exit_code == 0 and not parsed.problem, report,
                              parsed.exit_code)

    def handle_job(self, job: dict[str, Any]) -> None:
        """Admit a new job, or pick a job up where it was when the operator stopped."""
        status = JobStatus.of(job)
        if status.terminal:
            return
        if queued_priced(job.get("status") or {}):  # the operator stopped before acting on the ledger's decision?
            change = self.queued_change(job["metadata"]["uid"])
            if change is not None:
                self.start_admitted([change])
            return
        if status.phase in ACTIVE and status.attempts:
            self._mark(job, finalizer=False, session=status.session)  # resume: labelled by an older operator?
            if status.retry_at:  # resume: a retry was scheduled before the operator stopped
                self.schedule_retry(job["metadata"]["namespace"], job["metadata"]["name"], job["metadata"]["uid"],
                                    status.retry_at)
            else:
                self.create_attempt_pod(job, status.attempts)  # resume: the attempt's pod exists or is made
            return
        new = self.admit(job)
        metrics.admission(job, new)
        namespace, name = job["metadata"]["namespace"], job["metadata"]["name"]
        if new.get("phase") in (Phase.ADMITTED.value, Phase.QUEUED.value):
            self._mark(job, finalizer=bool(new.get("budget")), session=new.get("session"))
        if new.get("phase") == Phase.ADMITTED.value:
            self._start_attempt(job, 1, new)
        else:
            self.kube.patch_job_status(namespace, name, new)
        if new.get("budget"):
            self.notifier.refresh_budget_status(namespace, new["budget"])

    def queued_change(self, uid: str, state: str | None = None) -> QueueChange | None:
        """A job still Queued in the cluster whose reservation the ledger has since admitted or refused
        (the operator stopped between the ledger's decision and acting on it, or an event was lost):
        the change to act on now (start_admitted), or None (governance/jobs/status.py decides).
        `state`: the reservation's state when the caller has read it already (the pod sweep's open
        ones); the ledger is read when it is not known to be held."""
        message = ""
        if state != "held":
            try:
                reservation = self.ledger.reservation(uid)
            except UnknownReservation:
                return None
            state, message = reservation.state, reservation.message
        return queued_change(uid, state, message)

    def _mark(self, job: dict[str, Any], *, finalizer: bool, session: str | None) -> None:
        """What the operator puts on the job object itself, in one JSON patch: qgov's finalizer when
        money is held for it (deleting it must release or settle first), and the label of the
        QiskitSession it runs in (the session's timer and runner select its jobs by it, server-side,
        instead of reading every job of the namespace)."""
        meta = job["metadata"]
        ops: list[dict[str, Any]] = []
        current = meta.get("finalizers") or []
        if finalizer and FINALIZER not in current:
            ops.append({"op": "add", "path": "/metadata/finalizers/-", "value": FINALIZER} if current
                       else {"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]})
        labels = meta.get("labels") or {}
        if session and labels.get(SESSION_LABEL) != label_value(session):
            ops.append({"op": "add", "path": "/metadata/labels/" + SESSION_LABEL.replace("~", "~0").replace("/", "~1"),
                        "value": label_value(session)} if labels
                       else {"op": "add", "path": "/metadata/labels", "value": {SESSION_LABEL: label_value(session)}})
        if ops:
            self.kube.json_patch(PLURAL, meta["namespace"], meta["name"], ops)

    def _remove_finalizer(self, job: dict[str, Any]) -> None:
        """Remove our finalizer only: a `test` guards against dropping a finalizer added meanwhile."""
        meta = job["metadata"]
        for _ in range(5):
            current = meta.get("finalizers") or []
            if FINALIZER not in current:
                return
            try:
                self.kube.custom.patch_namespaced_custom_object(
                    GROUP, VERSION, meta["namespace"], PLURAL, meta["name"],
                    [{"op": "test", "path": "/metadata/finalizers", "value": current},
                     {"op": "replace", "path": "/metadata/finalizers", "value": [f for f in current if f != FINALIZER]}],
                    _content_type="application/json-patch+json")
                return
            except ApiException as exc:
                if exc.status == 404:
                    return
                if exc.status not in (409, 422):
                    raise
            fresh = self.kube.get_job(meta["namespace"], meta["name"])
            if fresh is None:
                return
            meta = fresh["metadata"]

    def attempt_pod_uid(self, job_uid: str, attempt: int, pod: dict[str, Any]) -> str | None:
        """The UID of the pod the operator created for the attempt, as the ledger records it; `pod`,
        found in the attempt's name, is adopted when an operator created it and died before
        recording it (ownpod.adoptable), so the work it did is charged."""
        recorded = self.ledger.attempt_pod(job_uid, attempt)
        if adoptable(pod, recorded, _young(pod)) and \
                self.ledger.record_pod(job_uid, attempt, pod["metadata"]["uid"], recorded):
            log.info(f"pod {pod['metadata']['namespace']}/{pod['metadata']['name']} is attempt {attempt}'s: "
                     "the operator that created it stopped before recording it")
            return str(pod["metadata"]["uid"])
        return recorded_uid(recorded)

    def result_written(self, job: dict[str, Any], attempt: int) -> bool:
        """Whether attempt `attempt` wrote the job's result (governance/jobs/results.py): a ConfigMap
        only that attempt's executor pod can create, so the attempt ran to its end whatever its pod
        says now (deleted, or killed through `kubectl exec`, after it wrote the result)."""
        meta = job["metadata"]
        for name in result_names(meta["name"], attempt):
            configmap = unless_gone(lambda: self.kube.core.read_namespaced_config_map(name, meta["namespace"]))
            if configmap is not None and written_by(
                    self.kube.core.api_client.sanitize_for_serialization(configmap)["metadata"], meta["uid"], attempt):
                return True
        return False

    def trusted_charge(self, job: dict[str, Any], attempt: int, succeeded: bool,
                       report: dict[str, Any]) -> tuple[int, str, str, bool]:
        """What an ended attempt is charged, from sources no namespace member can write: (micro-units
        in the budget's unit, QPU-seconds, where the figure came from, whether it failed after it
        wrote its result). The provider says which
        source counts (Provider.charged_usage): the model of the admitted circuits the ledger
        recorded, or IBM's meter for the attempt's Runtime job, read here and checked to be in the
        Runtime session qgov opened for the job. What the report says is never charged. A failed
        attempt that wrote its result counts as one that ran: its work was done."""
        produced = not succeeded and self.result_written(job, attempt)
        succeeded = succeeded or produced
        terms = self.terms(job)
        backend = self.load_backend(terms.backend)
        if isinstance(backend, Problem):  # deleted since admission: its prices are unknown
            return 0, "0", f"nothing: backend {terms.backend} is gone, its prices are unknown", produced
        provider = providers.of(backend)
        modelled = Usage(qpu_seconds=Decimal(terms.model_qpu_seconds), cpu_seconds=Decimal(terms.model_cpu_seconds),
                         shots=terms.model_shots, tasks=terms.model_tasks)
        metered, note = None, ""
        runtime_job = report.get("runtimeJob")
        if provider.metered and runtime_job and terms.session and self.metering is not None and \
                not terms.paid_by_session:
            metered, note = self.metering(job["metadata"]["namespace"], terms.session, str(runtime_job))
        usage = provider.charged_usage(modelled, metered, succeeded)
        if usage is None:
            return 0, "0", "nothing: the attempt failed and no metered work of it was found", produced
        if metered is not None and usage is metered:
            source = f"IBM's meter for Runtime job {runtime_job}"
        else:
            source = "the model of the admitted circuits" + (f" ({note})" if note else "")
        if produced:
            source += " (the attempt failed after it wrote its result)"
        charge = attempt_charge(usage, backend.prices, terms.unit, terms.paid_by_session)
        return charge, format_quantity(usage.qpu_seconds), source, produced

    def executor_pod_event(self, type: str, pod: dict[str, Any]) -> None:
        labels = pod["metadata"].get("labels") or {}
        phase = (pod.get("status") or {}).get("phase")
        evicted = type == "DELETED" and phase not in POD_ENDED
        job = self.kube.get_job(pod["metadata"]["namespace"],
                                owner_name(pod, "QiskitJob") or labels.get(JOB_LABEL, ""))
        if job is None or job["metadata"]["uid"] != labels.get(JOB_UID_LABEL) or job["metadata"].get(
                "deletionTimestamp"):
            return
        attempt = int(labels.get("qgov.dev/attempt", "0") or 0) if str(labels.get("qgov.dev/attempt", "0")).isdigit() else 0
        foreign = attempt and foreign_pod(pod, job["metadata"]["uid"], pod_name(job["metadata"]["name"], attempt),
                                          self.config.executor_image,
                                          self.attempt_pod_uid(job["metadata"]["uid"], attempt, pod))
        if not attempt or foreign:
            if foreign and foreign.endswith(NOT_RECORDED) and _young(pod) and not JobStatus.of(job).terminal:
                raise NotYet(foreign)  # the operator that created it may be recording it this moment
            log.info(f"ignoring pod {pod['metadata']['namespace']}/{pod['metadata']['name']}: "
                     f"{foreign or 'no attempt label'}")
            return
        if evicted:  # the pod went away before it finished: a transient failure, like a lost node
            phase = "Failed"
            pod.setdefault("status", {})["containerStatuses"] = [{"state": {"terminated": {
                "exitCode": 137, "message": json.dumps({"error": "the executor pod was deleted before it finished"})}}}]
        status = JobStatus.of(job)
        if status.terminal or attempt != status.attempts:
            return
        namespace, name = job["metadata"]["namespace"], job["metadata"]["name"]
        if phase == "Running":
            if status.phase == Phase.ADMITTED.value:
                running = {"phase": Phase.RUNNING.value, "podName": pod["metadata"]["name"],
                           "startTime": status.start_time or now_iso()}
                if status.condition_is(STALLED, "True"):
                    message = f"executor pod {pod['metadata']['name']} is running"
                    running.update(message=message,
                                   conditions=job_conditions(job, (STALLED, False, "PodRunning", message)))
                self.kube.patch_job_status(namespace, name, running)
            return
        report, exit_code = _usage_of(pod)
        if phase == "Failed" and pod["metadata"].get("deletionTimestamp") and not report.get("error"):
            # a kubelet stops a deleted pod and reports it Failed (exit 143) before it is removed: the
            # same lost attempt as a pod that vanished, whichever the operator hears of first
            report["error"] = "the executor pod was deleted before it finished"
        self.attempt_finished(job, attempt, phase == "Succeeded", report, exit_code)

    def attempt_finished(self, job: dict[str, Any], attempt: int, succeeded: bool, report: dict[str, Any],
                         exit_code: int | None) -> None:
        """An attempt ended (its pod, or a session runner, said how): count its trusted charge in the
        ledger (once, by the job's UID and the attempt), then retry, or settle (governance/jobs/
        attempts.py decides). Status is written from the ledger's totals, never read back."""
        status = JobStatus.of(job)
        namespace, name, uid = job["metadata"]["namespace"], job["metadata"]["name"], job["metadata"]["uid"]
        if not isinstance(report, dict):
            report = {"error": "the attempt's report is not a JSON object"}
        _, malformed = reported_usage(report)  # shown at most: a namespace member can write it
        totals = self.ledger.attempt_totals(uid)
        source, produced = "", False
        if not totals.counted(attempt):
            charge, qpu, source, produced = self.trusted_charge(job, attempt, succeeded, report)
            totals = self.ledger.count_attempt(uid, attempt, charge, qpu, source)
        else:
            totals = AttemptTotals(uid, totals.counted_attempt, totals.attempts, totals.used_micro,
                                   totals.qpu_seconds, replayed=True)
        backoff = int((job.get("spec") or {}).get("backoffLimit", DEFAULT_BACKOFF_LIMIT))
        after = after_attempt(totals, bool(status.retry_at), attempt, succeeded, report, exit_code, backoff,
                              self.config.retry_base_seconds, datetime.now(timezone.utc))
        if isinstance(after, AlreadyCounted):
            return  # this attempt was already counted and a retry is scheduled
        note = ""
        if malformed:
            note = f"; the executor's report was not used: {malformed} (charged from {source or 'the trusted source'})"
        if produced:
            note += f"; attempt {attempt} is charged as run: it failed after it wrote its result"
        if isinstance(after, Retry):
            retry_at = iso(after.at)
            emit(job, Event(after.event.type, after.event.reason, after.message + note))
            self.kube.patch_job_status(namespace, name, {
                "phase": Phase.ADMITTED.value, "message": after.message + note, "usedMicro": str(after.used_micro),
                "qpuSeconds": format_quantity(after.qpu_seconds), "countedAttempt": totals.counted_attempt,
                "retryAt": retry_at})
            self.schedule_retry(namespace, name, uid, retry_at)
            return
        terms = self.terms(job)
        settled, late = self._settle(job, after.used_micro)
        cost = f"{format_amount(settled)} {terms.unit}" + (f" ({late})" if late else "")
        message = after.message(cost) + note
        spent = {"actualCost": format_amount(settled), "usedMicro": str(after.used_micro),
                 "qpuSeconds": format_quantity(after.qpu_seconds), "countedAttempt": totals.counted_attempt,
                 "currency": terms.unit, "budget": terms.budget.partition("/")[2] or None,
                 "paidBySession": terms.paid_by_session or None}
        emit(job, after.event(message))
        if after.phase is Phase.SUCCEEDED:
            new = _terminal(job, Phase.SUCCEEDED.value, after.reason, message, **spent,
                            resultConfigMap=report.get("resultConfigMap") if isinstance(
                                report.get("resultConfigMap"), str) else None,
                            **({"runtimeJob": str(report["runtimeJob"])} if report.get("runtimeJob") else {}))
        else:
            new = _terminal(job, Phase.FAILED.value, after.reason, message, **spent)
        self.kube.patch_job_status(namespace, name, new)
        if terms.budget:
            self.notifier.refresh_budget_status(namespace, terms.budget.partition("/")[2])

    def _settle(self, job: dict[str, Any], used: int) -> tuple[int, str]:
        """Settle the job's reservation (keyed by its UID) with what all its counted attempts were
        charged: (what was charged, a note when it was a late charge). The work ran, so it is charged
        even when its reservation is no longer held (`ran=True`). Whether a budget pays is the
        ledger's (the job's terms and reservation), not the status'. A ledger that cannot be reached
        raises; the caller is retried (retrying.py)."""
        terms = self.terms(job)
        if not terms.budget:
            return used, ""
        try:
            outcome = self.ledger.settle(job["metadata"]["uid"], used, ran=True)
        except UnknownReservation:
            message = (f"the ledger has no reservation for this job, so its {format_amount(used)} "
                       f"{terms.unit} could not be charged (see `qgov ledger audit`)")
            emit(job, Event("Warning", "NotInLedger", message))
            return 0, message
        metrics.job_settled(job, outcome)
        self.start_admitted(outcome.queue_changes)
        if not outcome.late:
            return outcome.actual_micro, ""
        note = "a late charge: its reservation had been released before it was settled"
        if not outcome.replayed:
            self._late_charge_events(job, outcome)
        return outcome.actual_micro, note

    def _late_charge_events(self, job: dict[str, Any], outcome: SettleOutcome) -> None:
        """Say so on the job and its budget: a late charge means money moved outside a hold."""
        meta, terms = job["metadata"], self.terms(job)
        message = (f"charged {format_amount(outcome.actual_micro, terms.unit)} after its reservation had been "
                   "released (a late charge, recorded in the ledger as an overrun)")
        emit(job, Event("Warning", "LateCharge", message))
        self.notifier.budget_event(meta["namespace"], terms.budget.partition("/")[2], "Warning", "LateCharge",
                                   f"QiskitJob {meta['name']}: {message}")

    def schedule_retry(self, namespace: str, name: str, uid: str, retry_at: str) -> None:
        """Start the next attempt when its backoff is over. An in-process timer, not a kopf timer: kopf
        would run timer machinery for every job, and only retried jobs need one. The due time lives in
        the job's status, so a restarted operator re-schedules it (kopf's initial listing)."""
        due = parse_iso(retry_at)
        delay = max(0.0, (due - datetime.now(timezone.utc)).total_seconds())
        later(delay, self._start_retry, namespace, name, uid)

    def _start_retry(self, namespace: str, name: str, uid: str) -> None:
        job = self.kube.get_job(namespace, name)
        status = JobStatus.of(job or {})
        if job is None or job["metadata"]["uid"] != uid or status.terminal or not status.retry_at:
            return  # gone, finished, or another timer started it already
        self._start_attempt(job, (status.attempts or 1) + 1)  # a duplicate timer creates nothing twice

    def finalize_job(self, job: dict[str, Any]) -> None:
        """Release an unused reservation, or settle what ran; stop the executor."""
        namespace, uid = job["metadata"]["namespace"], job["metadata"]["uid"]
        status = JobStatus.of(job)
        selector = f"{JOB_UID_LABEL}={uid}"
        totals = self.ledger.attempt_totals(uid)
        for pod in self.kube.core.list_namespaced_pod(namespace, label_selector=selector).items:
            # attempts that finished but were never counted (say, while the operator was down) still
            # cost: the operator's own pods only, charged from the trusted source
            body = self.kube.core.api_client.sanitize_for_serialization(pod)
            label = (pod.metadata.labels or {}).get("qgov.dev/attempt", "0")
            attempt = int(label) if label.isdigit() else 0
            if not attempt or totals.counted(attempt) or not pod.status or pod.status.phase not in POD_ENDED:
                continue
            if foreign_pod(body, uid, pod_name(job["metadata"]["name"], attempt), self.config.executor_image,
                           self.attempt_pod_uid(uid, attempt, body)):
                if _young(body) and carries_claim(body, self.ledger.attempt_pod(uid, attempt)):
                    # created a moment ago under the attempt's claim: its creator may be recording it
                    raise NotYet(f"pod {namespace}/{pod.metadata.name} is not recorded as attempt {attempt}'s (yet)")
                continue
            report = _usage_of(body)[0]
            charge, qpu, source, _ = self.trusted_charge(job, attempt, pod.status.phase == "Succeeded", report)
            totals = self.ledger.count_attempt(uid, attempt, charge, qpu, source)
        used = totals.used_micro
        self.kube.core.delete_collection_namespaced_pod(namespace, label_selector=selector)
        try:
            reservation = self.ledger.reservation(uid)
        except UnknownReservation:
            return
        if used > 0 and reservation.state != "settled":  # it ran: charged, late if its hold was gone
            outcome = self.ledger.settle(uid, used, ran=True)
            metrics.job_settled(job, outcome)
            if outcome.late and not outcome.replayed:
                self._late_charge_events(job, outcome)
            self.start_admitted(outcome.queue_changes)
        elif reservation.state in ("held", "queued"):
            self.start_admitted(self.ledger.release(uid).queue_changes)
        if status.budget:
            self.notifier.refresh_budget_status(namespace, status.budget)

    def reconcile_ledger(self, jobs: list[dict[str, Any]] | None = None,
                         sessions: list[dict[str, Any]] | None = None,
                         open_keys: list[str] | None = None) -> list[str]:
        """No reservation stays held or queued for a job (or dedicated session) that is gone; returns
        the keys released. Run on start and by the pod sweep.

        Never releases a live one. Another operator (a rolling update, a failover) may be admitting
        work meanwhile, so absence from a list proves nothing unless the reservation was read BEFORE
        the list: the object exists before its reservation does, and a UID never comes back, so a
        reservation read first whose object is missing from a later list was deleted. Even then the
        object is read once more by name before the release. Pass `open_keys` read before `jobs` and
        `sessions` were listed, or nothing to have all three read here in that order."""
        if open_keys is None:
            open_keys = self.ledger.open_reservations()
        if not open_keys:
            return []
        if jobs is None:
            jobs = self.kube.custom.list_cluster_custom_object(GROUP, VERSION, PLURAL).get("items", [])
        if sessions is None:
            sessions = self.kube.custom.list_cluster_custom_object(GROUP, VERSION, "qiskitsessions").get("items", [])
        alive = {o["metadata"]["uid"] for o in jobs + sessions}
        released = []
        for key in open_keys:
            if key in alive:
                continue
            try:
                reservation = self.ledger.reservation(key)
                if reservation.state not in ("held", "queued") or self._owner_exists(reservation.job, key):
                    continue
                self.start_admitted(self.ledger.release(key).queue_changes)
            except (UnknownReservation, UnknownBudget):
                continue
            released.append(key)
            log.info(f"released the reservation of {reservation.job or key}: its object (uid {key}) no longer exists")
        return released

    def _owner_exists(self, owner: str, uid: str) -> bool:
        """Whether the QiskitJob ("namespace/name") or QiskitSession ("namespace/session/name") that a
        reservation names still exists with that UID, read now from the API server."""
        namespace, _, rest = owner.partition("/")
        plural, name = ("qiskitsessions", rest.partition("/")[2]) if rest.startswith("session/") else (PLURAL, rest)
        if not namespace or not name:
            return False
        obj = self.kube.get_object(plural, namespace, name)
        return obj is not None and obj["metadata"]["uid"] == uid


@dataclass(frozen=True)
class Placement:
    kind: Literal["pod", "runner", "wait"]  # its own executor pod; a local session's runner; a session not open
    needs: ExecutorNeeds | None = None  # what the provider adds to the pod (a Runtime session's token)
    session: dict[str, Any] | None = None  # for "wait": the session (None when it is gone)


def _job_has_work(type: str | None, job: Any) -> bool:
    meta, status = job["metadata"], job.get("status") or {}
    if type == "DELETED":
        return False
    if meta.get("deletionTimestamp"):
        return FINALIZER in (meta.get("finalizers") or [])
    if type == "MODIFIED":  # a runner's report comes in its ConfigMap (runner_report), not the status
        return False
    return status.get("phase") not in TERMINAL


@dataclass(frozen=True)
class JobRef:
    namespace: str
    name: str
    uid: str

    @classmethod
    def of(cls, job: dict[str, Any]) -> JobRef:
        meta = job["metadata"]
        return cls(meta["namespace"], meta["name"], meta["uid"])


LEDGER_UNAVAILABLE = "LedgerUnavailable"
# a pod in the way of an attempt's create that the ledger does not know is left alone this long:
# another operator (a failover, a rolling update) records the pod it created within milliseconds
ADOPTION_GRACE_SECONDS = 5.0


class JobWatcher(Watcher):
    """While a job's work waits for the ledger, the job says so: a LedgerUnavailable condition and
    a Warning Event (once per outage), cleared when the work goes through. Both writes are
    conditional on the job's resourceVersion: built from a read that another write (a settlement
    by another thread or operator) has overtaken, they would undo it."""

    def __init__(self, ref: JobRef, kube: Kube, notifier: BudgetNotifier) -> None:
        self.ref, self.kube, self.notifier = ref, kube, notifier

    def failed(self, exc: BaseException, delay: float) -> None:
        if not isinstance(exc, DatabaseUnavailable):
            return
        metrics.ledger_unavailable()
        message = f"waiting for the budget ledger, which cannot be reached ({exc}); qgov keeps trying"

        def update(job: dict[str, Any]) -> dict[str, Any] | None:
            if _condition_is(job, LEDGER_UNAVAILABLE, "True"):
                return None
            new: dict[str, Any] = {"conditions": job_conditions(job, (LEDGER_UNAVAILABLE, True, "DatabaseUnavailable",
                                                                  message))}
            if not JobStatus.of(job).terminal:
                new["message"] = message
            return new

        self.notifier.refresh_namespace_budgets(self.ref.namespace)  # they say so too
        job = self._write(update)
        if job is not None:
            emit(job, Event("Warning", LEDGER_UNAVAILABLE, message))

    def recovered(self) -> None:
        message = "the budget ledger is reachable again"
        job = self._write(lambda job: {"conditions": job_conditions(job, (
            LEDGER_UNAVAILABLE, False, "LedgerAvailable", message))} if _condition_is(
            job, LEDGER_UNAVAILABLE, "True") else None)
        if job is not None:
            emit(job, Event("Normal", "LedgerAvailable", message))

    def _write(self, update: Any) -> dict[str, Any] | None:
        """Patch the status `update(job)` gives (None: nothing to write), on the job as read, if
        nobody wrote it meanwhile; read again and retry on a conflict. Returns the job written."""
        for _ in range(5):
            job = self.kube.get_job(self.ref.namespace, self.ref.name)
            if job is None or job["metadata"]["uid"] != self.ref.uid:
                return None
            status = update(job)
            if status is None:
                return None
            try:
                discard(self.kube.custom.patch_namespaced_custom_object_status(
                    GROUP, VERSION, self.ref.namespace, PLURAL, self.ref.name,
                    {"metadata": {"resourceVersion": job["metadata"]["resourceVersion"]}, "status": status},
                    _preload_content=False))
                return job
            except ApiException as exc:
                if exc.status != 409:
                    raise
        return None


def _condition_is(job: dict[str, Any], type_: str, value: str) -> bool:
    return JobStatus.of(job).condition_is(type_, value)


def _young(pod: dict[str, Any]) -> bool:
    """Created less than ADOPTION_GRACE_SECONDS ago."""
    created = (pod.get("metadata") or {}).get("creationTimestamp")
    if not created:
        return False
    # a watch event's string ends in Z, a serialized client object's in +00:00
    when = datetime.fromisoformat(created) if isinstance(created, str) else created
    return (datetime.now(timezone.utc) - when).total_seconds() < ADOPTION_GRACE_SECONDS


def _refusal_reason(exc: ApiException) -> str:
    """The API server's CamelCase reason for a refusal (its Status `reason`, else the HTTP reason)."""
    try:
        reason = str(json.loads(exc.body or "{}").get("reason") or "")
    except (ValueError, AttributeError):
        reason = ""
    return reason or "".join(w.capitalize() for w in str(exc.reason or "Refused").split()) or "Refused"


def _refusal_message(exc: ApiException) -> str:
    """The API server's message for a refusal, on one line, bounded."""
    try:
        message = str(json.loads(exc.body or "{}").get("message") or "")
    except (ValueError, AttributeError):
        message = ""
    return " ".join((message or str(exc.reason or "")).split())[:500]


def _usage_of(pod: dict[str, Any]) -> tuple[dict[str, Any], int | None]:
    """The executor's report (termination message JSON) and the container's exit code."""
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    term = ((statuses[0].get("state") or {}).get("terminated") or {}) if statuses else {}
    try:
        report = json.loads(term.get("message") or "{}")
    except ValueError:
        report = {"error": (term.get("message") or "")[-500:]}
    return (report if isinstance(report, dict) else {}), term.get("exitCode")


# ---------------------------------------------------------------------- kopf handlers


@kopf.on.event(GROUP, VERSION, "qiskitbackends")
def on_backend_event(type: str | None, body: kopf.Body, name: str, memo: kopf.Memo, **_: Any) -> None:
    if (jobs := running(memo)) is not None:
        jobs.backend_event(type, name, dict(body))


@kopf.on.event(GROUP, VERSION, PLURAL)
async def on_job_event(type: str | None, body: Any, memo: Any, **_: Any) -> None:
    """Jobs are driven from raw events, not kopf's create/resume/delete machinery: admission is
    idempotent by itself (ledger keys, deterministic pod names) and needs none of kopf's
    per-object state (diff-bases, progress annotations, its finalizer).

    type None is kopf's initial listing (the operator starting: resume); ADDED is a new job;
    MODIFIED matters when the job is being deleted (our finalizer holds it); a session runner
    reports an attempt in its own ConfigMap (on_runner_report). Most events are the echoes of the operator's own
    writes (its finalizer, its status): they are told apart here, on the event loop, and only
    events with work to do go to the thread pool (ledger, API calls and parsing block).
    """
    if (jobs := running(memo)) is not None:
        await jobs.job_event_arrived(type, body)


def listed_job(job: dict[str, Any]) -> dict[str, Any]:
    """What on_job_event needs of a job from the initial listing: the whole job when it has work,
    else (a finished job, most of a long-lived cluster's) its names, phase, budget and expiry. The
    strings every job repeats are shared, not one copy per job (they outlive the listing)."""
    if _job_has_work(None, job):
        return job
    meta, status, spec = job["metadata"], job.get("status") or {}, job.get("spec") or {}
    slim_meta = {k: meta[k] for k in ("name", "uid", "resourceVersion", "deletionTimestamp", "finalizers") if k in meta}
    slim_meta["namespace"] = sys.intern(meta["namespace"])
    slim_status = {k: sys.intern(status[k]) for k in ("phase", "budget") if isinstance(status.get(k), str)}
    if "completionTime" in status:
        slim_status["completionTime"] = status["completionTime"]
    slim = {"metadata": slim_meta, "status": slim_status}
    if "ttlSecondsAfterFinished" in spec:
        slim["spec"] = {"ttlSecondsAfterFinished": spec["ttlSecondsAfterFinished"]}
    return slim


# past kopf's per-event processing; at start-up, finished jobs are held slimmed (rawevents.py)
rawevents.route(GROUP, PLURAL, cast(rawevents.RawHandler, on_job_event), listed=listed_job)


@kopf.on.event("", "v1", "pods", labels={JOB_UID_LABEL: kopf.PRESENT})
async def on_executor_pod(body: kopf.Body, type: str, memo: kopf.Memo, **_: Any) -> None:
    """An executor pod started, ended, or went away. (The API server sends qgov's pods only once they
    have left Pending, see startup.start.) Events without work are dropped here, on the event
    loop; the rest is handled in the thread pool."""
    if (jobs := running(memo)) is not None:
        await jobs.executor_pod_arrived(type, body)


@kopf.on.event("", "v1", "configmaps", labels={runner_reports.REPORT_LABEL: kopf.PRESENT})
async def on_runner_report(body: kopf.Body, type: str, memo: kopf.Memo, **_: Any) -> None:
    """A local session's runner reported an attempt (its report ConfigMap, runnerreport.py). The
    API server sends only those ConfigMaps (startup.start's label selector)."""
    if (jobs := running(memo)) is None or type == "DELETED":
        return
    configmap = dict(body)
    meta = configmap["metadata"]
    ref = JobRef(meta["namespace"], owner_name(configmap, "QiskitJob") or "", (meta.get("labels") or {}).get(
        JOB_UID_LABEL, ""))
    await jobs.in_thread(run_retrying, f"runner report {meta['namespace']}/{meta['name']}",
                         partial(jobs.runner_report, configmap), None, jobs.watcher(ref))


def running(memo: Any) -> Jobs | None:
    """The job handlers' collaborators, or None before start-up and after clean-up (events and
    timers can still fire then)."""
    jobs = getattr(memo, "jobs", None)
    return jobs if jobs is not None and jobs.kopf_context.running else None
