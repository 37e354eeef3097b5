"""The executor pods the operator creates: Pod Security "restricted" as the Pod Security Standards
define it, with the platform's resources and scheduling (QGOV_EXECUTOR_*). Whether the real API
server's PodSecurity admission agrees is tests/operator/test_policies_upstream.py's question."""

from __future__ import annotations

from typing import Any

import pytest

from governance.handlers.config import OperatorConfig
from governance.handlers.pods import executor_pod, session_runner_pod
from governance.providers.base import ExecutorSession
import governance.providers as providers

JOB = {"apiVersion": "qgov.dev/v1alpha1", "kind": "QiskitJob",
       "metadata": {"name": "bell", "namespace": "team-a", "uid": "u-1"}, "spec": {}}
SESSION = {"apiVersion": "qgov.dev/v1alpha1", "kind": "QiskitSession",
           "metadata": {"name": "s", "namespace": "team-a", "uid": "u-2"}, "spec": {}}


def restricted_violations(pod: dict[str, Any]) -> list[str]:
    """The "restricted" profile's checks that a pod spec can fail (Pod Security Standards, v1.30+)."""
    spec, problems = pod["spec"], []
    pod_sc = spec.get("securityContext") or {}
    allowed_volumes = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
                       "projected", "secret"}
    for volume in spec.get("volumes") or []:
        if not set(volume) - {"name"} <= allowed_volumes:
            problems.append(f"volume {volume['name']}")
    for c in spec["containers"] + spec.get("initContainers", []):
        sc = c.get("securityContext") or {}
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{c['name']}: allowPrivilegeEscalation != false")
        if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
            problems.append(f"{c['name']}: capabilities.drop lacks ALL")
        if (sc.get("capabilities") or {}).get("add"):
            problems.append(f"{c['name']}: capabilities.add")
        if not sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")):
            problems.append(f"{c['name']}: runAsNonRoot != true")
        if sc.get("runAsUser", pod_sc.get("runAsUser")) == 0:
            problems.append(f"{c['name']}: runAsUser 0")
        seccomp = (sc.get("seccompProfile") or pod_sc.get("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            problems.append(f"{c['name']}: seccompProfile {seccomp}")
        if sc.get("privileged") or c.get("ports") and any(p.get("hostPort") for p in c["ports"]):
            problems.append(f"{c['name']}: privileged or hostPort")
    if spec.get("hostNetwork") or spec.get("hostPID") or spec.get("hostIPC"):
        problems.append("host namespaces")
    return problems


def ibm_needs() -> Any:
    session = ExecutorSession("sess-1", "dedicated", "s-token", "crn:v1:x", None, None, None)
    return providers.get("ibm").executor_needs(session)


def test_executor_and_runner_pods_meet_the_restricted_profile_with_a_read_only_root() -> None:
    for pod in (executor_pod(JOB, 1, "img"), executor_pod(JOB, 2, "img", ibm_needs()), session_runner_pod(SESSION, "img")):
        assert restricted_violations(pod) == [], pod["metadata"]["name"]
        [container] = pod["spec"]["containers"]
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        # a writable /tmp of the pod's own, for Python and Qiskit
        assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
        assert {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}} in pod["spec"]["volumes"]
    # an IBM executor keeps its token mount beside /tmp
    pod = executor_pod(JOB, 2, "img", ibm_needs())
    assert {"name": "ibm-token", "secret": {"secretName": "s-token"}} in pod["spec"]["volumes"]
    assert {"name": "ibm-token", "mountPath": "/var/run/qgov/ibm", "readOnly": True} in pod["spec"]["containers"][0][
        "volumeMounts"]
    # two pods never share a security context object (a caller changing one changes only that one)
    a, b = executor_pod(JOB, 1, "img"), executor_pod(JOB, 1, "img")
    a["spec"]["securityContext"]["seccompProfile"]["type"] = "Unconfined"
    assert b["spec"]["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"


def test_the_checker_sees_a_pod_that_is_not_restricted() -> None:
    pod = executor_pod(JOB, 1, "img")
    del pod["spec"]["securityContext"]["seccompProfile"]
    pod["spec"]["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = True
    pod["spec"]["volumes"].append({"name": "host", "hostPath": {"path": "/"}})
    assert restricted_violations(pod) == ["volume host", "executor: allowPrivilegeEscalation != false",
                                          "executor: seccompProfile None"]


def test_without_settings_the_pods_have_the_default_resources_and_no_scheduling(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("QGOV_EXECUTOR_RESOURCES", "QGOV_EXECUTOR_NODE_SELECTOR", "QGOV_EXECUTOR_TOLERATIONS",
                 "QGOV_EXECUTOR_IMAGE_PULL_SECRETS", "QGOV_EXECUTOR_PRIORITY_CLASS_NAME"):
        monkeypatch.delenv(name, raising=False)
    config = OperatorConfig.from_env()
    pod = executor_pod(JOB, 1, "img", None, None, config.executor_pod)
    assert pod["spec"]["containers"][0]["resources"] == {"requests": {"cpu": "500m", "memory": "512Mi"},
                                                         "limits": {"memory": "4Gi"}}
    assert not {"nodeSelector", "tolerations", "imagePullSecrets", "priorityClassName"} & set(pod["spec"])
    assert pod == executor_pod(JOB, 1, "img")


def test_resources_and_scheduling_come_from_the_operators_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QGOV_EXECUTOR_RESOURCES", '{"requests": {"cpu": "2", "memory": "8Gi"}, "limits": {"memory": "16Gi"}}')
    monkeypatch.setenv("QGOV_EXECUTOR_NODE_SELECTOR", '{"pool": "quantum"}')
    monkeypatch.setenv("QGOV_EXECUTOR_TOLERATIONS", '[{"key": "dedicated", "operator": "Equal", "value": "quantum", '
                                                    '"effect": "NoSchedule"}]')
    monkeypatch.setenv("QGOV_EXECUTOR_IMAGE_PULL_SECRETS", "regcred, mirror")
    monkeypatch.setenv("QGOV_EXECUTOR_PRIORITY_CLASS_NAME", "batch-low")
    settings = OperatorConfig.from_env().executor_pod
    for pod in (executor_pod(JOB, 1, "img", None, None, settings), session_runner_pod(SESSION, "img", None, settings)):
        spec = pod["spec"]
        assert spec["containers"][0]["resources"] == {"requests": {"cpu": "2", "memory": "8Gi"},
                                                      "limits": {"memory": "16Gi"}}
        assert spec["nodeSelector"] == {"pool": "quantum"}
        assert spec["tolerations"] == [{"key": "dedicated", "operator": "Equal", "value": "quantum",
                                        "effect": "NoSchedule"}]
        assert spec["imagePullSecrets"] == [{"name": "regcred"}, {"name": "mirror"}]
        assert spec["priorityClassName"] == "batch-low"
        assert restricted_violations(pod) == []


@pytest.mark.parametrize("name, value, message", [
    ("QGOV_EXECUTOR_RESOURCES", "{cpu: 2}", "QGOV_EXECUTOR_RESOURCES is not JSON"),
    ("QGOV_EXECUTOR_RESOURCES", '{"request": {"cpu": "2"}}', "unknown field(s) ['request']"),
    ("QGOV_EXECUTOR_NODE_SELECTOR", '["pool"]', "QGOV_EXECUTOR_NODE_SELECTOR must be a JSON object"),
    ("QGOV_EXECUTOR_TOLERATIONS", '{"key": "x"}', "QGOV_EXECUTOR_TOLERATIONS must be a JSON list"),
])
def test_a_wrong_setting_stops_the_operator_with_its_name(monkeypatch: pytest.MonkeyPatch, name: str, value: str,
                                                          message: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError) as refused:
        OperatorConfig.from_env()
    assert message in str(refused.value)
