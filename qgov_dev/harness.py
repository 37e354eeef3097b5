"""The end-to-end test bed's harness: a real `qgov operator` process against a dev cluster, the
environment the e2e tests and bench/chaos.py drive (jobs, budgets, waits), and the chaos set-up
with a throwaway PostgreSQL ledger. The tests' fixtures (tests/operator/conftest.py) and the
benchmarks (bench/) both build on it, so a benchmark never imports the test suite."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes
import yaml
from kubernetes.client.rest import ApiException

from governance.budget.ledger import Ledger
from qgov_dev.devcluster.cluster import DevCluster, ThreadedDevCluster
from qgov_dev.devcluster.devmain import install_crds
from qgov_dev.devcluster.upstream import MANIFESTS
from qgov_dev.testing import pgserver


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
    def __init__(self, cluster: Any, database_url: str, log: Path, env: dict[str, str] | None = None,
                 kubeconfig: Path | None = None) -> None:
        """`kubeconfig`: who the operator is (on the real cluster, the ServiceAccount qgov-operator);
        by default the cluster's own kubeconfig."""
        self.cluster, self.database_url, self.log = cluster, database_url, log
        self.kubeconfig = kubeconfig or cluster.kubeconfig
        self.extra_env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig), "QGOV_DATABASE_URL": self.database_url,
               "QGOV_RETRY_BASE_SECONDS": "1", "QGOV_STATUS_INTERVAL_SECONDS": "1",
               "QGOV_METRICS_PORT": "0",  # tests that scrape pick a free port
               "QGOV_COST_API_PORT": "0",  # (and those that read costs)
               # the emulator serves no TokenReview or SubjectAccessReview: its scrapes carry no token
               **({} if hasattr(self.cluster, "metrics_token") else {"QGOV_METRICS_AUTH": "none"}),
               **self.extra_env}
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

    def job(self, name: str, backend: str = "priced-aer", circuits: list[str] | None = None,
            labels: dict[str, str] | None = None, **spec: Any) -> None:
        self.custom.create_namespaced_custom_object(G, V, NS, "qiskitjobs", {
            "apiVersion": f"{G}/{V}", "kind": "QiskitJob", "metadata": {"name": name, "labels": labels or {}},
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


# ---------------------------------------------------------------------- chaos: PostgreSQL, two operators


@dataclass
class ChaosEnv(Env):
    """`env` with the ledger on PostgreSQL, on a throwaway server of its own (stopping it disturbs
    no other test), and room for more `qgov operator` processes against the same cluster and ledger
    (a rolling update, a failover). Everything here is also what bench/chaos.py drives."""

    pg: pgserver.PostgresServer | None = None
    workdir: Path | None = None
    operator_env: dict[str, str] | None = None
    operators: list[Operator] | None = None
    holder: ThreadedDevCluster | None = None

    def new_operator(self, label: str) -> Operator:
        """One more operator process (not started), with its own log file."""
        assert self.workdir is not None and self.operators is not None
        op = Operator(self.cluster, self.database_url, self.workdir / f"operator-{label}.log", self.operator_env)
        self.operators.append(op)
        return op

    def logs(self) -> str:
        """Every operator's log, each headed by its file name."""
        return "\n".join(f"==> {op.log.name} <==\n{op.log.read_text(errors='replace')}"
                         for op in self.operators or [] if op.log.exists())

    def pods_of_jobs(self) -> dict[str, list[str]]:
        """Job name -> the executor pods that exist for it (every attempt that got a pod)."""
        import json

        found: dict[str, list[str]] = {}
        answer = self.core.list_namespaced_pod(NS, label_selector=JOB_LABEL_KEY, _preload_content=False)
        for pod in json.loads(answer.data)["items"]:
            found.setdefault(pod["metadata"]["labels"][JOB_LABEL_KEY], []).append(pod["metadata"]["name"])
        return found

    def events_of(self, name: str) -> list[Any]:
        return [e for e in self.core.list_namespaced_event(NS).items
                if e.involved_object is not None and e.involved_object.name == name]


JOB_LABEL_KEY = "qgov.dev/job"


class StandInKubelet:
    """Stands in for the dev cluster's pod runner where a scenario needs hundreds of executor pods
    (a real one costs a Python, qiskit and Aer start-up, seconds of CPU on this 2-core machine).
    Each executor pod goes Pending → Running → Succeeded as the pod runner moves it, through the
    API server's store, and reports in its termination message what the real executor reports for
    a one-circuit job of 100 shots on Aer: 1 task, so 0.30 USD on `priced-aer`. The operator sees
    nothing different: the same watch events, the same status fields. Runs on the cluster's loop."""

    def __init__(self, holder: ThreadedDevCluster, *, start_after: float = 0.3, run_seconds: float = 1.5) -> None:
        self.holder, self.start_after, self.run_seconds = holder, start_after, run_seconds
        self.tasks: dict[str, Any] = {}
        assert holder.cluster is not None
        self.store = holder.cluster.store
        holder.call(self.store.listeners.append, self._on_event)

    def _on_event(self, rtype: Any, event: Any) -> None:
        import asyncio

        if rtype.key != ("", "pods"):
            return
        meta = event.obj["metadata"]
        if event.type == "DELETED" or meta.get("deletionTimestamp"):
            task = self.tasks.pop(meta["uid"], None)
            if task is not None:
                task.cancel()
            return
        if event.type == "ADDED" and JOB_LABEL_KEY in (meta.get("labels") or {}):
            self.tasks[meta["uid"]] = asyncio.get_running_loop().create_task(self._run(event.obj))

    def _set(self, pod: dict[str, Any], **status: Any) -> bool:
        """As the pod runner writes a pod's status (the same PodSource)."""
        from qgov_dev.devcluster.kubelet import StorePods

        return StorePods(self.store).set_status(pod, status)

    async def _run(self, pod: dict[str, Any]) -> None:
        import asyncio
        import json

        from qgov_dev.devcluster.store import now_iso

        container = pod["spec"]["containers"][0]
        base = {"name": container["name"], "image": container.get("image", ""), "imageID": "", "restartCount": 0}
        await asyncio.sleep(self.start_after)
        started = now_iso()
        if not self._set(pod, phase="Running", startTime=started, containerStatuses=[
                {**base, "ready": True, "started": True, "state": {"running": {"startedAt": started}}}]):
            return
        await asyncio.sleep(self.run_seconds)
        report = {"usage": {"cpuSeconds": "0.41", "shots": "100", "tasks": "1"},
                  "resultConfigMap": f"{pod['metadata']['labels'][JOB_LABEL_KEY]}-result"}
        self._set(pod, phase="Succeeded", containerStatuses=[{**base, "ready": False, "started": False, "state": {
            "terminated": {"exitCode": 0, "reason": "Completed", "startedAt": started, "finishedAt": now_iso(),
                           "message": json.dumps(report)}}}])
        self.tasks.pop(pod["metadata"]["uid"], None)


def wait_for(check: Any, what: str, timeout: float, interval: float = 0.3, details: Any = None) -> Any:
    """Poll `check` until it returns something truthy (returned); else fail saying what was awaited
    and, if `details` is given, what it returns (an operator's log, say)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}" + (f"\n{details()}" if details else ""))


def condition(obj: dict[str, Any] | None, type_: str) -> dict[str, Any] | None:
    for c in ((obj or {}).get("status") or {}).get("conditions") or []:
        if c.get("type") == type_:
            return c
    return None


def upgrade_ledger(url: str, operator_env: dict[str, str] | None = None) -> None:
    """Create the ledger's schema. With PYTHONPATH in `operator_env` (another checkout of qgov, as
    bench/chaos.py runs the code before a fix), that checkout's own `qgov db upgrade` does it, so
    the schema is the one its operator expects."""
    if operator_env and operator_env.get("PYTHONPATH"):
        subprocess.run([str(Path(sys.executable).parent / "qgov"), "db", "upgrade", "--database-url", url],
                       env={**os.environ, **operator_env}, check=True, capture_output=True)
        return
    from governance.budget import db

    db.upgrade(url)
    db.make_engine(url).dispose()


@contextmanager
def chaos_environment(workdir: Path, *, pods: str = "real", operator_env: dict[str, str] | None = None,
                      start_operator: bool = True) -> Iterator[ChaosEnv]:
    """A dev cluster, a PostgreSQL server of its own with a migrated ledger, and one running
    operator; the `priced-aer` backend (0.30 USD per task) exists. `pods`: "real" (the dev
    cluster's pod runner runs the executor), "stand-in" (StandInKubelet), or "none" (pods stay
    Pending). All stopped on exit, whatever operators were added.

    The server skips fsync (fast) but acknowledges a commit only once its WAL is written, as a
    production server does: stopped with `pg_ctl -m immediate` it loses nothing it acknowledged.
    (With synchronous_commit off, as the ledger tests' server runs, it would lose the last
    acknowledged transactions, and an operator told "settled" would rightly say so.)"""
    workdir.mkdir(parents=True, exist_ok=True)
    pg = pgserver.start(fsync=False, synchronous_commit=True)
    holder = ThreadedDevCluster(workdir=workdir / "cluster", pods=pods == "real")
    operators: list[Operator] = []
    api = None
    try:
        url = pgserver.create_database(pg, "qgov")
        upgrade_ledger(url, operator_env)
        cluster = holder.__enter__()
        holder.call(install_crds, cluster)
        if pods == "stand-in":
            StandInKubelet(holder)
        api = kubernetes.config.new_client_from_config(config_file=str(cluster.kubeconfig))
        core, custom = kubernetes.client.CoreV1Api(api), kubernetes.client.CustomObjectsApi(api)
        core.create_namespace({"metadata": {"name": NS}})
        settings = {"QGOV_POD_SWEEP_SECONDS": "5", **(operator_env or {})}
        first = Operator(cluster, url, workdir / "operator-1.log", settings)
        operators.append(first)
        environment = ChaosEnv(cluster, core, custom, first, url, pg=pg, workdir=workdir, operator_env=settings,
                               operators=operators, holder=holder)
        if start_operator:
            first.start()
        environment.backend("priced-aer", pricing={"perTask": "0.30"},
                            limits={"maxQubits": 20, "maxShots": 100000, "maxCircuits": 4})
        yield environment
    finally:
        for op in operators:
            with suppress(Exception):  # teardown goes on
                op.stop()
        if api is not None:
            api.close()
        holder.__exit__(None, None, None)
        pg.stop()


# ---------------------------------------------------------------------- the webhook's configuration

CONFIGURATION = "qgov-webhook"  # the manifests' ValidatingWebhookConfiguration


def restore_configuration(api: Any) -> None:
    """The configuration as operator/manifests has it (the Service, no caBundle)."""
    [shipped] = [d for d in yaml.safe_load_all((MANIFESTS / "webhook.yaml").read_text())
                 if d and d["kind"] == "ValidatingWebhookConfiguration"]
    admission = kubernetes.client.AdmissionregistrationV1Api(api)
    current = admission.read_validating_webhook_configuration(CONFIGURATION)
    body = dict(shipped, metadata={**shipped["metadata"], "resourceVersion": current.metadata.resource_version})
    admission.replace_validating_webhook_configuration(CONFIGURATION, body)


def webhook_url(api: Any) -> str | None:
    config = kubernetes.client.AdmissionregistrationV1Api(api).read_validating_webhook_configuration(CONFIGURATION)
    client = config.webhooks[0].client_config
    return client.url if client.ca_bundle else None
