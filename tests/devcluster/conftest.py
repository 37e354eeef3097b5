"""A fresh dev cluster per test, reached over real HTTP by the real kubernetes client."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import kubernetes
import pytest

from qgov_dev.devcluster.cluster import DevCluster, ThreadedDevCluster

WIDGET_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.example.dev"},
    "spec": {
        "group": "example.dev", "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wd"]},
        "versions": [{
            "name": "v1", "served": True, "storage": True, "subresources": {"status": {}},
            "additionalPrinterColumns": [
                {"name": "Size", "type": "integer", "jsonPath": ".spec.size"},
                {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
                {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}],
            "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                "spec": {"type": "object", "required": ["size"], "properties": {
                    "size": {"type": "integer", "minimum": 1, "maximum": 100},
                    "color": {"type": "string", "default": "blue", "enum": ["blue", "red"]},
                    "tags": {"type": "array", "items": {"type": "string"}}}},
                "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}}},
        }],
    },
}


@pytest.fixture
def threaded(tmp_path: Path) -> Iterator[tuple[ThreadedDevCluster, DevCluster]]:
    holder = ThreadedDevCluster(workdir=tmp_path / "cluster")
    cluster = holder.__enter__()
    yield holder, cluster
    holder.__exit__(None, None, None)


@pytest.fixture
def cluster(threaded) -> DevCluster:
    return threaded[1]


@pytest.fixture
def api(cluster: DevCluster) -> kubernetes.client.ApiClient:
    client = kubernetes.config.new_client_from_config(config_file=str(cluster.kubeconfig))
    yield client
    client.close()


@pytest.fixture
def core(api) -> kubernetes.client.CoreV1Api:
    return kubernetes.client.CoreV1Api(api)


@pytest.fixture
def custom(api) -> kubernetes.client.CustomObjectsApi:
    return kubernetes.client.CustomObjectsApi(api)


@pytest.fixture
def widgets(api, custom):
    """The Widget CRD applied; returns a helper that creates widgets."""
    kubernetes.client.ApiextensionsV1Api(api).create_custom_resource_definition(WIDGET_CRD)

    def make(name: str, size: int = 3, namespace: str = "default", **extra):
        body = {"apiVersion": "example.dev/v1", "kind": "Widget", "metadata": {"name": name, **extra.pop("meta", {})},
                "spec": {"size": size, **extra}}
        return custom.create_namespaced_custom_object("example.dev", "v1", namespace, "widgets", body)

    return make


def kubectl_binary() -> str:
    found = shutil.which("kubectl") or shutil.which("kubectl", path=str(Path(sys.executable).parent))
    if not found:
        pytest.fail("kubectl is required (scripts/setup.sh installs it)", pytrace=False)
    return found


@pytest.fixture
def kubectl(cluster: DevCluster):
    binary = kubectl_binary()

    def run(*args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([binary, "--kubeconfig", str(cluster.kubeconfig), *args], input=input,
                                capture_output=True, text=True, timeout=60)
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {result.stderr}")
        return result

    return run
