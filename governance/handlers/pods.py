"""The executor Pod of one attempt of a QiskitJob (pure: a body, not an API call)."""

from __future__ import annotations

from copy import deepcopy
from dataclasses import dataclass, field
from typing import Any

from ..api import GROUP, JOB_LABEL, JOB_UID_LABEL, MANAGED_BY_LABEL, VERSION, label_value
from ..providers.base import ExecutorNeeds


def pod_name(job_name: str, attempt: int) -> str:
    """Deterministic: a replayed admission creates nothing twice (409 means it exists)."""
    return f"{job_name}-run-{attempt}"[:253]


SESSION_RUNNER_LABEL = "qgov.dev/session-runner"
POD_ENDED = frozenset({"Succeeded", "Failed"})  # a Pod's phases once its containers stopped for good


def runner_pod_name(session_name: str) -> str:
    return f"{session_name}-runner"[:253]


DEFAULT_RESOURCES: dict[str, Any] = {"requests": {"cpu": "500m", "memory": "512Mi"}, "limits": {"memory": "4Gi"}}

# Pod Security Standards "restricted" (what `pod-security.kubernetes.io/enforce=restricted` requires):
# non-root, the runtime's default seccomp profile, no privilege escalation, no capabilities. The root
# filesystem is read-only; Python and Qiskit get a writable /tmp of the pod's own (TMP_VOLUME).
POD_SECURITY: dict[str, Any] = {"runAsNonRoot": True, "runAsUser": 10001, "seccompProfile": {"type": "RuntimeDefault"}}
CONTAINER_SECURITY: dict[str, Any] = {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                      "capabilities": {"drop": ["ALL"]}}
TMP_VOLUME = "tmp"


@dataclass(frozen=True)
class ExecutorPodSettings:
    """Where and how big executor pods are: the operator's QGOV_EXECUTOR_* settings (config.py), so a
    platform can give them its node pool, registry credentials and priority."""

    resources: dict[str, Any] = field(default_factory=lambda: deepcopy(DEFAULT_RESOURCES))
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: list[dict[str, Any]] = field(default_factory=list)
    image_pull_secrets: tuple[str, ...] = ()
    priority_class_name: str | None = None

    def apply(self, spec: dict[str, Any]) -> None:
        """Set these on a pod spec (its one container gets the resources)."""
        spec["containers"][0]["resources"] = deepcopy(self.resources)
        if self.node_selector:
            spec["nodeSelector"] = dict(self.node_selector)
        if self.tolerations:
            spec["tolerations"] = deepcopy(self.tolerations)
        if self.image_pull_secrets:
            spec["imagePullSecrets"] = [{"name": n} for n in self.image_pull_secrets]
        if self.priority_class_name:
            spec["priorityClassName"] = self.priority_class_name


def _executor_pod(name: str, owner: dict[str, Any], kind: str, labels: dict[str, str], container: str,
                  image: str, command: list[str], pull_policy: str | None = None,
                  settings: ExecutorPodSettings | None = None, **spec: Any) -> dict[str, Any]:
    """The pod every executor runs in: its owner (a QiskitJob or a QiskitSession) deletes it with itself."""
    meta = owner["metadata"]
    pod: dict[str, Any] = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": name, "namespace": meta["namespace"], "labels": {**labels, MANAGED_BY_LABEL: "qgov"},
            "ownerReferences": [{"apiVersion": f"{GROUP}/{VERSION}", "kind": kind, "name": meta["name"],
                                 "uid": meta["uid"], "controller": True, "blockOwnerDeletion": True}],
        },
        "spec": {
            "restartPolicy": "Never",
            "serviceAccountName": "qgov-executor",
            "automountServiceAccountToken": True,
            "securityContext": deepcopy(POD_SECURITY),
            **spec,
            "containers": [{
                "name": container, "image": image, "command": command,
                "terminationMessagePolicy": "FallbackToLogsOnError",
                # where the executor writes its usage report; the kubelet (or the dev pod runner) maps it
                "env": [{"name": "QGOV_TERMINATION_LOG", "value": "/dev/termination-log"}],
                "securityContext": deepcopy(CONTAINER_SECURITY),
                "volumeMounts": [{"name": TMP_VOLUME, "mountPath": "/tmp"}],
            }],
            "volumes": [{"name": TMP_VOLUME, "emptyDir": {"sizeLimit": "1Gi"}}],
        },
    }
    (settings or ExecutorPodSettings()).apply(pod["spec"])
    if pull_policy:  # QGOV_EXECUTOR_IMAGE_PULL_POLICY; unset, Kubernetes' default (Always for :latest)
        pod["spec"]["containers"][0]["imagePullPolicy"] = pull_policy
    return pod


def session_runner_pod(session: dict[str, Any], image: str, pull_policy: str | None = None,
                       settings: ExecutorPodSettings | None = None) -> dict[str, Any]:
    """A local session's one long-lived executor: it runs the session's jobs in turn, so Python and
    Aer start once per session instead of once per job."""
    meta = session["metadata"]
    return _executor_pod(runner_pod_name(meta["name"]), session, "QiskitSession",
                         {SESSION_RUNNER_LABEL: label_value(meta["name"])}, "runner", image,
                         ["python", "-m", "executor.session", "--namespace", meta["namespace"], "--session", meta["name"]],
                         pull_policy, settings, terminationGracePeriodSeconds=60)  # the job in hand finishes on SIGTERM


def token_secret_name(session_name: str) -> str:
    return f"{session_name}-token"[:253]


def executor_pod(job: dict[str, Any], attempt: int, image: str, needs: ExecutorNeeds | None = None,
                 pull_policy: str | None = None, settings: ExecutorPodSettings | None = None) -> dict[str, Any]:
    """The attempt's executor pod; `needs` is what its provider adds (a Runtime session's env and
    token mount: providers.Provider.executor_needs)."""
    meta = job["metadata"]
    pod = _executor_pod(pod_name(meta["name"], attempt), job, "QiskitJob",
                        {JOB_LABEL: label_value(meta["name"]), JOB_UID_LABEL: meta["uid"], "qgov.dev/attempt": str(attempt)},
                        "executor", image, ["python", "-m", "executor", "--namespace", meta["namespace"], "--job",
                                            meta["name"], "--attempt", str(attempt)], pull_policy, settings)
    if needs is not None:
        container = pod["spec"]["containers"][0]
        container["env"].extend(needs.env_list())
        container["volumeMounts"].extend(dict(m) for m in needs.mounts)
        pod["spec"]["volumes"].extend(dict(v) for v in needs.volumes)
    return pod


def owner_name(obj: dict[str, Any], kind: str) -> str | None:
    """The name of the object's owner of `kind` (a pod's QiskitJob or QiskitSession): labels hold
    names cut to 63 characters, owner references hold them whole."""
    return next((o.get("name") for o in (obj.get("metadata") or {}).get("ownerReferences") or []
                 if o.get("kind") == kind), None)


STUCK_WAITING = frozenset({"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull",
                           "CreateContainerConfigError", "CreateContainerError"})


def pending_problem(pod: dict[str, Any]) -> tuple[str, str] | None:
    """(reason, message) when a Pending pod will not start by itself: an image that cannot be
    pulled, a container that cannot be created (a missing Secret, say), no node that fits."""
    status = pod.get("status") or {}
    if status.get("phase", "Pending") != "Pending":
        return None
    for container in status.get("containerStatuses") or []:
        waiting = (container.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in STUCK_WAITING:
            return waiting["reason"], waiting.get("message") or waiting["reason"]
    for condition in status.get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False" \
                and condition.get("reason") == "Unschedulable":
            return "Unschedulable", condition.get("message") or "no node fits the executor pod"
    return None
