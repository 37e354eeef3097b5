"""The pods that should exist, asserted again every QGOV_POD_SWEEP_SECONDS.

The operator watches only qgov's pods that have left Pending (server-side label and field
selectors): created, scheduled, pulling, the Pending events are most of a pod's events, and
nothing in them is the operator's business. What that costs: a pod deleted while still
Pending sends the operator nothing. So a sweep lists qgov's pods now and then and creates
again the executor pod of an Admitted job, or the runner of an open local session, that is
not there. Creating is idempotent (deterministic names; 409 means it exists), so a sweep that
races a creation creates nothing twice; an attempt whose pod never ran costs nothing.

The same sweep says why a job's pod is stuck in Pending (an image that cannot be pulled, a
Secret that is missing, no node that fits): the job's Stalled condition and message name the
kubelet's or the scheduler's reason, instead of a job that stays Admitted without a word.

And it is the backstop for the money: whatever an event should have done and did not (the
operator was killed mid-way, two operators raced, an event was lost) is found from the state of
things and done. A job whose pod finished a while ago but which is not final is settled; a job
still Queued whose reservation the ledger has admitted or refused is started or refused; a
reservation whose job is gone is released (reconcile_ledger, which never releases a live one).
"""

from __future__ import annotations

import json
import logging
import threading
from datetime import datetime, timedelta, timezone
from typing import Any

from kubernetes.client.rest import ApiException

from .. import metrics
from ..api import GROUP, MANAGED_BY_LABEL, VERSION
from ..budget.errors import DatabaseUnavailable
from ..budget.types import OPEN_STATES, QueueChange, ReservationState
from ..jobs import ACTIVE, STALLED, Phase, queued_priced, stalled_with
from .retrying import NotYet, type_name
from .jobs import Jobs
from ..jobs.status import job_conditions
from .pods import POD_ENDED, pending_problem, pod_name
from .context import KopfContext
from .sessions import Sessions
from .kube import Kube, unless_gone
from .sessionview import local_runner
from ..timestamps import parse_optional

# a pod that finished this long ago and whose job is not final lost its event: settle it here
# (sooner would race the event being handled right now, and post its Events twice)
MISSED_END_SECONDS = 10.0

log = logging.getLogger("qgov.podsweep")


def unfinished_pods(core: Any) -> dict[tuple[str, str], dict[str, Any]]:
    """qgov's pods that have not ended, by (namespace, name). Ended ones stay until their job is
    deleted, as many as the finished jobs kept: the sweep must not read them every time."""
    answer = core.list_pod_for_all_namespaces(label_selector=f"{MANAGED_BY_LABEL}=qgov",
                                                   field_selector="status.phase!=Succeeded,status.phase!=Failed",
                                                   _preload_content=False)
    items = json.loads(answer.data).get("items") or []
    return {(p["metadata"]["namespace"], p["metadata"]["name"]): p for p in items}


def read_pod(core: Any, namespace: str, name: str) -> dict[str, Any] | None:
    answer = unless_gone(lambda: core.read_namespaced_pod(name, namespace, _preload_content=False))
    return None if answer is None else json.loads(answer.data)


def sweep(jobs_handlers: Jobs, session_handlers: Sessions) -> list[str]:
    """Create the pods that are missing, say why stuck ones do not start, finish what events left
    undone; returns the names (namespace/name) of the pods created.

    Its cost follows live work, not history: the jobs it looks at are the unfinished ones the
    watch keeps (`active_jobs`), the pods it lists are those not ended; a finished job costs it
    nothing."""
    # the open reservations BEFORE the jobs: reconcile_ledger relies on that order
    try:
        open_states: dict[str, ReservationState] | None = {
            r.key: r.state for r in jobs_handlers.ledger.reservations(OPEN_STATES)}
    except DatabaseUnavailable as exc:  # the pods are still swept; the money waits for the next sweep
        log.warning(f"pod sweep: {exc}")
        jobs_handlers.notifier.refresh_namespace_budgets()  # the budgets say so
        open_states = None
    kube = jobs_handlers.kube
    jobs = list(jobs_handlers.active_jobs.values())
    pods = unfinished_pods(kube.core)
    sessions = kube.custom.list_cluster_custom_object(GROUP, VERSION, "qiskitsessions").get("items", [])
    created: list[str] = []
    caught_up: list[QueueChange] = []
    for job in jobs:
        meta, status = job["metadata"], job.get("status") or {}
        if meta.get("deletionTimestamp"):
            continue
        if (queued_priced(status) and open_states is not None
                and open_states.get(meta["uid"]) != ReservationState.QUEUED):
            change = jobs_handlers.queued_change(meta["uid"], open_states.get(meta["uid"]))
            if change is not None:  # None: the ledger has no news for it (still queued, or no reservation)
                caught_up.append(change)
            continue
        if status.get("phase") not in ACTIVE or not status.get("podName") or status.get("retryAt"):
            continue
        # the attempt's own pod name (not the status' podName, which a namespace member can write);
        # executor_pod_event takes only the pod the operator created (its UID is in the ledger)
        name = pod_name(meta["name"], int(status.get("attempts") or 1))
        pod = pods.get((meta["namespace"], name)) or read_pod(kube.core, meta["namespace"], name)
        if pod is not None:
            if _missed_end(pod):
                jobs_handlers.attempts.executor_pod_event("MODIFIED", pod)
            elif status.get("phase") == Phase.ADMITTED.value:
                report_stalled(kube, job, pod)
            continue
        placed = jobs_handlers.attempts.attempt_placement(job) if status.get("phase") == Phase.ADMITTED.value else None
        # the watch's copy of the job may be older than the pod: a pod made meanwhile answers 409
        try:
            if placed is not None and placed.kind == "pod" and jobs_handlers.pods.create_pod(
                    job, int(status.get("attempts") or 1), placed.needs):
                created.append(f"{meta['namespace']}/{name}")
        except NotYet as exc:  # a pod qgov did not create was in the way (deleted): the next sweep creates
            log.warning(f"pod sweep: {exc}")
        except ApiException as exc:  # refused (said on the job: Stalled); the other jobs are still swept
            log.warning(f"pod sweep: job {meta['namespace']}/{meta['name']}: {type_name(exc)}")
    jobs_handlers.start_admitted([c for c in caught_up if c is not None])
    for session in sessions:
        runner = local_runner(session)
        namespace = session["metadata"]["namespace"]
        if runner and (namespace, runner) not in pods and not session["metadata"].get("deletionTimestamp") \
                and session_handlers.create_runner(session):
            created.append(f"{namespace}/{runner}")
    if open_states is not None:
        jobs_handlers.settlement.reconcile_ledger(jobs, sessions, list(open_states))
    return created


def _missed_end(pod: dict[str, Any]) -> bool:
    """The executor pod ended a while ago (its job should have been settled by its event)."""
    if (pod.get("status") or {}).get("phase") not in POD_ENDED:
        return False
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    finished = ((statuses[0].get("state") or {}).get("terminated") or {}).get("finishedAt") if statuses else None
    ended = parse_optional(finished)
    return ended is None or datetime.now(timezone.utc) - ended > timedelta(seconds=MISSED_END_SECONDS)


def report_stalled(kube: Kube, job: dict[str, Any], pod: dict[str, Any]) -> None:
    """Write why the job's pod does not start into its Stalled condition (once per new reason)."""
    problem = pending_problem(pod)
    if problem is None:
        return
    reason, text = problem
    message = f"executor pod {pod['metadata']['name']} cannot start: {reason}: {' '.join(text.split())[:500]}"
    if stalled_with(job.get("status") or {}, message):
        return
    metrics.pod_stalled(reason)
    meta = job["metadata"]
    kube.patch_job_status(meta["namespace"], meta["name"], {
        "message": message, "conditions": job_conditions(job, (STALLED, True, reason, message))})
    log.warning(f"job {meta['namespace']}/{meta['name']}: {message}")


class PodSweeper:
    """A thread that sweeps every `interval` seconds until stopped, with the job handlers' object
    (`jobs`: its clients, ledger and unfinished jobs), the session handlers' (`sessions`: runners),
    and kopf's context (`kopf_context`: whether the operator runs; kopf.event needs a handler's
    context)."""

    def __init__(self, interval: float, jobs: Jobs, sessions: Sessions, kopf_context: KopfContext) -> None:
        self.interval, self.jobs, self.sessions, self.kopf_context = interval, jobs, sessions, kopf_context
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="qgov-pod-sweep", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            if not self.kopf_context.running:
                continue
            try:
                # kopf.event (a settlement's) needs a handler's context
                for name in self.kopf_context.run(sweep, self.jobs, self.sessions):
                    log.warning(f"pod {name} was gone before it ran (deleted while Pending?): created again")
            except Exception as exc:  # noqa: BLE001 - a failed sweep is tried again at the next interval
                log.warning(f"pod sweep failed: {type_name(exc)}")
