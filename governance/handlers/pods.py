"""The executor Pod of one attempt of a QiskitJob (pure: a body, not an API call)."""

from __future__ import annotations

from typing import Any

from ..api import GROUP, JOB_LABEL, JOB_UID_LABEL, VERSION


def pod_name(job_name: str, attempt: int) -> str:
    """Deterministic: a replayed admission creates nothing twice (409 means it exists)."""
    return f"{job_name}-run-{attempt}"[:253]


def executor_pod(job: dict[str, Any], attempt: int, image: str) -> dict[str, Any]:
    meta = job["metadata"]
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": pod_name(meta["name"], attempt), "namespace": meta["namespace"],
            "labels": {JOB_LABEL: meta["name"][:63], JOB_UID_LABEL: meta["uid"], "qgov.dev/attempt": str(attempt),
                       "app.kubernetes.io/managed-by": "qgov"},
            "ownerReferences": [{"apiVersion": f"{GROUP}/{VERSION}", "kind": "QiskitJob", "name": meta["name"],
                                 "uid": meta["uid"], "controller": True, "blockOwnerDeletion": True}],
        },
        "spec": {
            "restartPolicy": "Never",
            "serviceAccountName": "qgov-executor",
            "automountServiceAccountToken": True,
            "securityContext": {"runAsNonRoot": True, "runAsUser": 10001},
            "containers": [{
                "name": "executor", "image": image,
                "command": ["python", "-m", "executor", "--namespace", meta["namespace"], "--job", meta["name"],
                            "--attempt", str(attempt)],
                "terminationMessagePolicy": "FallbackToLogsOnError",
                # where the executor writes its usage report; the kubelet (or the dev pod runner) maps it
                "env": [{"name": "QGOV_TERMINATION_LOG", "value": "/dev/termination-log"}],
                "resources": {"requests": {"cpu": "500m", "memory": "512Mi"}, "limits": {"memory": "4Gi"}},
            }],
        },
    }
