"""QiskitJob handlers: admit (validate, price, reserve), run (executor pods), settle, retry, delete.

Every step is idempotent: the ledger replays by the job's UID, executor pods have
deterministic names, and a job in a terminal phase is never touched again. An operator
killed at any moment and restarted picks up where it was (kopf's initial listing, pod events).

This module holds the parts together (Jobs), follows the jobs' watch and keeps the queue; each
concern has its module: jobadmission.py, jobattempts.py, jobpods.py, jobsettlement.py, jobstatus.py,
jobmarks.py; the kopf handlers are in jobwatch.py."""

from __future__ import annotations

import asyncio
import contextvars
from concurrent.futures import Executor
from functools import partial
from typing import Any

from .. import metrics
from ..api import FINALIZER, JOB_LABEL, JOB_UID_LABEL
from ..budget.batcher import ReservationBatcher
from ..budget.errors import UnknownReservation
from ..budget.ledger import Ledger
from ..budget.types import Decision, QueueChange, ReservationState
from ..jobs import ACTIVE, TERMINAL, JobStatus, Phase, queued_change, queued_priced, webhookprobe
from ..jobs.events import Event
from ..snapshot import ClusterSnapshot
from .alarms import Alarms
from .budgetnotify import BudgetNotifier
from ..timestamps import parse_iso
from .config import OperatorConfig
from .context import KopfContext
from .expiry import expires_at
from .jobadmission import Admission
from .jobattempts import Attempts
from .jobmarks import mark, remove_finalizer
from .jobphases import JobPhases
from .jobpods import AttemptPods
from .jobsettlement import Settlement
from ..jobs.status import admitted_from_queue
from .jobstatus import JobRef, JobWatcher
from .kube import Kube, emit
from .pods import POD_ENDED, owner_name
from .retrying import run_retrying
from .sessionview import SessionDirectory


class Jobs:
    """What the QiskitJob handlers use, given at start-up (startup.py) rather than looked up, and
    what they do with it: admit, run, settle, retry and finalize jobs, each by its part (`admission`,
    `pods`, `settlement`, `attempts`); the watch's events and the queue are handled here. The kopf
    handlers (jobwatch.py) find it in kopf's memo (`memo.jobs`); the budget and session handlers
    and the pod sweep are given it."""

    def __init__(self, config: OperatorConfig, ledger: Ledger, batcher: ReservationBatcher, kube: Kube,
                 notifier: BudgetNotifier, directory: SessionDirectory, kopf_context: KopfContext,
                 job_phases: JobPhases, snapshot: ClusterSnapshot, expiry: Alarms,
                 executor: Executor | None) -> None:
        """`batcher`: the ledger's reservations, batched (budget/batcher.py); `kube`: the API
        (kube.py); `notifier`: what jobs tell budgets (budgetnotify.py); `directory`: the sessions
        jobs run in (sessionview.py); `kopf_context`: whether the operator runs, and kopf's context
        for kopf.event; `job_phases`: the counts per budget and phase a budget's status shows (kept
        from the watch here); `snapshot`: backends, budgets and sessions as the watches see them
        (governance/snapshot.py, shared with the budget and session handlers and the webhook);
        `expiry`: finished jobs' deletion times (expiry.py); `executor`: kopf's thread pool, for the
        work the async handlers hand off."""
        self.config, self.ledger, self.batcher, self.kube = config, ledger, batcher, kube
        self.notifier, self.directory, self.kopf_context = notifier, directory, kopf_context
        self.job_phases, self.snapshot, self.expiry, self.executor = job_phases, snapshot, expiry, executor
        self.active_jobs: dict[str, dict[str, Any]] = {}  # uid -> latest body of unfinished jobs (the pod sweep's)
        # one part per concern, each given what it uses; the queue (start_admitted, here) is handed in
        # where freed funds start queued jobs
        self.admission = Admission(config, ledger, batcher, kube, notifier, directory, snapshot)
        self.pods = AttemptPods(config, ledger, kube)
        self.settlement = Settlement(config, ledger, kube, notifier, self.admission, self.pods, self.start_admitted)
        self.attempts = Attempts(config, ledger, kube, notifier, directory, self.admission, self.pods,
                                 self.settlement)

    def watcher(self, ref: JobRef) -> JobWatcher:
        """What a job's retried work reports to (retrying.py)."""
        return JobWatcher(ref, self.kube, self.notifier)

    async def in_thread(self, fn: Any, *args: Any) -> Any:
        """fn(*args) in kopf's thread pool, in a copy of this context (kopf.event needs kopf's context
        variables), as kopf runs a sync handler."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, contextvars.copy_context().run, fn, *args)

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
        if job_has_work(type, body):
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
                                 partial(self.attempts.executor_pod_event, type, pod), None, self.watcher(ref))

    def start_session_jobs(self, namespace: str, session_name: str) -> None:
        """A session opened: start the attempts of its jobs that were waiting for it."""
        for job in self.directory.session_jobs(namespace, session_name):
            status = JobStatus.of(job)
            if status.phase == Phase.ADMITTED.value and status.attempts >= 1 and not status.retry_at:
                self.attempts.create_attempt_pod(job, status.attempts)

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
                self.kube.patch_job_status(namespace, name, self.admission.refuse(job, change.reason, change.message, None))
                metrics.queue_decision(job, Phase.REFUSED.value, change.reason)
                continue
            message = "admitted from the queue: funds were freed"
            metrics.queue_decision(job, Phase.ADMITTED.value, "AdmittedFromQueue")
            emit(job, Event("Normal", "Admitted", message))
            self.attempts.start_attempt(job, 1, admitted_from_queue(job, message))

    def job_event(self, type: str | None, job: dict[str, Any]) -> None:
        """What a job's event asks for, in a worker thread. Raises when it could not be done (a
        ledger or API outage): run through run_retrying, which tries again until it is."""
        meta = job["metadata"]
        if meta.get("deletionTimestamp"):
            if FINALIZER in (meta.get("finalizers") or []):
                self.settlement.finalize_job(job)
                remove_finalizer(self.kube, job)
            return
        if type != "MODIFIED":
            self.handle_job(job)

    def _job_event_again(self, type: str | None, ref: JobRef) -> None:
        """A retry of job_event reads the job afresh: the event that failed may be long stale."""
        job = self.kube.get_job(ref.namespace, ref.name)
        if job is not None and job["metadata"]["uid"] == ref.uid:
            self.job_event(type, job)

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
            mark(self.kube, job, finalizer=False, session=status.session)  # resume: labelled by an older operator?
            if status.retry_at:  # resume: a retry was scheduled before the operator stopped
                self.attempts.schedule_retry(job["metadata"]["namespace"], job["metadata"]["name"], job["metadata"]["uid"],
                                    status.retry_at)
            else:
                self.attempts.create_attempt_pod(job, status.attempts)  # resume: the attempt's pod exists or is made
            return
        new = self.admission.admit(job)
        metrics.admission(job, new)
        namespace, name = job["metadata"]["namespace"], job["metadata"]["name"]
        if new.get("phase") in (Phase.ADMITTED.value, Phase.QUEUED.value):
            mark(self.kube, job, finalizer=bool(new.get("budget")), session=new.get("session"))
        if new.get("phase") == Phase.ADMITTED.value:
            self.attempts.start_attempt(job, 1, new)
        else:
            self.kube.patch_job_status(namespace, name, new)
        if new.get("budget"):
            self.notifier.refresh_budget_status(namespace, new["budget"])

    def queued_change(self, uid: str, state: ReservationState | None = None) -> QueueChange | None:
        """A job still Queued in the cluster whose reservation the ledger has since admitted or refused
        (the operator stopped between the ledger's decision and acting on it, or an event was lost):
        the change to act on now (start_admitted), or None (governance/jobs/status.py decides).
        `state`: the reservation's state when the caller has read it already (the pod sweep's open
        ones); the ledger is read when it is not known to be held."""
        message = ""
        if state != ReservationState.HELD:
            try:
                reservation = self.ledger.reservation(uid)
            except UnknownReservation:
                return None
            state, message = reservation.state, reservation.message
        return queued_change(uid, state, message)


def job_has_work(type: str | None, job: Any) -> bool:
    meta, status = job["metadata"], job.get("status") or {}
    if type == "DELETED":
        return False
    if meta.get("deletionTimestamp"):
        return FINALIZER in (meta.get("finalizers") or [])
    if type == "MODIFIED":  # a runner's report comes in its ConfigMap (runner_report), not the status
        return False
    return status.get("phase") not in TERMINAL
