"""Dev cluster benchmark: create → watch-event round trips per second.

    python bench/devcluster.py [--seconds 5]

The emulator runs in its own process (`qgov dev`), as users run it. Clients are threads
using the real kubernetes client: each creates a ConfigMap and waits until one shared watch
stream (also the real client) delivers its ADDED event. Measured with 1 and 4 concurrent
clients, with 100 and 5,000 objects already stored in the namespace.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import kubernetes


def start_cluster() -> tuple[subprocess.Popen[str], Path]:
    workdir = Path(tempfile.mkdtemp(prefix="qgov-bench-dev-"))
    qgov = Path(sys.executable).parent / "qgov"
    proc = subprocess.Popen([str(qgov), "dev", "--workdir", str(workdir)], stdout=subprocess.PIPE, text=True)
    for line in proc.stdout:  # type: ignore[union-attr]
        if m := re.match(r"kubeconfig: (.+)", line):
            return proc, Path(m[1].strip())
    raise RuntimeError("qgov dev did not start")


def measure(api: kubernetes.client.ApiClient, namespace: str, clients: int, seconds: float) -> tuple[float, float]:
    core = kubernetes.client.CoreV1Api(api)
    rv = core.list_namespaced_config_map(namespace, limit=1).metadata.resource_version
    seen: dict[str, threading.Event] = {}
    lock = threading.Lock()
    stop = threading.Event()

    def watcher() -> None:
        w = kubernetes.watch.Watch()
        try:
            for event in w.stream(core.list_namespaced_config_map, namespace, resource_version=rv,
                                  timeout_seconds=60):
                name = event["object"].metadata.name
                with lock:
                    flag = seen.setdefault(name, threading.Event())
                flag.set()
                if stop.is_set():
                    w.stop()
        except Exception:  # noqa: BLE001 - the emulator went away at the end of the run
            pass

    latencies: list[float] = []

    def client(c: int) -> None:
        own = kubernetes.config.new_client_from_config(config_file=os.environ["KUBECONFIG"])
        own_core = kubernetes.client.CoreV1Api(own)
        i = 0
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            name = f"rt-{clients}-{c}-{i}-{time.monotonic_ns()}"
            with lock:
                flag = seen.setdefault(name, threading.Event())
            t0 = time.perf_counter()
            own_core.create_namespaced_config_map(namespace, {"metadata": {"name": name}, "data": {"i": str(i)}})
            if not flag.wait(10):
                raise RuntimeError(f"no watch event for {name}")
            latencies.append(time.perf_counter() - t0)
            i += 1
        own.close()

    w = threading.Thread(target=watcher, daemon=True)
    w.start()
    time.sleep(0.3)
    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    stop.set()
    core.create_namespaced_config_map(namespace, {"metadata": {"generateName": "stop-"}})
    return len(latencies) / elapsed, statistics.median(latencies) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=5.0)
    args = ap.parse_args()
    proc, kubeconfig = start_cluster()
    os.environ["KUBECONFIG"] = str(kubeconfig)
    try:
        api = kubernetes.config.new_client_from_config(config_file=str(kubeconfig))
        core = kubernetes.client.CoreV1Api(api)
        print(f"machine: {os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}; "
              f"{args.seconds:g} s per run; emulator in its own process")
        core.create_namespace({"metadata": {"name": "warm-up"}})
        measure(api, "warm-up", 4, 1.0)  # not recorded: first-use costs would flatter the later runs
        rows = []
        for stored in (100, 5000):
            ns = f"bench-{stored}"
            core.create_namespace({"metadata": {"name": ns}})
            for i in range(stored):
                core.create_namespaced_config_map(ns, {"metadata": {"name": f"filler-{i}", "labels": {"i": str(i)}},
                                                       "data": {"x": "y" * 64}})
            for clients in (1, 4):
                rate, p50 = measure(api, ns, clients, args.seconds)
                rows.append((stored, clients, rate, p50))
                print(f"  {stored} stored, {clients} clients: {rate:.0f}/s", file=sys.stderr)
        print()
        print(f"{'stored objects':>14}  {'clients':>7}  {'round trips/s':>13}  {'p50 ms':>7}")
        for stored, clients, rate, p50 in rows:
            print(f"{stored:14d}  {clients:7d}  {rate:13.0f}  {p50:7.2f}")
        for clients in (1, 4):
            small = next(r for s, c, r, _ in rows if s == 100 and c == clients)
            large = next(r for s, c, r, _ in rows if s == 5000 and c == clients)
            print(f"{clients} client(s): 5,000 objects run at {large / small:.0%} of the 100-object rate")
    finally:
        proc.terminate()
        proc.wait(10)


if __name__ == "__main__":
    main()
