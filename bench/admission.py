"""Admission benchmark: a burst of QiskitJobs on the dev cluster, create → Admitted.

    python bench/admission.py [--jobs 500] [--distinct] [--cluster emulator|emulator-thread|upstream]
    QGOV_BENCH_PROFILE_EMULATOR=emu.prof python bench/admission.py   # a cProfile of the emulator process
    QGOV_BENCH_OPERATOR=script.py python bench/admission.py   # start the operator another way (a profiler)

The dev cluster runs in a process of its own (`--cluster emulator-thread`: on a thread of this
one, beside the client threads) with its pod runner OFF (executor pods are created but not
started: this measures admission, not 500 Python start-ups). With `--cluster upstream`
the cluster is the real control plane (etcd, kube-apiserver, controller-manager, scheduler; its
node cordoned, so executor pods stay Pending) and the operator holds the ServiceAccount
qgov-operator's token, as in the end-to-end tests. The operator is the
real `qgov operator` process with a SQLite ledger. Jobs are created by 4 client threads
through the kubernetes client; one watch records when each job's status first says Admitted.
Reported: jobs/s from the first create to the last admission, p50/p99 admission latency,
operator CPU-seconds per admitted job (from /proc, start-up excluded), operator peak RSS, and the
emulator's and this process's CPU per job (which of the three sets the pace).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import kubernetes

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from qgov_dev.devcluster.cluster import DevCluster, ThreadedDevCluster  # noqa: E402
from qgov_dev.devcluster.devmain import install_crds  # noqa: E402

from common import cpu_seconds, operator_process, peak_rss_mib  # noqa: E402


@contextmanager
def bench_cluster(kind: str, workdir: Path) -> Iterator[tuple[Any, Path]]:
    """(the cluster, the operator's kubeconfig), pods not run; CRDs installed."""
    if kind == "upstream":
        from qgov_dev.devcluster.upstream import UpstreamCluster

        upstream = UpstreamCluster(workdir / "upstream").start()
        try:
            upstream.set_schedulable(False)
            yield upstream, upstream.operator_kubeconfig()
        finally:
            upstream.stop()
        return
    if kind == "emulator-thread":  # the emulator on a thread of this process, beside the clients
        holder = ThreadedDevCluster(workdir=workdir / "cluster", pods=False)
        with holder as cluster:
            holder.call(install_crds, cluster)  # the store is not thread-safe: on the cluster's own loop
            yield cluster, cluster.kubeconfig
        return
    # The emulator in a process of its own, as an API server is: the clients' threads here do not
    # share its interpreter lock.
    emulator = subprocess.Popen([sys.executable, __file__, "--serve-emulator", str(workdir / "cluster")],
                                stdout=subprocess.PIPE, text=True)
    try:
        line = emulator.stdout.readline()  # type: ignore[union-attr]
        if not line.startswith("kubeconfig: "):
            raise RuntimeError(f"the emulator did not start: {line!r}")
        kubeconfig = Path(line.split(": ", 1)[1].strip())
        yield SimpleNamespace(kubeconfig=kubeconfig, pid=emulator.pid), kubeconfig
    finally:
        emulator.terminate()
        emulator.wait(30)


def serve_emulator(workdir: Path) -> None:
    """The `--cluster emulator` process: the dev cluster with qgov's CRDs, pods not run."""
    async def serve() -> None:
        cluster = DevCluster(workdir=workdir, pods=False)
        await cluster.start()
        install_crds(cluster)
        print(f"kubeconfig: {cluster.kubeconfig}", flush=True)
        await asyncio.Event().wait()

    profile_to = os.environ.get("QGOV_BENCH_PROFILE_EMULATOR")  # a cProfile of the emulator, for its own costs
    profiler = None
    if profile_to:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()

    def stop(*_: object) -> None:
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(profile_to)
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    asyncio.run(serve())


G, V, NS = "qgov.dev", "v1alpha1", "bench"
BELL = 'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[2];\ncreg c[2];\nh q[0];\ncx q[0],q[1];\nmeasure q -> c;\n'


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=500)
    ap.add_argument("--cluster", choices=("emulator", "emulator-thread", "upstream"), default="emulator",
                    help="emulator: in its own process (default); emulator-thread: on a thread of the bench's "
                         "process, beside its client threads (how this bench ran until 2026-11-30)")
    ap.add_argument("--serve-emulator", metavar="WORKDIR", help=argparse.SUPPRESS)
    ap.add_argument("--distinct", action="store_true",
                    help="every job a different circuit (an rz angle each), so no circuit is priced twice")
    args = ap.parse_args()
    if args.serve_emulator:
        serve_emulator(Path(args.serve_emulator))
        return
    workdir = Path(tempfile.mkdtemp(prefix="qgov-bench-admission-"))
    with bench_cluster(args.cluster, workdir) as (cluster, operator_kubeconfig):
        api = kubernetes.config.new_client_from_config(config_file=str(cluster.kubeconfig))
        core, custom = kubernetes.client.CoreV1Api(api), kubernetes.client.CustomObjectsApi(api)
        core.create_namespace({"metadata": {"name": NS}})
        command = None
        if os.environ.get("QGOV_BENCH_OPERATOR"):  # another way to start it (a profiler, say)
            command = [sys.executable, os.environ["QGOV_BENCH_OPERATOR"]]
        with operator_process(operator_kubeconfig, workdir, command) as op:
            custom.create_cluster_custom_object(G, V, "qiskitbackends", {
                "apiVersion": f"{G}/{V}", "kind": "QiskitBackend", "metadata": {"name": "aer"},
                "spec": {"provider": "aer", "name": "aer_simulator", "pricing": {"perTask": "0.01"}}})
            custom.create_namespaced_custom_object(G, V, NS, "qiskitbudgets", {
                "apiVersion": f"{G}/{V}", "kind": "QiskitBudget", "metadata": {"name": NS},
                "spec": {"limit": "1000000.00"}})
            while not (custom.get_namespaced_custom_object(G, V, NS, "qiskitbudgets", NS).get("status") or {}).get(
                    "limit"):
                time.sleep(0.1)
            time.sleep(1.0)  # let the operator settle after start-up before measuring its CPU

            created: dict[str, float] = {}
            admitted: dict[str, float] = {}
            done = threading.Event()

            def watcher() -> None:
                w = kubernetes.watch.Watch()
                for event in w.stream(custom.list_namespaced_custom_object, G, V, NS, "qiskitjobs",
                                      timeout_seconds=600):
                    obj = event["object"]
                    if (obj.get("status") or {}).get("phase") == "Admitted":
                        admitted.setdefault(obj["metadata"]["name"], time.perf_counter())
                        if len(admitted) >= args.jobs:
                            w.stop()
                done.set()

            threading.Thread(target=watcher, daemon=True).start()
            time.sleep(0.3)
            server_pid = getattr(cluster, "pid", None)  # the emulator's own process, when it has one
            cpu0, bench0 = cpu_seconds(op.pid), cpu_seconds(os.getpid())
            server0 = cpu_seconds(server_pid) if server_pid else 0.0
            profiler = None
            if os.environ.get("QGOV_BENCH_PROFILE"):  # py-spy samples, to find where the operator's CPU goes
                profiler = subprocess.Popen(["py-spy", "record", "--pid", str(op.pid), "-d", "12", "-f", "raw",
                                             "-o", os.environ["QGOV_BENCH_PROFILE"]], stdout=subprocess.DEVNULL,
                                            stderr=subprocess.DEVNULL)

            def circuit(i: int) -> str:
                return BELL.replace("h q[0];", f"h q[0];\nrz({i / 1000}) q[1];") if args.distinct else BELL

            def creator(k: int) -> None:
                own = kubernetes.client.CustomObjectsApi(
                    kubernetes.config.new_client_from_config(config_file=str(cluster.kubeconfig)))
                for i in range(k, args.jobs, 4):
                    name = f"job-{i:04d}"
                    created[name] = time.perf_counter()
                    own.create_namespaced_custom_object(G, V, NS, "qiskitjobs", {
                        "apiVersion": f"{G}/{V}", "kind": "QiskitJob", "metadata": {"name": name},
                        "spec": {"backend": "aer", "circuits": [circuit(i)], "shots": 100}})

            t0 = time.perf_counter()
            creators = [threading.Thread(target=creator, args=(k,)) for k in range(4)]
            for t in creators:
                t.start()
            for t in creators:
                t.join()
            if not done.wait(600):
                raise RuntimeError(f"only {len(admitted)} of {args.jobs} jobs were admitted")
            cpu, bench_cpu = cpu_seconds(op.pid) - cpu0, cpu_seconds(os.getpid()) - bench0
            server_cpu = cpu_seconds(server_pid) - server0 if server_pid else None
            if profiler is not None:
                profiler.wait(60)
            elapsed = max(admitted.values()) - t0
            latencies = sorted(admitted[n] - created[n] for n in admitted)
            print(f"machine: {os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}; "
                  f"{args.jobs} jobs in one burst, {'every job its own circuit' if args.distinct else 'one circuit'}, "
                  f"SQLite ledger, pods not run, cluster: {args.cluster}")
            print()
            print(f"{'jobs':>5}  {'jobs/s':>7}  {'p50 ms':>8}  {'p99 ms':>8}  {'CPU ms/job':>10}  {'peak RSS MiB':>12}  {'emulator CPU ms/job':>19}  {'bench process CPU ms/job':>24}")
            print(f"{len(admitted):5d}  {len(admitted) / elapsed:7.1f}  {statistics.median(latencies) * 1000:8.1f}  "
                  f"{latencies[int(len(latencies) * 0.99) - 1] * 1000:8.1f}  {cpu / len(admitted) * 1000:10.2f}  "
                  f"{peak_rss_mib(op.pid):12.1f}  "
                  f"{(f'{server_cpu / len(admitted) * 1000:.2f}' if server_cpu is not None else 'in bench'):>19}  "
                  f"{bench_cpu / len(admitted) * 1000:24.2f}")


if __name__ == "__main__":
    main()
