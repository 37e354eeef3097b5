"""A QiskitJob's status as the job controller writes it. The statuses themselves are built by the
pure `jobs.status`; here are the Events that go with them, the LedgerUnavailable condition of a
job whose work waits for the ledger (JobWatcher), and what an executor pod reported."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .. import metrics
from ..api import GROUP, VERSION
from ..budget.errors import DatabaseUnavailable
from ..jobs import JobStatus
from ..jobs.events import Event
from ..jobs.status import LEDGER_UNAVAILABLE, job_conditions, terminal_status
from ..jobs.status import admitted_status as core_admitted_status
from ..kubeerrors import Conflict, api_errors
from .budgetnotify import BudgetNotifier
from .kube import JOBS as PLURAL
from .kube import Kube, discard, emit
from .retrying import Watcher


def admitted_status(job: dict[str, Any], base: dict[str, Any], phase: str, reason: str, message: str,
                    event: bool = False) -> dict[str, Any]:
    """`jobs.status.admitted_status`, posting the Admitted Event when the admission is out of the
    ordinary (no budget). A routine admission is the expected path: an Event for each doubled the
    API writes of a burst (and etcd's Event load) and was a tenth of the operator's CPU per job.
    Queueing, admission from the queue, refusals, retries and the end of every job each post one."""
    if event:
        emit(job, Event("Normal", "Admitted", message))
    return core_admitted_status(job, base, phase, reason, message)


def failed_status(job: dict[str, Any], phase: str, reason: str, message: str) -> dict[str, Any]:
    emit(job, Event("Warning", reason, message))
    return terminal_status(job, phase, reason, message)


@dataclass(frozen=True)
class JobRef:
    namespace: str
    name: str
    uid: str

    @classmethod
    def of(cls, job: dict[str, Any]) -> JobRef:
        meta = job["metadata"]
        return cls(meta["namespace"], meta["name"], meta["uid"])


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
            if condition_is(job, LEDGER_UNAVAILABLE, "True"):
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
            LEDGER_UNAVAILABLE, False, "LedgerAvailable", message))} if condition_is(
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
                with api_errors():
                    discard(self.kube.custom.patch_namespaced_custom_object_status(
                        GROUP, VERSION, self.ref.namespace, PLURAL, self.ref.name,
                        {"metadata": {"resourceVersion": job["metadata"]["resourceVersion"]}, "status": status},
                        _preload_content=False))
                return job
            except Conflict:
                pass  # written meanwhile: read it again
        return None


def condition_is(job: dict[str, Any], type_: str, value: str) -> bool:
    return JobStatus.of(job).condition_is(type_, value)


def usage_of(pod: dict[str, Any]) -> tuple[dict[str, Any], int | None]:
    """The executor's report (termination message JSON) and the container's exit code."""
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    term = ((statuses[0].get("state") or {}).get("terminated") or {}) if statuses else {}
    try:
        report = json.loads(term.get("message") or "{}")
    except ValueError:
        report = {"error": (term.get("message") or "")[-500:]}
    return (report if isinstance(report, dict) else {}), term.get("exitCode")
