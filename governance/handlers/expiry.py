"""Finished QiskitJobs go away after their time to live, as batch/v1 Jobs do with
`ttlSecondsAfterFinished`: `spec.ttlSecondsAfterFinished`, else the operator's
QGOV_JOB_TTL_SECONDS (unset: kept). Deleting a job deletes what it owns (its result
ConfigMaps, its pods) through the garbage collector; its money stays in the ledger and in
the reports. Without this a month of work piles up in the cluster and in the operator.

One thread and one heap for every finished job (alarms.py), not a timer each: a due time is set
from the job's watch event (its completionTime + TTL), so a restarted operator sets them all again from
kopf's initial listing, and deletes at once whatever expired while it was down.
"""

from __future__ import annotations

import logging
from typing import Any

from kubernetes.client import V1DeleteOptions, V1Preconditions

from ..api import GROUP, VERSION
from ..timestamps import parse_optional
from ..kubeerrors import Conflict, NotFound, api_errors

log = logging.getLogger("qgov.expiry")

JobKey = tuple[str, str, str]  # namespace, name, uid


def expires_at(job: dict[str, Any], default_ttl: int | None) -> float | None:
    """When a finished job is deleted (epoch seconds), or None when it is kept."""
    status, spec = job.get("status") or {}, job.get("spec") or {}
    ttl = spec.get("ttlSecondsAfterFinished", default_ttl)
    finished = parse_optional(status.get("completionTime"))
    if ttl is None or finished is None:
        return None
    return finished.timestamp() + int(ttl)


def delete_job(custom: Any, key: JobKey) -> None:
    """Delete the finished job, this very one (its UID), with what it owns."""
    namespace, name, uid = key
    try:
        with api_errors():
            custom.delete_namespaced_custom_object(
                GROUP, VERSION, namespace, "qiskitjobs", name,
                body=V1DeleteOptions(preconditions=V1Preconditions(uid=uid), propagation_policy="Background"))
        log.info(f"deleted finished QiskitJob {namespace}/{name}: its time to live is over")
    except (NotFound, Conflict):  # gone already; another job of that name now
        pass
