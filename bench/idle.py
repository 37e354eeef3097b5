"""Idle cost: how much CPU the operator spends on budgets and sessions that have no work.

    python bench/idle.py [--budgets 50,200,1000] [--seconds 30]

For each count N: a dev cluster (this process, pod runner off) with N namespaces, each with one
QiskitBudget and no jobs, and the real `qgov operator` (SQLite ledger). Once every budget shows
its status, the operator's CPU is read from /proc over `--seconds` of nothing happening.
Reported per N: operator CPU as % of one core, ms of CPU per budget per second, peak RSS.
Run it against another tree (say the commit before a change) with PYTHONPATH=that/tree.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import kubernetes

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from qgov_dev.devcluster.cluster import ThreadedDevCluster  # noqa: E402
from qgov_dev.devcluster.devmain import install_crds  # noqa: E402

from common import cpu_seconds, operator_process, peak_rss_mib, wait_until  # noqa: E402

G, V = "qgov.dev", "v1alpha1"


def measure(budgets: int, seconds: float) -> tuple[float, float]:
    """(CPU % of one core over `seconds` idle, peak RSS MiB) with `budgets` idle budgets."""
    workdir = Path(tempfile.mkdtemp(prefix="qgov-bench-idle-"))
    holder = ThreadedDevCluster(workdir=workdir / "cluster", pods=False)
    with holder as cluster:
        holder.call(install_crds, cluster)
        api = kubernetes.config.new_client_from_config(config_file=str(cluster.kubeconfig))
        core, custom = kubernetes.client.CoreV1Api(api), kubernetes.client.CustomObjectsApi(api)
        with operator_process(cluster.kubeconfig, workdir) as op:
            for i in range(budgets):
                ns = f"team-{i:04d}"
                core.create_namespace({"metadata": {"name": ns}})
                custom.create_namespaced_custom_object(G, V, ns, "qiskitbudgets", {
                    "apiVersion": f"{G}/{V}", "kind": "QiskitBudget", "metadata": {"name": ns},
                    "spec": {"limit": "100.00"}})
            wait_until(lambda: sum(bool((b.get("status") or {}).get("limit")) for b in custom.list_cluster_custom_object(
                G, V, "qiskitbudgets")["items"]) == budgets, "every budget's status", 600)
            time.sleep(5)  # start-up and the first writes are over
            cpu0, t0 = cpu_seconds(op.pid), time.monotonic()
            time.sleep(seconds)
            cpu, elapsed = cpu_seconds(op.pid) - cpu0, time.monotonic() - t0
            return cpu / elapsed * 100, peak_rss_mib(op.pid)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budgets", default="50,200,1000")
    ap.add_argument("--seconds", type=float, default=30)
    args = ap.parse_args()
    print(f"machine: {os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}; "
          f"idle budgets, no jobs, {args.seconds:g} s measured, SQLite ledger")
    print()
    print(f"{'budgets':>7}  {'CPU % of a core':>15}  {'ms CPU/budget/s':>15}  {'peak RSS MiB':>12}")
    for n in (int(x) for x in args.budgets.split(",")):
        pct, rss = measure(n, args.seconds)
        print(f"{n:7d}  {pct:15.2f}  {pct * 10 / n:15.4f}  {rss:12.1f}", flush=True)


if __name__ == "__main__":
    main()
