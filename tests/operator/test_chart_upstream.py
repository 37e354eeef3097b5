"""The Helm chart on the real control plane: `helm install` (CRDs, RBAC, the operator Deployment,
run by the test node as `qgov operator`), a job admitted and settled in the ledger, `helm upgrade`
of a setting, and `helm uninstall` with a job in flight, as docs/platform/helm.md tells it.

Its own cluster, without the kustomize install: the chart's cluster-wide objects have the same
names (the operator binds the ClusterRole qgov-executor by name), and Helm adopts nothing it did not
create. One replica: the test node runs every pod in the host's network on 127.0.0.1, so two
operator pods would share their ports (a real cluster gives each pod its own address)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest
from kubernetes.client.rest import ApiException

from governance.budget.ledger import Ledger
from qgov_dev.devcluster.controlplane import ControlPlaneError, free_port, tool
from qgov_dev.devcluster.upstream import UpstreamCluster

from .conftest import BELL, NS, TERMINAL, G, V, wait_for

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "qgov"
RELEASE, SYSTEM = "qgov", "qgov-system"
UNBUDGETED = "team-b"


@pytest.fixture(scope="module")
def bare_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpstreamCluster]:
    cluster = UpstreamCluster(tmp_path_factory.mktemp("helm-upstream"), manifests=False)
    try:
        cluster.start()
    except ControlPlaneError as exc:
        pytest.fail(f"the chart's install test needs the upstream control plane: {exc}", pytrace=False)
    yield cluster
    cluster.stop()


class Helm:
    def __init__(self, cluster: UpstreamCluster, home: Path) -> None:
        self.cluster, self.binary = cluster, str(tool("helm"))
        self.env = {"HELM_CACHE_HOME": str(home / "cache"), "HELM_CONFIG_HOME": str(home / "config"),
                    "HELM_DATA_HOME": str(home / "data"), "HOME": str(home), "PATH": "/usr/bin:/bin"}
        self.api = kubernetes.config.new_client_from_config(config_file=str(cluster.kubeconfig))
        self.core, self.custom = kubernetes.client.CoreV1Api(self.api), kubernetes.client.CustomObjectsApi(self.api)
        self.log: list[str] = []

    def __call__(self, *args: str, timeout: float = 240) -> str:
        started = time.monotonic()
        result = subprocess.run([self.binary, "--kubeconfig", str(self.cluster.kubeconfig), *args],
                                check=False, capture_output=True, text=True, env=self.env, timeout=timeout)
        out = result.stdout + result.stderr
        self.log.append(f"$ helm {' '.join(args)}   ({time.monotonic() - started:.1f} s)\n{out}")
        assert result.returncode == 0, f"helm {' '.join(args)} failed:\n{out}\n{self.operator_log()}"
        return out

    def operator_pods(self) -> list[Any]:
        pods = self.core.list_namespaced_pod(SYSTEM, label_selector="app.kubernetes.io/name=qgov-operator").items
        return [p for p in pods if not p.metadata.deletion_timestamp]

    def operator_log(self) -> str:
        return self.cluster.kubectl("logs", "-n", SYSTEM, "deployment/qgov-operator", "--tail=30", check=False)

    def wait(self, check: Any, what: str, timeout: float = 120) -> Any:
        return wait_for(check, what, timeout, details=lambda: f"operator log:\n{self.operator_log()}")

    def create(self, kind: str, plural: str, name: str, spec: dict[str, Any], namespace: str | None = NS) -> None:
        body = {"apiVersion": f"{G}/{V}", "kind": kind, "metadata": {"name": name}, "spec": spec}
        if namespace is None:
            self.custom.create_cluster_custom_object(G, V, plural, body)
        else:
            self.custom.create_namespaced_custom_object(G, V, namespace, plural, body)

    def job(self, name: str, namespace: str = NS) -> dict[str, Any]:
        return self.custom.get_namespaced_custom_object(G, V, namespace, "qiskitjobs", name)

    def final(self, name: str, namespace: str = NS, timeout: float = 120) -> dict[str, Any]:
        return self.wait(lambda: (s := self.job(name, namespace).get("status") or {}).get("phase") in TERMINAL and s,
                         f"job {namespace}/{name} to finish", timeout)


def env_of(pod: Any) -> dict[str, str]:
    return {e.name: e.value for e in pod.spec.containers[0].env or [] if e.value is not None}


@pytest.mark.slow
def test_helm_install_upgrade_and_uninstall(bare_cluster: UpstreamCluster, tmp_path: Path) -> None:
    helm = Helm(bare_cluster, tmp_path / "helm-home")
    ledger_url = f"sqlite:///{tmp_path / 'ledger.db'}"
    metrics_port = free_port()
    install = ("install", RELEASE, str(CHART), "--namespace", SYSTEM, "--create-namespace", "--wait",
               "--timeout", "3m", "--set", f"ledger.url={ledger_url}",
               "--set", f"metrics.port={metrics_port}", "--set", "config.podSweepSeconds=5",
               "--set", "executorImage.pullPolicy=Never")
    try:
        # ------------------------------------------------------------ install
        out = helm(*install)
        assert "STATUS: deployed" in out and "qgov 0.1.0 is installed in namespace qgov-system" in out
        pods = helm.operator_pods()  # the chart's default: two replicas, one acting (a Lease)
        assert len(pods) == 2 and all(p.status.phase == "Running" for p in pods)
        assert all(p.spec.service_account_name == "qgov-operator" for p in pods)
        assert all(env_of(p)["QGOV_POD_SWEEP_SECONDS"] == "5" for p in pods)
        crds = bare_cluster.kubectl("get", "crd", "-o", "name")
        assert all(f"{p}.qgov.dev" in crds for p in ("qiskitjobs", "qiskitbudgets", "qiskitbackends", "qiskitsessions"))

        helm.core.create_namespace({"metadata": {"name": NS}})
        helm.create("QiskitBackend", "qiskitbackends", "priced-aer",
                    {"provider": "aer", "name": "aer_simulator", "pricing": {"perTask": "0.30"}}, namespace=None)
        helm.create("QiskitBudget", "qiskitbudgets", NS, {"limit": "1.00"})
        helm.create("QiskitJob", "qiskitjobs", "bell", {"backend": "priced-aer", "circuits": [BELL], "shots": 1000})
        status = helm.final("bell")
        assert status["phase"] == "Succeeded" and status["actualCost"] == "0.30", status
        # its executor pod as the values said (Kubernetes' default for a tagged image: IfNotPresent)
        executor = helm.core.read_namespaced_pod(status["podName"], NS).spec.containers[0]
        assert (executor.image, executor.image_pull_policy) == ("ghcr.io/qgov/executor:0.1.0", "Never")
        # settled in the ledger: the reservation by the job's UID, at the job's charge
        uid = helm.job("bell")["metadata"]["uid"]
        ledger = Ledger(ledger_url)
        try:
            row = ledger.reservation(uid)
            assert (row.state, row.actual_micro) == ("settled", 300_000), row
        finally:
            ledger.close()
        # the chart's metrics port is the one each replica serves, on its pod's address; the acting
        # replica's shows the settlement, the standby's says it is not acting
        scrapes, token = [], bare_cluster.metrics_token()  # a ServiceAccount bound to the chart's qgov-metrics-reader
        for pod in pods:
            request = urllib.request.Request(f"http://{pod.status.pod_ip}:{metrics_port}/metrics",
                                             headers={"Authorization": f"Bearer {token}"})
            with urllib.request.urlopen(request, timeout=10) as answer:
                scrapes.append(answer.read().decode())
        acting = [m for m in scrapes if "\nqgov_leader 1.0" in m]
        assert len(acting) == 1 and sum("\nqgov_leader 0.0" in m for m in scrapes) == 1
        assert 'qgov_settlements_total{budget="team-a",namespace="team-a"} 1.0' in acting[0]

        # ------------------------------------------------------------ upgrade: a changed setting
        helm.core.create_namespace({"metadata": {"name": UNBUDGETED}})
        helm.create("QiskitJob", "qiskitjobs", "before", {"backend": "priced-aer", "circuits": [BELL], "shots": 100},
                    namespace=UNBUDGETED)
        refused = helm.final("before", UNBUDGETED)
        assert refused["phase"] == "Refused" and "QiskitBudget" in refused["message"], refused
        old = {p.metadata.name for p in helm.operator_pods()}
        helm("upgrade", RELEASE, str(CHART), "--namespace", SYSTEM, "--reuse-values", "--wait", "--timeout", "3m",
             "--set", "config.allowUnbudgeted=true")
        new = helm.wait(lambda: (ps := helm.operator_pods()) and len(ps) == 2 and all(
            p.metadata.name not in old and p.status.phase == "Running" for p in ps) and ps, "the upgrade's pods alone")
        assert all(env_of(p)["QGOV_ALLOW_UNBUDGETED"] == "true" for p in new)
        helm.create("QiskitJob", "qiskitjobs", "after", {"backend": "priced-aer", "circuits": [BELL], "shots": 100},
                    namespace=UNBUDGETED)
        admitted = helm.final("after", UNBUDGETED)
        assert admitted["phase"] == "Succeeded", admitted
        assert helm.job("before", UNBUDGETED)["status"]["phase"] == "Refused"  # a decision made stays made

        # ------------------------------------------------------------ uninstall with a job in flight
        bare_cluster.set_schedulable(False)  # its executor pod waits, Pending, while the operator goes
        helm.create("QiskitJob", "qiskitjobs", "in-flight", {"backend": "priced-aer", "circuits": [BELL], "shots": 100})
        pod_name = helm.wait(lambda: (helm.job("in-flight").get("status") or {}).get("podName"), "the job's pod")
        assert helm.job("in-flight")["status"]["phase"] in ("Admitted", "Running")
        out = helm("uninstall", RELEASE, "--namespace", SYSTEM, "--wait")
        assert "uninstalled" in out
        helm.wait(lambda: not helm.operator_pods(), "the operator pods to go")
        # the CRDs and every qgov object stay; the job keeps its status; the RBAC and the Secret go
        assert "qiskitjobs.qgov.dev" in bare_cluster.kubectl("get", "crd", "-o", "name")
        assert helm.job("bell")["status"]["phase"] == "Succeeded"
        assert helm.job("in-flight")["status"]["phase"] in ("Admitted", "Running")
        assert helm.custom.get_namespaced_custom_object(G, V, NS, "qiskitbudgets", NS)["status"]["spent"] == "0.30"
        rbac = kubernetes.client.RbacAuthorizationV1Api(helm.api)
        for read in (lambda: rbac.read_cluster_role("qgov-executor"), lambda: rbac.read_cluster_role("qgov-operator"),
                     lambda: helm.core.read_namespaced_secret("qgov-ledger", SYSTEM)):
            with pytest.raises(ApiException) as gone:
                read()
            assert gone.value.status == 404
        # what the operator made in the team namespace is not Helm's: it stays
        assert helm.core.read_namespaced_service_account("qgov-executor", NS)
        # the executor pod belongs to its job, not to the release: it is still there, and runs
        bare_cluster.set_schedulable(True)
        pod = helm.wait(lambda: (p := helm.core.read_namespaced_pod(pod_name, NS)).status.phase in ("Succeeded", "Failed")
                        and p, "the orphaned executor pod to end", timeout=90)
        # ... without its RBAC: the ClusterRole qgov-executor went with the release, so the RoleBinding
        # the operator made in team-a grants nothing, and the executor cannot read its job
        terminated = pod.status.container_statuses[0].state.terminated
        assert pod.status.phase == "Failed" and terminated.exit_code == 1, pod.status
        error = json.loads(terminated.message)["error"]
        assert 'clusterrole.rbac.authorization.k8s.io "qgov-executor" not found' in error, error
        # nobody acts meanwhile: the job is not settled, a new job gets no status, a deleted one stays
        # (the ledger's finalizer waits for the operator)
        helm.create("QiskitJob", "qiskitjobs", "while-away", {"backend": "priced-aer", "circuits": [BELL], "shots": 100})
        bare_cluster.kubectl("delete", "qiskitjob", "bell", "-n", NS, "--wait=false")
        time.sleep(3)
        assert helm.job("in-flight")["status"]["phase"] in ("Admitted", "Running")
        assert not helm.job("while-away").get("status")
        assert helm.job("bell")["metadata"]["deletionTimestamp"] and "qgov.dev/ledger" in helm.job("bell")["metadata"][
            "finalizers"]

        # ------------------------------------------------------------ install again: the job settles, once
        helm(*install)
        assert helm.final("while-away")["phase"] == "Succeeded"
        helm.wait(lambda: "bell" not in {j["metadata"]["name"] for j in helm.custom.list_namespaced_custom_object(
            G, V, NS, "qiskitjobs")["items"]}, "the deleted job to go")
        status = helm.final("in-flight")
        # the lost attempt is retried (it counts against spec.backoffLimit), and charged once
        assert status["phase"] == "Succeeded" and status["actualCost"] == "0.30" and status["attempts"] == 2, status
        ledger = Ledger(ledger_url)
        try:
            row = ledger.reservation(helm.job("in-flight")["metadata"]["uid"])
            assert (row.state, row.actual_micro) == ("settled", 300_000), row
        finally:
            ledger.close()
        audit = subprocess.run([str(Path(sys.executable).parent / "qgov"), "ledger", "audit",
                                "--database-url", ledger_url, "--kubeconfig", str(bare_cluster.kubeconfig)],
                               check=False, capture_output=True, text=True, timeout=120)
        assert audit.returncode == 0, audit.stdout + audit.stderr
    finally:
        print("\n".join(helm.log))
        print(bare_cluster.kubectl("get", "pods", "-A", "-o", "wide", check=False))
        helm.api.close()
