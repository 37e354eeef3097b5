"""Operator memory with many finished and some live QiskitJobs in the cluster.

    python bench/memory.py [--finished 0,10000,50000] [--live 1000]

For each count of finished jobs F: a dev cluster (this process, pod runner off) holding F
Succeeded QiskitJobs (written straight into its store: creating them through the API would take
minutes) in one namespace, and `--live` jobs created through the API in another, which the real
`qgov operator` (SQLite ledger) admits; their pods stay Pending. Once every live job is Admitted
and the operator is quiet, its resident memory is read from /proc. Reported: RSS and peak RSS,
and MiB per 1,000 finished jobs (the slope between the smallest and each larger F).
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

from admission import BELL  # noqa: E402
from common import operator_process, peak_rss_mib, rss_mib, wait_until  # noqa: E402

G, V = "qgov.dev", "v1alpha1"
ARCHIVE, LIVE = "archive", "live"
FILL_BATCH = 2_000


def job_body(name: str) -> dict:
    return {"apiVersion": f"{G}/{V}", "kind": "QiskitJob", "metadata": {"name": name},
            "spec": {"backend": "aer", "circuits": [BELL], "shots": 100}}


def fill(cluster, start: int, count: int) -> None:
    """`count` Succeeded jobs from number `start`, as a month of work leaves them (on the
    cluster's own loop)."""
    store = cluster.store
    rtype = store.find_type(G, V, "qiskitjobs")
    for i in range(start, start + count):
        obj = store.create(rtype, ARCHIVE, job_body(f"done-{i:06d}"))
        store.replace(rtype, ARCHIVE, obj["metadata"]["name"], {**obj, "status": {
            "phase": "Succeeded", "message": "succeeded on attempt 1; charged 0.01 USD", "estimatedCost": "0.01",
            "actualCost": "0.01", "currency": "USD", "attempts": 1, "budget": ARCHIVE, "usedMicro": "10000",
            "completionTime": "2026-11-01T00:00:00Z", "podName": f"done-{i:06d}-run-1",
            "resultConfigMap": f"done-{i:06d}-result",
            "conditions": [{"type": "Complete", "status": "True", "reason": "Completed",
                            "message": "succeeded on attempt 1; charged 0.01 USD",
                            "lastTransitionTime": "2026-11-01T00:00:00Z"}]}}, subresource="status")


def measure(finished: int, live: int) -> tuple[float, float]:
    workdir = Path(tempfile.mkdtemp(prefix="qgov-bench-memory-"))
    holder = ThreadedDevCluster(workdir=workdir / "cluster", pods=False)
    with holder as cluster:
        holder.call(install_crds, cluster)
        api = kubernetes.config.new_client_from_config(config_file=str(cluster.kubeconfig))
        core, custom = kubernetes.client.CoreV1Api(api), kubernetes.client.CustomObjectsApi(api)
        for ns in (ARCHIVE, LIVE):
            core.create_namespace({"metadata": {"name": ns}})
        for start in range(0, finished, FILL_BATCH):  # a call each: the loop answers in between
            holder.call(fill, cluster, start, min(FILL_BATCH, finished - start))
        with operator_process(cluster.kubeconfig, workdir) as op:
            custom.create_cluster_custom_object(G, V, "qiskitbackends", {
                "apiVersion": f"{G}/{V}", "kind": "QiskitBackend", "metadata": {"name": "aer"},
                "spec": {"provider": "aer", "name": "aer_simulator", "pricing": {"perTask": "0.01"}}})
            for ns in (ARCHIVE, LIVE):
                custom.create_namespaced_custom_object(G, V, ns, "qiskitbudgets", {
                    "apiVersion": f"{G}/{V}", "kind": "QiskitBudget", "metadata": {"name": ns},
                    "spec": {"limit": "1000000.00"}})
            wait_until(lambda: all((custom.get_namespaced_custom_object(G, V, ns, "qiskitbudgets", ns).get("status")
                                    or {}).get("limit") for ns in (ARCHIVE, LIVE)), "the budgets in the ledger", 120)
            for i in range(live):
                custom.create_namespaced_custom_object(G, V, LIVE, "qiskitjobs", job_body(f"live-{i:05d}"))
            wait_until(lambda: sum((j.get("status") or {}).get("phase") == "Admitted" for j in
                                   custom.list_namespaced_custom_object(G, V, LIVE, "qiskitjobs")["items"]) >= live,
                       "every live job admitted", 900, 1)
            time.sleep(10)  # quiet: statuses written, the initial listing long done
            return rss_mib(op.pid), peak_rss_mib(op.pid)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--finished", default="0,10000,50000")
    ap.add_argument("--live", type=int, default=1000)
    args = ap.parse_args()
    print(f"machine: {os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}; "
          f"{args.live} live jobs (Admitted, pods Pending), SQLite ledger")
    print()
    print(f"{'finished':>8}  {'RSS MiB':>8}  {'peak MiB':>8}  {'MiB/1k finished':>15}")
    base = None
    for f in (int(x) for x in args.finished.split(",")):
        rss, peak = measure(f, args.live)
        slope = f"{(rss - base[1]) / ((f - base[0]) / 1000):15.2f}" if base and f > base[0] else f"{'-':>15}"
        base = base or (f, rss)
        print(f"{f:8d}  {rss:8.1f}  {peak:8.1f}  {slope}", flush=True)


if __name__ == "__main__":
    main()
