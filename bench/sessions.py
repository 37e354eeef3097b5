"""Sessions benchmark, on the dev cluster with the real `qgov operator` and real executor processes.

    python bench/sessions.py [--jobs 100] [--ibm-jobs 20] [--skip-local] [--skip-ibm]

1. Local: N small aer jobs (a Bell pair, 100 shots) through one local QiskitSession (one runner
   pod runs them in turn) against the same N jobs pod-per-job. Reported: wall seconds from the
   first create to the last job finished, and the ratio.
2. IBM: M jobs on an ibm backend against the local IBM Cloud server (qgov_dev/testing/ibm_cloud.py),
   batched automatically (20 per batch) and unbatched (1 per batch). Reported: Runtime sessions
   opened, Runtime API calls per job (operator and executors together), wall seconds.
"""

from __future__ import annotations

import argparse
import base64
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import kubernetes

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from qgov_dev.devcluster.cluster import ThreadedDevCluster  # noqa: E402
from qgov_dev.devcluster.devmain import install_crds  # noqa: E402
from qgov_dev.testing.ibm_cloud import CRN, LocalIbmCloud  # noqa: E402

G, V, NS = "qgov.dev", "v1alpha1", "bench"
BELL = 'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[2];\ncreg c[2];\nh q[0];\ncx q[0],q[1];\nmeasure q -> c;\n'
TERMINAL = {"Succeeded", "Failed", "Refused", "Cancelled"}
KEY = "bench-api-key"


class Scenario:
    """A fresh dev cluster, namespace, budget and operator (with extra settings)."""

    def __init__(self, operator_env: dict[str, str]) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="qgov-bench-sessions-"))
        self.holder = ThreadedDevCluster(workdir=self.workdir / "cluster")
        self.operator_env = operator_env

    def __enter__(self) -> Scenario:
        cluster = self.holder.__enter__()
        self.holder.call(install_crds, cluster)
        api = kubernetes.config.new_client_from_config(config_file=str(cluster.kubeconfig))
        self.core, self.custom = kubernetes.client.CoreV1Api(api), kubernetes.client.CustomObjectsApi(api)
        self.core.create_namespace({"metadata": {"name": NS}})
        env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig), "QGOV_SESSION_INTERVAL_SECONDS": "1",
               "QGOV_DATABASE_URL": f"sqlite:///{self.workdir / 'ledger.db'}", **self.operator_env}
        log = self.workdir / "operator.log"
        self.op = subprocess.Popen([str(Path(sys.executable).parent / "qgov"), "operator"], env=env,
                                   stdout=open(log, "wb"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 90
        while "qgov operator started" not in log.read_text(errors="replace"):
            if time.monotonic() > deadline or self.op.poll() is not None:
                raise RuntimeError(f"the operator did not start; see {log}")
            time.sleep(0.1)
        self.create("qiskitbudgets", "QiskitBudget", NS, {"limit": "1000000.00"})
        while not (self.custom.get_namespaced_custom_object(G, V, NS, "qiskitbudgets", NS).get("status") or {}).get(
                "limit"):
            time.sleep(0.1)  # the budget is in the ledger: jobs are not refused for want of one
        return self

    def __exit__(self, *exc: object) -> None:
        self.op.terminate()
        self.op.wait(60)
        self.holder.__exit__(None, None, None)

    def create(self, plural: str, kind: str, name: str, spec: dict[str, Any]) -> None:
        body = {"apiVersion": f"{G}/{V}", "kind": kind, "metadata": {"name": name}, "spec": spec}
        if plural == "qiskitbackends":
            self.custom.create_cluster_custom_object(G, V, plural, body)
        else:
            self.custom.create_namespaced_custom_object(G, V, NS, plural, body)

    def run_jobs(self, count: int, **spec: Any) -> float:
        """Create `count` jobs; seconds until every one is finished (all must succeed)."""
        t0 = time.perf_counter()
        for i in range(count):
            self.create("qiskitjobs", "QiskitJob", f"job-{i:04d}", {"circuits": [BELL], "shots": 100, **spec})
        while True:
            items = self.custom.list_namespaced_custom_object(G, V, NS, "qiskitjobs")["items"]
            phases = Counter((j.get("status") or {}).get("phase") for j in items)
            if sum(phases[p] for p in TERMINAL) == count:
                elapsed = time.perf_counter() - t0
                if phases["Succeeded"] != count:
                    raise RuntimeError(f"not every job succeeded: {dict(phases)}")
                return elapsed
            time.sleep(0.2)


def local(jobs: int) -> None:
    results = {}
    for mode in ("pod-per-job", "one session"):
        with Scenario({}) as s:
            s.create("qiskitbackends", "QiskitBackend", "aer", {"provider": "aer", "name": "aer_simulator",
                                                                "pricing": {"perTask": "0.01"}})
            extra = {}
            if mode == "one session":
                s.create("qiskitsessions", "QiskitSession", "warm", {"backend": "aer", "idleTimeout": 600})
                while (s.custom.get_namespaced_custom_object(G, V, NS, "qiskitsessions", "warm").get("status") or {}
                       ).get("phase") != "Open":
                    time.sleep(0.1)
                extra = {"session": "warm"}
            results[mode] = s.run_jobs(jobs, backend="aer", **extra)
        print(f"  {mode:<12} {jobs} jobs: {results[mode]:7.1f} s  ({jobs / results[mode]:6.2f} jobs/s)", flush=True)
    print(f"  one session is {results['pod-per-job'] / results['one session']:.1f}x faster than pod-per-job")


def ibm(jobs: int) -> None:
    for label, per_batch in (("batched", "20"), ("unbatched", "1")):
        with LocalIbmCloud(keys={KEY: "bench"}) as cloud, Scenario(
                {"QGOV_BATCH_MAX_JOBS": per_batch, "QGOV_BATCH_WINDOW_SECONDS": "30",
                 "QGOV_BATCH_IDLE_SECONDS": "600"}) as s:
            values = {"apiKey": KEY, "instance": CRN}
            s.core.create_namespaced_secret(NS, {"metadata": {"name": "ibm-quantum"}, "data": {
                k: base64.b64encode(v.encode()).decode() for k, v in values.items()}})
            s.create("qiskitbackends", "QiskitBackend", "ibm-local", {
                "provider": "ibm", "name": "ibm_local", "model": "fake_manila", "pricing": {"perQPUSecond": "1.60"},
                "ibm": {"url": cloud.url, "iamUrl": cloud.url, "searchUrl": cloud.url,
                        "catalogUrl": f"{cloud.url}/catalog"}})
            elapsed = s.run_jobs(jobs, backend="ibm-local")
            calls = sum(cloud.calls.values())
            session_calls = sum(n for route, n in cloud.calls.items() if "/sessions" in route)
            print(f"  {label:<10} {jobs} jobs: {len(cloud.sessions):3d} Runtime sessions, "
                  f"{calls / jobs:5.1f} Runtime calls/job ({session_calls / jobs:4.2f} of them on /sessions), "
                  f"{elapsed:6.1f} s", flush=True)
            top = ", ".join(f"{route} {n / jobs:.1f}" for route, n in cloud.calls.most_common(6))
            print(f"    per job: {top}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=100)
    ap.add_argument("--ibm-jobs", type=int, default=20)
    ap.add_argument("--skip-local", action="store_true")
    ap.add_argument("--skip-ibm", action="store_true")
    args = ap.parse_args()
    print(f"machine: {os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}; "
          "dev cluster, real operator and executor processes, SQLite ledger")
    if not args.skip_local:
        print("local session vs pod-per-job (aer, Bell pair, 100 shots):")
        local(args.jobs)
    if not args.skip_ibm:
        print("IBM Runtime calls with and without batching (local IBM Cloud server):")
        ibm(args.ibm_jobs)


if __name__ == "__main__":
    main()
