"""Where an attempt's result lives, and whether a given attempt wrote it.

The executor writes a job's result as ConfigMaps it may only create: `<job>-result` for the first
attempt that gets that far, `<job>-result-attempt-<n>` when an earlier attempt holds that name
(executor/attempt.py write_result). Under qgov's policies only the executor pod of that job can
create them and only the operator can change or delete them; a tenant cannot pass one off as its
own. That makes a written result a trusted sign that the attempt ran to its end, whatever its pod
says afterwards: a tenant who deletes or kills the pod once the result is written is charged.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..api import JOB_LABEL

ATTEMPT_ANNOTATION = "qgov.dev/attempt"  # on a result ConfigMap: the attempt that wrote it


def result_names(job_name: str, attempt: int) -> tuple[str, str]:
    """The names attempt `attempt` writes its result under, in the order it tries them."""
    return f"{job_name}-result", f"{job_name}-result-attempt-{attempt}"


def written_by(configmap_meta: Mapping[str, Any], job_uid: str, attempt: int) -> bool:
    """Whether a result ConfigMap (its metadata) was written by attempt `attempt` of the job with
    `job_uid`: owned by that job, labelled as qgov's (which only the executor or the operator may
    set), and written by that attempt (the attempt-specific name, or its annotation on `<job>-result`)."""
    owners = configmap_meta.get("ownerReferences") or configmap_meta.get("owner_references") or ()
    if not any((o.get("uid") if isinstance(o, Mapping) else getattr(o, "uid", None)) == job_uid for o in owners):
        return False
    if JOB_LABEL not in (configmap_meta.get("labels") or {}):
        return False
    name = str(configmap_meta.get("name") or "")
    if name.endswith(f"-result-attempt-{attempt}"):
        return True
    return (configmap_meta.get("annotations") or {}).get(ATTEMPT_ANNOTATION) == str(attempt)
