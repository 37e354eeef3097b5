"""What IBM metered for a qgov job's attempt, read by the operator from the Runtime API.

The executor names the Runtime job it submitted (a report a namespace member could forge); that
only says WHICH job to read. The job must belong to the Runtime session the operator opened for the
qgov job (its QiskitSession's sessionId), or a tenant could point at a cheap job of its own; its
metered quantum_seconds is then what the attempt is charged.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any, Protocol

from ...budget.costmodel import Usage
from ...budget.money import format_quantity


class Meter(Protocol):
    def job(self, job_id: str) -> dict[str, Any]: ...

    def job_metrics(self, job_id: str) -> dict[str, Any]: ...


def metered_usage(api: Meter, runtime_job: str, session_id: str) -> tuple[Usage | None, str]:
    """(the metered usage, '') for the Runtime job `runtime_job` of session `session_id`, or
    (None, why not): not this session's job, not finished metering, or no figure."""
    if not runtime_job or not isinstance(runtime_job, str):
        return None, "the attempt named no Runtime job"
    described = api.job(runtime_job)
    if str(described.get("session_id") or "") != session_id:
        return None, (f"Runtime job {runtime_job} is not in the session qgov opened for this job ({session_id}); "
                      "its usage is not this job's")
    usage = (api.job_metrics(runtime_job) or {}).get("usage") or {}
    try:
        seconds = Decimal(str(usage.get("quantum_seconds")))
    except InvalidOperation:
        return None, f"IBM reports no quantum_seconds for Runtime job {runtime_job}"
    if not seconds.is_finite() or seconds < 0:
        return None, f"IBM reports no quantum_seconds for Runtime job {runtime_job}"
    return Usage(qpu_seconds=Decimal(format_quantity(seconds))), ""
