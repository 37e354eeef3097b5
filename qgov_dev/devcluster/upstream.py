"""`qgov dev --cluster upstream`: a real control plane and a node, with qgov installed the way the
docs tell a user (`kubectl apply -k operator/manifests`, docs/platform/install.md), for tests, benchmarks and trying.

The operator either runs as the manifests' own Deployment (`start_operator_deployment`: the
node maps its image to the local `qgov operator`; in-cluster configuration, ServiceAccount
`qgov-operator`), or as a local process holding that ServiceAccount's token (`operator_kubeconfig`),
which tests use to kill and restart it at will. Either way RBAC judges it by the manifests'
ClusterRole, and executor pods run as `qgov-executor`.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import kubernetes
from kubernetes.client.rest import ApiException

from .bed import Bed
from .controlplane import ControlPlane, kubeconfig_text
from .node import Node, node_kubeconfig

# the real control plane is a source checkout's tool: it applies operator/manifests with kubectl -k
# (which reads ../../crds) and runs binaries built by scripts/kube-binaries.sh; a wheel carries neither
ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "operator" / "manifests"
SYSTEM_NAMESPACE = "qgov-system"
OPERATOR_ACCOUNT = "qgov-operator"
DEPLOYMENT = "qgov-operator"
G, V = "qgov.dev", "v1alpha1"


def kubectl_binary() -> str:
    return shutil.which("kubectl") or str(Path(sys.executable).parent / "kubectl")


class UpstreamCluster:
    """Control plane + node + qgov's manifests applied. The operator Deployment is scaled to 0
    until `start_operator_deployment` (the manifests' ledger Secret is the user's to create)."""

    def __init__(self, workdir: Path, *, node_env: dict[str, str] | None = None, manifests: bool = True) -> None:
        self.workdir = workdir
        self.manifests = manifests  # False: a bare cluster, for an install by other means (the Helm chart)
        self.bed: Bed | None = None  # claimed at start: the pods' addresses, and nothing outlives the bed
        self.control_plane = ControlPlane(workdir / "control-plane")
        self.node: Node | None = None
        self.node_env = dict(node_env or {})
        if os.environ.get("PYTHONPATH"):  # a checkout that is not the installed one: its pods run it too
            self.node_env.setdefault("PYTHONPATH", os.environ["PYTHONPATH"])
        self.api: kubernetes.client.ApiClient | None = None

    @property
    def kubeconfig(self) -> Path:
        return self.control_plane.kubeconfig

    @property
    def url(self) -> str:
        return self.control_plane.url

    def start(self) -> UpstreamCluster:
        started = time.monotonic()
        self.bed = self.control_plane.bed = Bed.claim()
        try:
            self.control_plane.start()
            self.node = Node(node_kubeconfig(self.control_plane), self.control_plane.pki,
                             workdir=self.workdir / "node", api_server=self.control_plane.url, extra_env=self.node_env,
                             bed=self.bed)
            self.node.start()
            self.api = kubernetes.config.new_client_from_config(config_file=str(self.kubeconfig))
            if self.manifests:
                self.kubectl("apply", "-k", str(MANIFESTS))
                self.kubectl("scale", "deployment", DEPLOYMENT, "-n", SYSTEM_NAMESPACE, "--replicas=0")
                self.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
        except BaseException:
            self.stop()
            raise
        self.started_in = time.monotonic() - started
        return self

    def stop(self) -> None:
        if self.node is not None:
            self.node.stop()
            self.node = None
        if self.api is not None:
            self.api.close()
            self.api = None
        self.control_plane.stop()
        if self.bed is not None:
            self.bed.close()
            self.bed = None

    # ------------------------------------------------------------------ helpers

    def kubectl(self, *args: str, check: bool = True, input: str | None = None) -> str:
        result = subprocess.run([kubectl_binary(), "--kubeconfig", str(self.kubeconfig), *args], capture_output=True,
                                text=True, timeout=120, input=input)
        if check and result.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
        return result.stdout + result.stderr

    def token(self, namespace: str, account: str, seconds: int = 86400) -> str:
        core = kubernetes.client.CoreV1Api(self.api)
        answer = core.create_namespaced_service_account_token(account, namespace, {
            "spec": {"expirationSeconds": seconds}})
        return str(answer.status.token)

    def metrics_token(self, bound: bool = True) -> str:
        """A bearer token for scraping /metrics: the ServiceAccount default/metrics-scraper, bound to
        the ClusterRole qgov-metrics-reader (what a Prometheus is given); `bound=False`: the
        ServiceAccount default/metrics-stranger, known to the API server but granted nothing."""
        core = kubernetes.client.CoreV1Api(self.api)
        account = "metrics-scraper" if bound else "metrics-stranger"
        _ignore_conflict(core.create_namespaced_service_account, "default", {"metadata": {"name": account}})
        if bound:
            rbac = kubernetes.client.RbacAuthorizationV1Api(self.api)
            _ignore_conflict(rbac.create_cluster_role_binding, {
                "metadata": {"name": "qgov-metrics-scraper"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                            "name": "qgov-metrics-reader"},
                "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": "default"}]})
        return self.token("default", account)

    def operator_kubeconfig(self) -> Path:
        """A kubeconfig that is the ServiceAccount qgov-operator (a TokenRequest token): what the
        Deployment's pod would be, for an operator run as a local process."""
        path = self.workdir / "operator.kubeconfig"
        path.write_text(kubeconfig_text(self.url, self.control_plane.pki.pair.cert,
                                        token=self.token(SYSTEM_NAMESPACE, OPERATOR_ACCOUNT), user=OPERATOR_ACCOUNT))
        return path

    def set_schedulable(self, schedulable: bool) -> None:
        """Cordon or uncordon the node: cordoned, new pods stay Pending (Unschedulable)."""
        assert self.node is not None
        self.kubectl("uncordon" if schedulable else "cordon", self.node.name)

    def start_operator_deployment(self, database_url: str, env: dict[str, str] | None = None,
                                  timeout: float = 120, replicas: int = 1) -> dict[str, Any]:
        """The user's last install step: the ledger Secret, then the Deployment at `replicas` (the
        manifests say 2: one acts, one stands by; most tests need one). Returns an operator pod
        once `replicas` of them are Running (`operator_pods()` lists them all)."""
        core = kubernetes.client.CoreV1Api(self.api)
        secret = {"metadata": {"name": "qgov-ledger", "namespace": SYSTEM_NAMESPACE},
                  "data": {"url": base64.b64encode(database_url.encode()).decode()}}
        try:
            core.create_namespaced_secret(SYSTEM_NAMESPACE, secret)
        except ApiException as exc:
            if exc.status != 409:
                raise
            core.replace_namespaced_secret("qgov-ledger", SYSTEM_NAMESPACE, secret)
        if env:
            self.kubectl("set", "env", f"deployment/{DEPLOYMENT}", "-n", SYSTEM_NAMESPACE,
                         *(f"{k}={v}" for k, v in env.items()))
        self.kubectl("scale", "deployment", DEPLOYMENT, "-n", SYSTEM_NAMESPACE, f"--replicas={replicas}")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            running = self.operator_pods()
            if len(running) >= replicas:
                return running[0]
            time.sleep(0.3)
        raise RuntimeError(f"the operator Deployment has no running pod after {timeout:.0f} s:\n"
                           + self.kubectl("describe", "deployment,rs,pods", "-n", SYSTEM_NAMESPACE, check=False)[-3000:])

    def operator_pods(self) -> list[dict[str, Any]]:
        """The operator Deployment's Running pods (not those being deleted)."""
        core = kubernetes.client.CoreV1Api(self.api)
        pods = core.list_namespaced_pod(SYSTEM_NAMESPACE, label_selector="app.kubernetes.io/name=qgov-operator")
        return [dict(self.api.sanitize_for_serialization(p)) for p in pods.items  # type: ignore[union-attr]
                if p.status.phase == "Running" and not p.metadata.deletion_timestamp]

    def pod_process(self, namespace: str, name: str) -> int | None:
        """The pid of the process the node runs for this pod (its process group's leader), if running."""
        assert self.node is not None
        uid = self.node.runner.names.get((namespace, name))
        proc = self.node.runner.processes.get(uid) if uid else None
        return proc.pid if proc is not None and proc.returncode is None else None

    def stop_operator_deployment(self) -> None:
        self.kubectl("scale", "deployment", DEPLOYMENT, "-n", SYSTEM_NAMESPACE, "--replicas=0")

    def reset(self, namespaces: tuple[str, ...]) -> None:
        """Remove what a test left: its namespaces (finalizers a stopped operator could not take off
        are taken off, as an admin would, again while the namespace drains: an operator that was
        still stopping may have put one back) and every QiskitBackend."""
        custom = kubernetes.client.CustomObjectsApi(self.api)
        core = kubernetes.client.CoreV1Api(self.api)
        for namespace in namespaces:
            self._strip_finalizers(custom, namespace)
            try:  # the test is over: its pods go at once (the namespace controller would give each its grace)
                core.delete_collection_namespaced_pod(namespace, grace_period_seconds=0)
            except ApiException as exc:  # hundreds of pods can outlast the request (504): the namespace's
                if exc.status not in (404, 409, 504):  # deletion goes on with what is left
                    raise
            _ignore_gone(core.delete_namespace, namespace)
        for obj in custom.list_cluster_custom_object(G, V, "qiskitbackends")["items"]:
            _ignore_gone(custom.delete_cluster_custom_object, G, V, "qiskitbackends", obj["metadata"]["name"])
        deadline = time.monotonic() + 180
        for namespace in namespaces:
            stripped = time.monotonic()
            while time.monotonic() < deadline:
                try:
                    core.read_namespace(namespace)
                except ApiException as exc:
                    if exc.status == 404:
                        break
                    raise
                if time.monotonic() - stripped > 5:
                    self._strip_finalizers(custom, namespace)
                    stripped = time.monotonic()
                time.sleep(0.2)
            else:
                raise RuntimeError(f"namespace {namespace} was not deleted within 180 s:\n"
                                   + self.kubectl("get", "namespace", namespace, "-o", "yaml", check=False)[-2000:])

    @staticmethod
    def _strip_finalizers(custom: Any, namespace: str) -> None:
        for plural in ("qiskitjobs", "qiskitsessions", "qiskitbudgets"):
            try:
                items = custom.list_namespaced_custom_object(G, V, namespace, plural)["items"]
            except ApiException as exc:
                if exc.status == 404:
                    return
                raise
            for obj in items:
                if obj["metadata"].get("finalizers"):
                    _ignore_gone(custom.patch_namespaced_custom_object, G, V, namespace, plural,
                                 obj["metadata"]["name"], {"metadata": {"finalizers": None}})


def _ignore_conflict(call: Any, *args: Any) -> None:
    try:
        call(*args)
    except ApiException as exc:
        if exc.status != 409:
            raise


def _ignore_gone(call: Any, *args: Any) -> None:
    try:
        call(*args)
    except ApiException as exc:
        if exc.status not in (404, 409):
            raise
