"""The QiskitJob controller's kopf handlers: backends', jobs', executor pods' and runner reports'
events, handed to the parts in kopf's memo (`memo.jobs`, jobs.py). Importing this module
registers them."""

from __future__ import annotations

import sys
from functools import partial
from typing import Any, cast

import kopf

from ..api import GROUP, JOB_UID_LABEL, VERSION
from ..jobs import runnerreport as runner_reports
from . import rawevents
from .jobs import Jobs, job_has_work
from .jobstatus import JobRef
from .kube import JOBS as PLURAL
from .pods import owner_name
from .retrying import run_retrying


@kopf.on.event(GROUP, VERSION, "qiskitbackends")
def on_backend_event(type: str | None, body: kopf.Body, name: str, memo: kopf.Memo, **_: Any) -> None:
    if (jobs := running(memo)) is not None:
        jobs.snapshot.backend_event(type, name, dict(body))


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
    if job_has_work(None, job):
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
                         partial(jobs.attempts.runner_report, configmap), None, jobs.watcher(ref))


def running(memo: Any) -> Jobs | None:
    """The job handlers' collaborators, or None before start-up and after clean-up (events and
    timers can still fire then)."""
    jobs = getattr(memo, "jobs", None)
    return jobs if jobs is not None and jobs.kopf_context.running else None
