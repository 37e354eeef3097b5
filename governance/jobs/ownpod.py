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


# The crash window between creating an attempt's pod and recording its UID. Before the create the
# operator records a claim (CLAIM_PREFIX + a random nonce) and puts the nonce on the pod; a pod
# found later that carries the recorded claim's nonce, and is older than the moment a live operator
# takes to record its own pod, is the one an operator created and died before recording. A pod a
# namespace member made before the claim cannot carry its nonce; one made after the operator's pod
# (deleting it and copying the annotation) is young when the operator records its own UID, so it
# is never adopted.
CLAIM_PREFIX = "claim:"
CLAIM_ANNOTATION = "qgov.dev/attempt-claim"


def claim_record(nonce: str) -> str:
    """What the ledger holds for an attempt whose pod is being created."""
    return CLAIM_PREFIX + nonce


def recorded_uid(recorded: str | None) -> str | None:
    """The pod UID an attempt's record names (None while it holds only a claim, or nothing)."""
    return None if recorded is None or recorded.startswith(CLAIM_PREFIX) else recorded


def carries_claim(pod: Mapping[str, Any], recorded: str | None) -> bool:
    """Whether `pod` carries the nonce of the claim the ledger records for its attempt."""
    if recorded is None or not recorded.startswith(CLAIM_PREFIX):
        return False
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    return annotations.get(CLAIM_ANNOTATION) == recorded[len(CLAIM_PREFIX):]


def adoptable(pod: Mapping[str, Any], recorded: str | None, young: bool) -> bool:
    """Whether `pod` is the one an operator created under the recorded claim and died before
    recording: it carries the claim's nonce and is not `young` (created within the moment a live
    operator takes to record its pod; until then, its creator may be recording it)."""
    return not young and carries_claim(pod, recorded)
