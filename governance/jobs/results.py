"""Where an attempt's result lives, and whether a given attempt wrote it.

The executor writes a job's result as ConfigMaps it may only create: `<job>-result` for the first
attempt that gets that far, `<job>-result-attempt-<n>` when an earlier attempt holds that name
(executor/attempt.py write_result). Under qgov's policies only the executor pod of that job can
create them and only the operator can change or delete them; a tenant cannot pass one off as its
own. That makes a written result a trusted sign that the attempt ran to its end, whatever its pod
says afterwards: a tenant who deletes or kills the pod once the result is written is charged.
"""

from __future__ import annotations

import base64
import gzip
import json
from collections.abc import Callable, Mapping
from typing import Any

from ..api import JOB_LABEL

ATTEMPT_ANNOTATION = "qgov.dev/attempt"  # on a result ConfigMap: the attempt that wrote it
PARTS_ANNOTATION = "qgov.dev/parts"  # on each part of a split result: every part's name, in order
CONFIGMAP_LIMIT = 900_000  # bytes of data per ConfigMap, below the API server's 1 MiB object limit


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


def configmaps_for(name: str, document: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """A result document as ConfigMap bodies: plain when small, gzip when large, split when larger
    still. Never truncated: a reader joins the parts listed in the first ConfigMap's annotations."""
    text = json.dumps(document, separators=(",", ":"))
    if len(text.encode()) <= CONFIGMAP_LIMIT:
        return [(name, {"data": {"result.json": text}})]
    packed = base64.b64encode(gzip.compress(text.encode(), 9)).decode()
    chunks = [packed[i:i + CONFIGMAP_LIMIT] for i in range(0, len(packed), CONFIGMAP_LIMIT)]
    names = [name] + [f"{name}-{i}" for i in range(1, len(chunks))]
    annotations = {"qgov.dev/encoding": "gzip+base64", PARTS_ANNOTATION: ",".join(names)}
    return [(n, {"metadata": {"annotations": annotations}, "binaryData": {"result.json.gz.part": c}})
            for n, c in zip(names, chunks, strict=True)]


def read_result(read: Callable[[str], Any], name: str) -> dict[str, Any]:
    """The result document written by `configmaps_for` under `name`, its parts joined. `read(n)`:
    the ConfigMap named n in the job's namespace (a kubernetes client V1ConfigMap)."""
    first = read(name)
    result: dict[str, Any]
    if first.data and "result.json" in first.data:
        result = json.loads(first.data["result.json"])
        return result
    parts = (first.metadata.annotations or {})[PARTS_ANNOTATION].split(",")
    packed = "".join(first.binary_data["result.json.gz.part"] if part == name
                     else read(part).binary_data["result.json.gz.part"] for part in parts)
    result = json.loads(gzip.decompress(base64.b64decode(packed)))
    return result

