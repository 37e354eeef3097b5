"""kopf, unmodified, runs a real operator against the dev cluster over HTTP."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from kubernetes.client.rest import ApiException

HERE = Path(__file__).parent
NS = "default"


def eventually(check, timeout: float = 30, what: str = ""):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except ApiException as exc:
            last = exc
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}: last {last!r}")


@pytest.fixture
def operator(cluster, widgets, tmp_path):
    log = open(tmp_path / "kopf.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "kopf", "run", "--standalone", "--namespace", NS, str(HERE / "kopf_operator.py")],
        env={**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}, stdout=log, stderr=subprocess.STDOUT)
    yield proc
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


def test_kopf_operator_create_update_timer_delete_and_child_gc(operator, widgets, custom, core, tmp_path) -> None:
    widgets("w1", 2)

    def widget():
        return custom.get_namespaced_custom_object("example.dev", "v1", NS, "widgets", "w1")

    try:
        w = eventually(lambda: widget() if (widget().get("status") or {}).get("created") else None, what="create")
        assert w["status"]["created"] == {"child": "w1-child"}
        assert "example.dev/kopf-finalizer" in w["metadata"]["finalizers"]
        child = core.read_namespaced_pod("w1-child", NS)
        assert child.metadata.owner_references[0].uid == w["metadata"]["uid"]
        eventually(lambda: core.read_namespaced_pod("w1-child", NS).status.phase == "Succeeded", what="child pod")

        custom.patch_namespaced_custom_object("example.dev", "v1", NS, "widgets", "w1", {"spec": {"size": 7}})
        eventually(lambda: (widget().get("status") or {}).get("observedSize") == 7, what="update handler")
        eventually(lambda: (widget().get("status") or {}).get("ticks", 0) >= 3, what="timer ticks")

        custom.delete_namespaced_custom_object("example.dev", "v1", NS, "widgets", "w1")
        eventually(lambda: core.read_namespaced_config_map("w1-deleted", NS).data == {"by": "kopf"},
                   what="delete handler")

        def gone(read) -> bool:
            try:
                read()
            except ApiException as exc:
                return exc.status == 404
            return False

        eventually(lambda: gone(widget), what="widget released by the finalizer")
        eventually(lambda: gone(lambda: core.read_namespaced_pod("w1-child", NS)), what="child garbage-collected")
    except AssertionError:
        print((tmp_path / "kopf.log").read_text()[-5000:])
        raise
