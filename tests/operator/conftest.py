"""End-to-end fixtures: a dev cluster with qgov's CRDs and a real `qgov operator` process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes
import pytest
from kubernetes.client.rest import ApiException

from governance.budget.ledger import Ledger
from governance.devcluster.cluster import DevCluster, ThreadedDevCluster
from governance.devcluster.devmain import install_crds

G, V = "qgov.dev", "v1alpha1"
NS = "team-a"
BELL = ('OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[2];\ncreg c[2];\nh q[0];\ncx q[0],q[1];\n'
        'measure q -> c;\n')
TERMINAL = {"Succeeded", "Failed", "Refused", "Cancelled"}


def _die_with_parent() -> None:
    """Linux: the operator gets SIGKILL if the test process dies without its teardown (a killed
    pytest must not leave operators running against a cluster that is gone)."""
    import ctypes

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class Operator:
    def __init__(self, cluster: DevCluster, database_url: str, log: Path, env: dict[str, str] | None = None) -> None:
        self.cluster, self.database_url, self.log = cluster, database_url, log
        self.extra_env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, "KUBECONFIG": str(self.cluster.kubeconfig), "QGOV_DATABASE_URL": self.database_url,
               "QGOV_RETRY_BASE_SECONDS": "1", "QGOV_STATUS_INTERVAL_SECONDS": "1", **self.extra_env}
        offset = self.log.stat().st_size if self.log.exists() else 0
        self.proc = subprocess.Popen([str(Path(sys.executable).parent / "qgov"), "operator"], env=env,
                                     stdout=open(self.log, "ab"), stderr=subprocess.STDOUT,
                                     preexec_fn=_die_with_parent)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if "qgov operator started" in self.log.read_text(errors="replace")[offset:]:
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"the operator did not start:\n{self.log.read_text(errors='replace')[-3000:]}")

    def kill(self) -> None:
        """SIGKILL: no cleanup, no graceful anything."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@dataclass
class Env:
    cluster: DevCluster
    core: Any
    custom: Any
    operator: Operator
    database_url: str

    def ledger(self) -> Ledger:
        return Ledger(self.database_url)

    def backend(self, name: str, provider: str = "aer", device: str = "aer_simulator", **spec: Any) -> None:
        self.custom.create_cluster_custom_object(G, V, "qiskitbackends", {
            "apiVersion": f"{G}/{V}", "kind": "QiskitBackend", "metadata": {"name": name},
            "spec": {"provider": provider, "name": device, **spec}})

    def budget(self, limit: str, name: str = NS, **spec: Any) -> None:
        self.custom.create_namespaced_custom_object(G, V, NS, "qiskitbudgets", {
            "apiVersion": f"{G}/{V}", "kind": "QiskitBudget", "metadata": {"name": name},
            "spec": {"limit": limit, **spec}})
        self.wait(lambda: self.get("qiskitbudgets", name).get("status", {}).get("limit"), "budget in the ledger")

    def job(self, name: str, backend: str = "priced-aer", circuits: list[str] | None = None, **spec: Any) -> None:
        self.custom.create_namespaced_custom_object(G, V, NS, "qiskitjobs", {
            "apiVersion": f"{G}/{V}", "kind": "QiskitJob", "metadata": {"name": name},
            "spec": {"backend": backend, "circuits": circuits or [BELL], **spec}})

    def get(self, plural: str, name: str) -> dict[str, Any]:
        return self.custom.get_namespaced_custom_object(G, V, NS, plural, name)

    def status(self, name: str) -> dict[str, Any]:
        return self.get("qiskitjobs", name).get("status") or {}

    def jobs(self) -> list[dict[str, Any]]:
        return self.custom.list_namespaced_custom_object(G, V, NS, "qiskitjobs")["items"]

    def wait(self, check, what: str, timeout: float = 120) -> Any:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                last = check()
            except ApiException as exc:
                last = exc
            if last and not isinstance(last, Exception):
                return last
            time.sleep(0.2)
        jobs = {j["metadata"]["name"]: j.get("status") for j in self.jobs()}
        raise AssertionError(f"timed out waiting for {what} (last: {last!r})\njobs: {jobs}\n"
                             f"{self.operator.log.read_text(errors='replace')[-3000:]}")

    def wait_terminal(self, names: list[str], timeout: float = 180) -> dict[str, dict[str, Any]]:
        def done():
            statuses = {n: self.status(n) for n in names}
            return statuses if all(s.get("phase") in TERMINAL for s in statuses.values()) else None
        return self.wait(done, f"jobs {names} to finish", timeout)


@pytest.fixture
def env(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Env]:
    """A dev cluster and a running operator; `@pytest.mark.operator_env(NAME="value")` adds settings,
    `@pytest.mark.no_pod_runner` keeps every pod Pending."""
    holder = ThreadedDevCluster(workdir=tmp_path / "cluster", pods=request.node.get_closest_marker("no_pod_runner") is None)
    cluster = holder.__enter__()
    holder.call(install_crds, cluster)
    api = kubernetes.config.new_client_from_config(config_file=str(cluster.kubeconfig))
    core, custom = kubernetes.client.CoreV1Api(api), kubernetes.client.CustomObjectsApi(api)
    core.create_namespace({"metadata": {"name": NS}})
    marker = request.node.get_closest_marker("operator_env")
    operator = Operator(cluster, f"sqlite:///{tmp_path / 'ledger.db'}", tmp_path / "operator.log",
                        marker.kwargs if marker else None)
    operator.start()
    environment = Env(cluster, core, custom, operator, operator.database_url)
    # 0.30 USD per task, CPU free: every one-circuit job costs exactly 0.30 estimated and actual
    environment.backend("priced-aer", pricing={"perTask": "0.30"}, limits={"maxQubits": 20, "maxShots": 100000,
                                                                           "maxCircuits": 4})
    yield environment
    operator.stop()
    api.close()
    holder.__exit__(None, None, None)
