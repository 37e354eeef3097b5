"""`qgov dev`: the dev cluster with qgov's CRDs, the operator, and optionally the demo."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml

from governance.jobs.phases import TERMINAL

from .cluster import DevCluster
from .store import CRD_KEY

# package data of qgov_dev (in the source tree links to the repository's crds/ and samples/, the one
# copy; in a wheel, their files): a package on the file system, so its Traversable is a Path
CRDS = Path(str(files("qgov_dev") / "crds"))
SAMPLES = Path(str(files("qgov_dev") / "samples"))


def install_crds(cluster: DevCluster) -> None:
    rtype = cluster.store.types[CRD_KEY]
    for path in sorted(CRDS.glob("qiskit*.yaml")):  # (crds/kustomization.yaml is for kubectl apply -k)
        cluster.store.create(rtype, None, yaml.safe_load(path.read_text()))


def start_operator(cluster: DevCluster) -> subprocess.Popen[bytes]:
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}
    env.setdefault("QGOV_DATABASE_URL", f"sqlite:///{cluster.workdir / 'ledger.db'}")
    log = open(cluster.workdir / "operator.log", "ab")
    qgov = Path(sys.executable).parent / "qgov"
    proc = subprocess.Popen([str(qgov), "operator"], env=env, stdout=log, stderr=subprocess.STDOUT,
                            preexec_fn=cluster.bed.preexec())  # it ends with the dev cluster, however that ends
    cluster.bed.started(proc.pid)
    return proc


def kubectl(cluster: Any, *args: str) -> str:
    binary = shutil.which("kubectl") or str(Path(sys.executable).parent / "kubectl")
    result = subprocess.run([binary, "--kubeconfig", str(cluster.kubeconfig), *args], capture_output=True, text=True,
                            timeout=60)
    return result.stdout + result.stderr


def run_demo(cluster: Any) -> str:
    """Apply the samples, wait for every job to finish, and show what a team lead sees."""
    out = []
    for name in ("namespace.yaml", "backends.yaml"):
        out.append(kubectl(cluster, "apply", "-f", str(SAMPLES / name)).strip())
    # the budget sample names no namespace, as the NoBudget refusal suggests applying it with -n
    out.append(kubectl(cluster, "apply", "-n", "team-a", "-f", str(SAMPLES / "budget.yaml")).strip())
    deadline = time.monotonic() + 120  # the operator starts and puts the budget into the ledger
    while time.monotonic() < deadline and not kubectl(cluster, "get", "qbudget", "team-a", "-n", "team-a", "-o",
                                                      "jsonpath={.status.limit}").strip():
        time.sleep(0.3)
    for name in ("jobs.yaml", "local-session.yaml"):
        out.append(kubectl(cluster, "apply", "-f", str(SAMPLES / name)).strip())
    expected = sum(text.count("kind: QiskitJob") for text in
                   ((SAMPLES / n).read_text() for n in ("jobs.yaml", "local-session.yaml")))
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        phases = kubectl(cluster, "get", "qjob", "-n", "team-a", "-o", "jsonpath={.items[*].status.phase}").split()
        if len(phases) == expected and all(p in TERMINAL for p in phases):
            break
        time.sleep(0.5)
    time.sleep(1.0)
    out += ["", "$ kubectl get qiskitjobs -n team-a", kubectl(cluster, "get", "qiskitjobs", "-n", "team-a"),
            "$ kubectl get qiskitsessions -n team-a", kubectl(cluster, "get", "qiskitsessions", "-n", "team-a"),
            "$ kubectl get qiskitbudgets -n team-a", kubectl(cluster, "get", "qiskitbudgets", "-n", "team-a"),
            "$ kubectl describe qiskitbudget team-a -n team-a",
            kubectl(cluster, "describe", "qiskitbudget", "team-a", "-n", "team-a")]
    return "\n".join(out)


async def serve(port: int, workdir: str | None, operator: bool, demo: bool) -> None:
    cluster = DevCluster(port=port, workdir=Path(workdir) if workdir else None)
    await cluster.start()
    install_crds(cluster)
    proc = start_operator(cluster) if operator or demo else None
    print(f"qgov dev cluster: API {cluster.url} (127.0.0.1 only), pod runner on (pods at {cluster.bed.network})"
          + (f", operator on (log: {cluster.workdir / 'operator.log'})" if proc else ""))
    print(f"kubeconfig: {cluster.kubeconfig}")
    print(f"  export KUBECONFIG={cluster.kubeconfig}; kubectl get qiskitbudgets -A")
    sys.stdout.flush()
    try:
        if demo:
            print(await asyncio.to_thread(run_demo, cluster), flush=True)
            return
        print("Ctrl-C to stop.", flush=True)
        await asyncio.Event().wait()
    finally:
        if proc is not None:
            proc.terminate()
            try:
                await asyncio.to_thread(proc.wait, 20)
            except subprocess.TimeoutExpired:
                proc.kill()
        await cluster.stop()


def serve_upstream(workdir: str | None, operator: bool, demo: bool) -> None:
    """The same, on a real control plane and node, qgov installed from operator/manifests and the
    operator running as their Deployment (ServiceAccount qgov-operator, in-cluster configuration)."""
    import tempfile

    from .upstream import MANIFESTS, UpstreamCluster

    if not (MANIFESTS / "kustomization.yaml").is_file():
        raise SystemExit("qgov: error: qgov dev --cluster upstream runs from a source checkout of qgov (it applies "
                         "operator/manifests and runs binaries built by scripts/kube-binaries.sh); "
                         "the emulator (the default) runs from an installed wheel")
    root = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="qgov-upstream-"))
    cluster = UpstreamCluster(root)
    print(f"qgov dev cluster (upstream): starting etcd, kube-apiserver, controller-manager, scheduler and a node "
          f"in {root}", flush=True)
    cluster.start()
    try:
        print(f"qgov dev cluster (upstream): API {cluster.url} (127.0.0.1 only), node {cluster.node.name if cluster.node else '-'} "
              f"(pods at {cluster.bed.network if cluster.bed else '-'}), "
              f"up in {cluster.started_in:.1f} s; qgov installed with kubectl apply -k operator/manifests", flush=True)
        if operator or demo:
            url = os.environ.get("QGOV_DATABASE_URL") or f"sqlite:///{root / 'ledger.db'}"
            pod = cluster.start_operator_deployment(url)
            print(f"operator: Deployment qgov-system/qgov-operator, pod {pod['metadata']['name']} "
                  f"(ServiceAccount {pod['spec'].get('serviceAccountName')})", flush=True)
        print(f"kubeconfig: {cluster.kubeconfig}")
        print(f"  export KUBECONFIG={cluster.kubeconfig}; kubectl get qiskitbudgets -A", flush=True)
        if demo:
            print(run_demo(cluster), flush=True)  # type: ignore[arg-type]
            return
        print("Ctrl-C to stop.", flush=True)
        while True:
            time.sleep(3600)
    finally:
        cluster.stop()


def main(port: int, workdir: str | None, operator: bool, demo: bool, kind: str = "emulator") -> Any:
    import signal

    # SIGTERM (how a harness, CI or `kill` stops the bed) stops it as Ctrl-C does: cleanly, with
    # every process it started; SIGKILL is left to the bed's guardian (bed.py)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        if kind == "upstream":
            serve_upstream(workdir, operator, demo)
        else:
            asyncio.run(serve(port, workdir, operator, demo))
    except KeyboardInterrupt:
        pass
    return 0
