"""A job's attempts: where each runs (its executor pod, a local session's runner, a session not
open yet), how it ended (its pod, or the runner's report), and what comes next: a retry after
backoff, or the job's end (governance/jobs/attempts.py decides)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import partial
from typing import Any, Literal

from .. import providers
from ..assessment import Problem
from ..api import JOB_LABEL, JOB_UID_LABEL
from ..api.specs import Backend
from ..budget.ledger import Ledger
from ..budget.money import format_amount, format_quantity
from ..budget.types import AttemptTotals
from ..jobs import STALLED, AlreadyCounted, JobStatus, Phase, Retry, after_attempt
from ..jobs import runnerreport as runner_reports
from ..jobs.admission import NeedBackend
from ..jobs.attempts import DEFAULT_BACKOFF_LIMIT, reported_usage
from ..jobs.events import Event
from ..jobs.ownpod import NOT_RECORDED, foreign_pod
from ..jobs.placement import EndUnstarted, MoveToNewBatch, WaitForSession, session_not_open
from ..providers.base import ExecutorNeeds
from ..sessions.status import SessionStatus
from .budgetnotify import BudgetNotifier
from ..timestamps import iso, now_iso, parse_iso
from .config import OperatorConfig
from .jobadmission import Admission
from .jobmarks import mark
from .jobpods import AttemptPods, young
from .jobsettlement import Settlement
from ..jobs.status import job_conditions, terminal_status
from .jobstatus import usage_of
from .kube import Kube, emit, unless_gone
from .pods import POD_ENDED, owner_name, pod_name
from .retrying import NotYet, later
from .sessionview import AUTO_BATCH_LABEL, SessionDirectory, ended_phase, executor_session, local_runner

log = logging.getLogger("qgov.jobs")


@dataclass(frozen=True)
class Placement:
    kind: Literal["pod", "runner", "wait"]  # its own executor pod; a local session's runner; a session not open
    needs: ExecutorNeeds | None = None  # what the provider adds to the pod (a Runtime session's token)
    session: dict[str, Any] | None = None  # for "wait": the session (None when it is gone)


class Attempts:
    """Starts, follows and ends jobs' attempts."""

    def __init__(self, config: OperatorConfig, ledger: Ledger, kube: Kube, notifier: BudgetNotifier,
                 directory: SessionDirectory, admission: Admission, pods: AttemptPods,
                 settlement: Settlement) -> None:
        self.config, self.ledger, self.kube, self.notifier = config, ledger, kube, notifier
        self.directory, self.admission, self.pods, self.settlement = directory, admission, pods, settlement

    def start_attempt(self, job: dict[str, Any], attempt: int, status: dict[str, Any] | None = None) -> None:
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
            self.pods.create_pod(job, attempt, placed.needs)
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
        backend = self.admission.load_backend((job.get("spec") or {}).get("backend", ""))
        # a backend deleted since admission: the executor reads it and ends the attempt with that error
        needs = providers.of(backend).executor_needs(remote) if not isinstance(backend, Problem) else None
        return Placement("pod", needs)

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
            backend = self.admission.load_backend(step.name)
            step = decide(not isinstance(backend, Problem))
        if isinstance(step, WaitForSession):
            self.kube.patch_job_status(meta["namespace"], meta["name"], {"message": step.message})
        elif isinstance(step, MoveToNewBatch) and isinstance(backend, Backend):
            new = self.directory.auto_batch(meta["namespace"], backend, f"{meta['uid']}/{step.moves}",
                                            self.directory.credentials_secret(job["spec"].get("credentialsSecret")))
            message = f"{step.message}, {new}"
            self.admission.terms(job)  # recorded (an older operator's job), then moved
            self.ledger.move_session(meta["uid"], new)
            emit(job, Event("Normal", "SessionRequeued", message))
            mark(self.kube, job, finalizer=False, session=new)
            self.kube.patch_job_status(meta["namespace"], meta["name"], {"session": new, "sessionMoves": step.moves,
                                                                         "message": message})
        elif isinstance(step, EndUnstarted):
            self._finish_unstarted(job, step.reason, step.message)

    def _finish_unstarted(self, job: dict[str, Any], reason: str, message: str) -> None:
        """Fail a job whose next attempt cannot start; what earlier attempts used is charged."""
        namespace, name = job["metadata"]["namespace"], job["metadata"]["name"]
        status = JobStatus.of(job)
        used = self.ledger.attempt_totals(job["metadata"]["uid"]).used_micro  # the ledger's, not the status'
        charged, _ = self.settlement.settle(job, used)
        emit(job, Event("Warning", reason, message))
        self.kube.patch_job_status(namespace, name, terminal_status(job, Phase.FAILED.value, reason,
                                                              f"{message}; charged {format_amount(charged)}",
                                                              actualCost=format_amount(charged), usedMicro=str(used)))
        if status.budget:
            self.notifier.refresh_budget_status(namespace, status.budget)

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
                                          self.pods.attempt_pod_uid(job["metadata"]["uid"], attempt, pod))
        if not attempt or foreign:
            if foreign and foreign.endswith(NOT_RECORDED) and young(pod) and not JobStatus.of(job).terminal:
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
        report, exit_code = usage_of(pod)
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
            charge, qpu, source, produced = self.settlement.trusted_charge(job, attempt, succeeded, report)
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
        terms = self.admission.terms(job)
        settled, late = self.settlement.settle(job, after.used_micro)
        cost = f"{format_amount(settled)} {terms.unit}" + (f" ({late})" if late else "")
        message = after.message(cost) + note
        spent = {"actualCost": format_amount(settled), "usedMicro": str(after.used_micro),
                 "qpuSeconds": format_quantity(after.qpu_seconds), "countedAttempt": totals.counted_attempt,
                 "currency": terms.unit, "budget": terms.budget.partition("/")[2] or None,
                 "paidBySession": terms.paid_by_session or None}
        emit(job, after.event(message))
        if after.phase is Phase.SUCCEEDED:
            new = terminal_status(job, Phase.SUCCEEDED.value, after.reason, message, **spent,
                            resultConfigMap=report.get("resultConfigMap") if isinstance(
                                report.get("resultConfigMap"), str) else None,
                            **({"runtimeJob": str(report["runtimeJob"])} if report.get("runtimeJob") else {}))
        else:
            new = terminal_status(job, Phase.FAILED.value, after.reason, message, **spent)
        self.kube.patch_job_status(namespace, name, new)
        if terms.budget:
            self.notifier.refresh_budget_status(namespace, terms.budget.partition("/")[2])

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
        self.start_attempt(job, (status.attempts or 1) + 1)  # a duplicate timer creates nothing twice
