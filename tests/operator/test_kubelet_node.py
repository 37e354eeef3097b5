"""The kubelet node (qgov_dev/devcluster/kubeletnode.py): a real kubelet with containerd, runc, CNI
and kube-proxy beside the upstream control plane runs the executor image built here, routes a
Service's ClusterIP, and leaves nothing on the machine when it stops.

Opt-in (QGOV_KUBELET_NODE=1): it needs root, the node's binaries
(`bash scripts/kube-binaries.sh kubelet containerd runc cni`) and a minute or two; the default
suite keeps the process node. Prints the pod start latency of both nodes for the same pod.
"""

from __future__ import annotations

import json
import os
import subprocess
import tarfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest

from qgov_dev import images
from qgov_dev.devcluster.bed import Bed

pytestmark = pytest.mark.skipif(
    os.environ.get("QGOV_KUBELET_NODE") != "1",
    reason="the kubelet node is opt-in: set QGOV_KUBELET_NODE=1 (needs root and "
           "`bash scripts/kube-binaries.sh kubernetes etcd kubelet containerd runc cni`)")

NAMESPACE = "kubelet-node"
EXECUTOR = f"ghcr.io/qgov/executor:{images.VERSION}"


def run_pod(core: kubernetes.client.CoreV1Api, name: str, command: list[str], *, image: str = EXECUTOR,
            labels: dict[str, str] | None = None, wait_for: str = "Succeeded", timeout: float = 180,
            token: bool = False) -> dict[str, Any]:
    """Create a pod and wait for `wait_for` (a phase); returns it with `_started` (seconds from
    create to the container's start) and `_done` (seconds from create to that phase)."""
    t0 = time.monotonic()
    core.create_namespaced_pod(NAMESPACE, {
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {"restartPolicy": "Never", "automountServiceAccountToken": token, "containers": [{
            "name": "main", "image": image, "imagePullPolicy": "Never", "command": command}]}})
    started = None
    deadline = t0 + timeout
    while time.monotonic() < deadline:
        pod = core.read_namespaced_pod(name, NAMESPACE)
        statuses = pod.status.container_statuses or []
        if started is None and statuses and (statuses[0].state.running or statuses[0].state.terminated):
            started = time.monotonic() - t0
        if pod.status.phase == wait_for:
            result = dict(core.api_client.sanitize_for_serialization(pod))
            result["_started"], result["_done"] = started, time.monotonic() - t0
            return result
        if pod.status.phase == "Failed" and wait_for != "Failed":
            raise AssertionError(f"pod {name} failed: {pod.status}")
        time.sleep(0.1)
    raise AssertionError(f"pod {name} not {wait_for} after {timeout:.0f} s: {pod.status}")


def image_id(archive: Path) -> str:
    """An archive's image ID as the CRI reports it for an image without a registry digest: its config's digest."""
    with tarfile.open(archive) as tar:
        member = tar.extractfile("manifest.json")
        assert member is not None
        return "sha256:" + str(json.load(member)[0]["Config"]).rsplit("/", 1)[1]


def make_namespace(core: kubernetes.client.CoreV1Api) -> None:
    """NAMESPACE, once its ServiceAccount `default` exists (pods are refused before that)."""
    core.create_namespace({"metadata": {"name": NAMESPACE}})
    deadline = time.monotonic() + 30
    while not core.list_namespaced_service_account(NAMESPACE).items:
        assert time.monotonic() < deadline, "no ServiceAccount default after 30 s"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def kubelet_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from qgov_dev.devcluster.controlplane import CONTROLLERS, ROUTING_CONTROLLERS, ControlPlane
    from qgov_dev.devcluster.kubeletnode import KubeletNode, apiserver_args

    if os.geteuid() != 0:
        pytest.skip("the kubelet node needs root")
    workdir = tmp_path_factory.mktemp("kubelet-node")
    built = images.build(workdir / "images")
    with Bed.claim() as bed:
        plane = ControlPlane(workdir / "control-plane", bed=bed, controllers=CONTROLLERS + ROUTING_CONTROLLERS,
                             apiserver_args=apiserver_args())
        plane.start()
        node = KubeletNode(plane, workdir / "node", bed)
        try:
            t0 = time.monotonic()
            node.start()
            facts: dict[str, Any] = {"started_in": time.monotonic() - t0}
            t0 = time.monotonic()
            node.import_image(Path(built["executor"]["archive"]))
            facts["imported_in"] = time.monotonic() - t0
            facts["executor_id"] = image_id(Path(built["executor"]["archive"]))
            api = kubernetes.config.new_client_from_config(config_file=str(plane.kubeconfig))
            core = kubernetes.client.CoreV1Api(api)
            make_namespace(core)
            yield plane, node, core, facts
            api.close()
        finally:
            node.stop()
            plane.stop()
            left = node.leftovers()
    assert left == [], f"the kubelet node left these behind: {left}"


def test_node_is_ready_with_containerd(kubelet_cluster: Any) -> None:
    plane, node, core, facts = kubelet_cluster
    out = subprocess.run([str(node.bin["kubectl"]), "--kubeconfig", str(plane.kubeconfig), "get",
                                        "nodes", "-o", "wide"], capture_output=True, text=True).stdout
    print(f"\n{out}node up in {facts['started_in']:.1f} s, executor image imported in {facts['imported_in']:.1f} s")
    line = next(line for line in out.splitlines() if line.startswith(node.name))
    assert " Ready " in line and "containerd://" in line, out


def test_executor_image_runs_to_completion(kubelet_cluster: Any) -> None:
    plane, node, core, facts = kubelet_cluster
    pod = run_pod(core, "executor-once", ["python", "-c", "import executor, qiskit_aer; print('ran', 6 * 7)"])
    status = pod["status"]["containerStatuses"][0]
    assert status["state"]["terminated"]["exitCode"] == 0
    assert status["imageID"] == facts["executor_id"]  # the image built here
    log = core.read_namespaced_pod_log("executor-once", NAMESPACE)  # through the kubelet's port
    assert "ran 42" in log
    print(f"\nkubelet node: executor pod started {pod['_started']:.2f} s after create, "
          f"Succeeded after {pod['_done']:.2f} s")


def test_service_cluster_ip_reaches_a_pod(kubelet_cluster: Any) -> None:
    plane, node, core, facts = kubelet_cluster
    run_pod(core, "web", ["python", "-m", "http.server", "8080", "--directory", "/opt/qgov"],
            labels={"app": "web"}, wait_for="Running")
    service = core.create_namespaced_service(NAMESPACE, {
        "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}})
    ip = service.spec.cluster_ip
    deadline, last = time.monotonic() + 60, None
    while time.monotonic() < deadline:  # the EndpointSlice, then kube-proxy's rules
        try:
            with urllib.request.urlopen(f"http://{ip}/", timeout=2) as answer:
                assert answer.status == 200
                break
        except OSError as exc:
            last = exc
            time.sleep(0.5)
    else:
        raise AssertionError(f"ClusterIP {ip}:80 unreachable from the host: {last}")
    # and from another pod (through the bridge, the pod's route and kube-proxy's DNAT)
    pod = run_pod(core, "client", ["python", "-c",
                                   f"import urllib.request; print(urllib.request.urlopen('http://{ip}/').status)"])
    assert core.read_namespaced_pod_log("client", NAMESPACE).strip() == "200", pod["status"]


def test_in_cluster_client_reaches_the_api_server(kubelet_cluster: Any) -> None:
    """The Service `kubernetes` routes (its endpoint is the API server's host address): a container
    with its ServiceAccount token talks to the API server as that ServiceAccount."""
    plane, node, core, facts = kubelet_cluster
    run_pod(core, "in-cluster", ["python", "-c", (
        "import kubernetes; kubernetes.config.load_incluster_config(); "
        "print(kubernetes.client.VersionApi().get_code().git_version)")], token=True)
    assert "v1.37.2" in core.read_namespaced_pod_log("in-cluster", NAMESPACE)  # (the client may show it as b'...')


def test_exec_and_memory_limit(kubelet_cluster: Any) -> None:
    """What the process node cannot do: `kubectl exec` into a container (the kubelet's streaming
    through containerd), and a container over its memory limit OOM-killed by the kernel."""
    plane, node, core, facts = kubelet_cluster
    kubectl = [str(node.bin["kubectl"]), "--kubeconfig", str(plane.kubeconfig), "-n", NAMESPACE]
    run_pod(core, "sleeper", ["python", "-c", "import time; time.sleep(600)"], wait_for="Running")
    out = subprocess.run([*kubectl, "exec", "sleeper", "--", "python", "-c", "import os; print('uid', os.getuid())"],
                         capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "uid 10001", out  # the image's user, not the node's root
    t0 = time.monotonic()
    core.create_namespaced_pod(NAMESPACE, {
        "metadata": {"name": "hog"},
        "spec": {"restartPolicy": "Never", "automountServiceAccountToken": False, "containers": [{
            "name": "main", "image": EXECUTOR, "imagePullPolicy": "Never",
            "resources": {"limits": {"memory": "64Mi"}},
            "command": ["python", "-c", "x = bytearray(512 * 1024 * 1024); print('not killed')"]}]}})
    while time.monotonic() < t0 + 120:
        pod = core.read_namespaced_pod("hog", NAMESPACE)
        if pod.status.phase in ("Failed", "Succeeded"):
            break
        time.sleep(0.2)
    terminated = pod.status.container_statuses[0].state.terminated
    assert pod.status.phase == "Failed" and terminated.reason == "OOMKilled", pod.status
    assert terminated.exit_code == 137


def test_process_node_pod_latency(tmp_path: Path) -> None:
    """The same pod on the process node (node.py), for the comparison."""
    from qgov_dev.devcluster.upstream import UpstreamCluster

    cluster = UpstreamCluster(tmp_path / "upstream", manifests=False).start()
    try:
        core = kubernetes.client.CoreV1Api(cluster.api)
        make_namespace(core)
        pod = run_pod(core, "executor-once", ["python", "-c", "import executor, qiskit_aer; print('ran', 6 * 7)"])
        print(f"\nprocess node: executor pod started {pod['_started'] or 0:.2f} s after create, "
              f"Succeeded after {pod['_done']:.2f} s")
    finally:
        cluster.stop()
