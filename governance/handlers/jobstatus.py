"""A QiskitJob's status as the job controller writes it: conditions, the status of a job that ends
(terminal, admitted, failed), the LedgerUnavailable condition of a job whose work waits for the
ledger (JobWatcher), and what an executor pod reported."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .. import metrics
from ..api import GROUP, VERSION
from ..budget.errors import DatabaseUnavailable
from ..jobs import FAILURES, JobStatus, Phase
from ..jobs.events import Event
from ..kubeerrors import Conflict, api_errors
from .budgetnotify import BudgetNotifier
from .conditions import now_iso, set_condition
from .kube import JOBS as PLURAL
from .kube import Kube, discard, emit
from .retrying import Watcher


# ---------------------------------------------------------------------- status helpers


def job_conditions(job: dict[str, Any], *changes: tuple[str, bool, str, str]) -> list[dict[str, Any]]:
    conditions = (job.get("status") or {}).get("conditions")
    for type_, ok, reason, message in changes:
        conditions = set_condition(conditions, type_, ok, reason, message, job["metadata"].get("generation"))
    return conditions or []


def ledger_answered(job: dict[str, Any]) -> tuple[tuple[str, bool, str, str], ...]:
    """The condition change for a status written after the ledger answered (an admission, a
    settlement): LedgerUnavailable turns False in the same write. Written on its own later, the
    clearing could be undone by a write built from an older read of the job."""
    if JobStatus.of(job).condition_is(LEDGER_UNAVAILABLE, "True"):
        return ((LEDGER_UNAVAILABLE, False, "LedgerAvailable", "the budget ledger is reachable again"),)
    return ()


def terminal_status(job: dict[str, Any], phase: str, reason: str, message: str, **extra: Any) -> dict[str, Any]:
    """A status for a job that ends here; Events go out with the same reason."""
    changes = [("Complete", phase == Phase.SUCCEEDED.value, reason, message), *ledger_answered(job)]
    if phase in FAILURES:
        changes.append(("Failed", True, reason, message))
    if phase == Phase.REFUSED.value:
        changes.append(("Admitted", False, reason, message))
    conditions = job_conditions(job, *changes)
    return {"phase": phase, "message": message, "conditions": conditions, "completionTime": now_iso(),
            "retryAt": None, **extra}


def admitted_status(job: dict[str, Any], base: dict[str, Any], phase: str, reason: str, message: str,
              event: bool = False) -> dict[str, Any]:
    """A job admitted at once. The Admitted condition records it (reason, message, time); an Event
    is posted only when the admission is out of the ordinary (no budget). A routine admission is
    the expected path: an Event for each doubled the API writes of a burst (and etcd's Event
    load) and was a tenth of the operator's CPU per job. Queueing, admission from the queue,
    refusals, retries and the end of every job each post one."""
    if event:
        emit(job, Event("Normal", "Admitted", message))
    return dict(base, phase=phase, message=message, attempts=1,
                conditions=job_conditions(job, ("Admitted", True, reason, message), *ledger_answered(job)))


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


LEDGER_UNAVAILABLE = "LedgerUnavailable"


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
