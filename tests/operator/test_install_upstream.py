"""The install as docs/platform/install.md gives it, on the real control plane: `kubectl apply -k
operator/manifests`, the ledger Secret, and the manifests' own Deployment running the operator
(in-cluster configuration, ServiceAccount qgov-operator, exactly the manifests' ClusterRole).
Executor pods run as qgov-executor, which the operator provides in each budget's namespace; where
it may not, the job says why it waits instead of stalling silently."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest

from executor.attempt import read_result

from .conftest import BELL, G, NS, V, condition, wait_for

TERMINAL = {"Succeeded", "Failed", "Refused", "Cancelled"}


class Installed:
    def __init__(self, upstream: Any, operator_pod: dict[str, Any]) -> None:
        self.upstream, self.operator_pod = upstream, operator_pod
        self.api = kubernetes.config.new_client_from_config(config_file=str(upstream.kubeconfig))
        self.core, self.custom = kubernetes.client.CoreV1Api(self.api), kubernetes.client.CustomObjectsApi(self.api)

    def apply(self, kind: str, plural: str, name: str, spec: dict[str, Any], namespace: str | None = NS) -> None:
        body = {"apiVersion": f"{G}/{V}", "kind": kind, "metadata": {"name": name}, "spec": spec}
        if namespace is None:
            self.custom.create_cluster_custom_object(G, V, plural, body)
        else:
            self.custom.create_namespaced_custom_object(G, V, namespace, plural, body)

    def job(self, name: str) -> dict[str, Any]:
        return self.custom.get_namespaced_custom_object(G, V, NS, "qiskitjobs", name)

    def wait(self, check: Any, what: str, timeout: float = 120) -> Any:
        return wait_for(check, what, timeout, details=lambda: "operator log:\n" + self.upstream.kubectl(
            "logs", "-n", "qgov-system", "deployment/qgov-operator", "--tail=40", check=False))


def _installed(upstream: Any, tmp_path: Path, **env: str) -> Iterator[Installed]:
    upstream.reset((NS,))
    pod = upstream.start_operator_deployment(f"sqlite:///{tmp_path / 'ledger.db'}",
                                             {"QGOV_PROVISION_EXECUTOR_IDENTITY": "true", **env})
    installed = Installed(upstream, pod)
    installed.core.create_namespace({"metadata": {"name": NS}})
    installed.apply("QiskitBackend", "qiskitbackends", "priced-aer",
                    {"provider": "aer", "name": "aer_simulator", "pricing": {"perTask": "0.30"}}, namespace=None)
    try:
        yield installed
    finally:
        upstream.stop_operator_deployment()
        upstream.reset((NS,))
        installed.api.close()


@pytest.fixture
def installed(upstream_cluster: Any, tmp_path: Path) -> Iterator[Installed]:
    yield from _installed(upstream_cluster, tmp_path)


@pytest.fixture
def installed_without_identities(upstream_cluster: Any, tmp_path: Path) -> Iterator[Installed]:
    yield from _installed(upstream_cluster, tmp_path, QGOV_PROVISION_EXECUTOR_IDENTITY="false")


def test_the_manifests_deployment_runs_a_job_under_rbac(installed: Installed) -> None:
    # the operator is the manifests' pod, as ServiceAccount qgov-operator
    assert installed.operator_pod["spec"]["serviceAccountName"] == "qgov-operator"
    assert installed.operator_pod["metadata"]["namespace"] == "qgov-system"
    installed.apply("QiskitBudget", "qiskitbudgets", NS, {"limit": "1.00"})
    installed.apply("QiskitJob", "qiskitjobs", "bell", {"backend": "priced-aer", "circuits": [BELL], "shots": 1000})
    status = installed.wait(lambda: (s := installed.job("bell").get("status") or {}).get("phase") in TERMINAL and s,
                            "the job to finish")
    assert status["phase"] == "Succeeded", status
    assert status["actualCost"] == "0.30"
    counts = read_result(installed.core, NS, status["resultConfigMap"])["circuits"][0]["counts"]
    assert sum(counts.values()) == 1000
    # the operator gave the namespace the executor's identity, and the pod ran as it
    assert installed.core.read_namespaced_service_account("qgov-executor", NS).metadata.labels == {
        "app.kubernetes.io/managed-by": "qgov"}
    binding = kubernetes.client.RbacAuthorizationV1Api(installed.api).read_namespaced_role_binding("qgov-executor", NS)
    assert binding.role_ref.name == "qgov-executor"
    pod = installed.core.read_namespaced_pod(status["podName"], NS)
    assert pod.spec.service_account_name == "qgov-executor"
    # its logs come through the API server from the node's kubelet port
    log = installed.upstream.kubectl("logs", "-n", NS, status["podName"])
    assert '"usage"' in log
    # the budget's status says it, written by the operator under its RBAC
    installed.wait(lambda: (installed.custom.get_namespaced_custom_object(G, V, NS, "qiskitbudgets", NS).get("status")
                            or {}).get("spent") == "0.30", "the budget's status")


def test_without_the_executor_account_a_job_says_why_it_waits(installed_without_identities: Installed) -> None:
    installed = installed_without_identities
    installed.apply("QiskitBudget", "qiskitbudgets", NS, {"limit": "1.00"})
    installed.apply("QiskitJob", "qiskitjobs", "bell", {"backend": "priced-aer", "circuits": [BELL], "shots": 100})
    stalled = installed.wait(lambda: condition(installed.job("bell"), "Stalled"), "a Stalled condition")
    assert stalled["status"] == "True" and stalled["reason"] == "ServiceAccountMissing"
    assert "ServiceAccount qgov-executor does not exist" in stalled["message"]
    # the Event is posted after the condition is written (kopf's event queue): it may trail by a moment
    events = installed.wait(lambda: [e for e in installed.core.list_namespaced_event(NS).items
                                     if e.reason == "ServiceAccountMissing"], "the ServiceAccountMissing Event", 30)
    assert events[0].type == "Warning"
    assert installed.core.list_namespaced_pod(NS).items == []
    # a platform team creates the identity: the job runs, nothing was charged twice
    installed.core.create_namespaced_service_account(NS, {"metadata": {"name": "qgov-executor"}})
    kubernetes.client.RbacAuthorizationV1Api(installed.api).create_namespaced_role_binding(NS, {
        "metadata": {"name": "qgov-executor"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "qgov-executor"},
        "subjects": [{"kind": "ServiceAccount", "name": "qgov-executor", "namespace": NS}]})
    status = installed.wait(lambda: (s := installed.job("bell").get("status") or {}).get("phase") in TERMINAL and s,
                            "the job to finish once the account exists", timeout=150)
    assert status["phase"] == "Succeeded" and status["actualCost"] == "0.30", json.dumps(status)
