"""Whether a pod is the operator's own attempt pod: only those are attempts.

A namespace member can create a pod with any name, labels, owner reference, ServiceAccount (its
namespace's qgov-executor) and image, and can race the operator to an attempt's deterministic
name. What it cannot forge is the pod's UID, which the API server assigns and the operator records
in the ledger when its create succeeds (Ledger.record_pod). The other checks say what is wrong
with a pod for people, and catch a pod changed from what the operator asked for.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

EXECUTOR_ACCOUNT = "qgov-executor"
NOT_RECORDED = "is not the pod qgov created for this attempt"


def foreign_pod(pod: Mapping[str, Any], job_uid: str, name: str, image: str, recorded_uid: str | None) -> str | None:
    """Why `pod` is not the attempt pod the operator created (None: it is): `name` is the
    attempt's pod name, `image` the executor image, `recorded_uid` the UID the ledger holds for the
    attempt (None: the operator has recorded none)."""
    meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
    if meta.get("name") != name:
        return f"pod {meta.get('name')} is not named {name}"
    owners = [o for o in meta.get("ownerReferences") or [] if o.get("kind") == "QiskitJob"]
    if [o.get("uid") for o in owners] != [job_uid]:
        return f"pod {name} is not owned by the job (uid {job_uid})"
    if spec.get("serviceAccountName") != EXECUTOR_ACCOUNT:
        return f"pod {name} runs as {spec.get('serviceAccountName')!r}, not {EXECUTOR_ACCOUNT}"
    images = [c.get("image") for c in spec.get("containers") or []]
    if images != [image]:
        return f"pod {name} runs {images}, not the executor image {image}"
    if recorded_uid is None or meta.get("uid") != recorded_uid:
        return f"pod {name} (uid {meta.get('uid')}) {NOT_RECORDED}"
    return None
