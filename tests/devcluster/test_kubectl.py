"""The issue's kubectl bar, from a shell against the dev cluster."""

from __future__ import annotations

import json
import subprocess
import time

import yaml

from .conftest import WIDGET_CRD

WIDGET = """
apiVersion: example.dev/v1
kind: Widget
metadata:
  name: w1
  finalizers: [example.dev/hold]
spec:
  size: 3
"""


def test_apply_get_describe_delete_past_a_finalizer(kubectl, cluster) -> None:
    assert "created" in kubectl("apply", "-f", "-", input=yaml.safe_dump(WIDGET_CRD)).stdout
    assert "widget.example.dev/w1 created" in kubectl("apply", "-f", "-", input=WIDGET).stdout
    assert "unchanged" in kubectl("apply", "-f", "-", input=WIDGET).stdout
    assert "configured" in kubectl("apply", "-f", "-", input=WIDGET.replace("size: 3", "size: 4")).stdout
    kubectl("patch", "widget", "w1", "--subresource=status", "--type=merge", "-p", '{"status":{"phase":"Ready"}}')
    table = kubectl("get", "widgets").stdout.splitlines()
    assert table[0].split() == ["NAME", "SIZE", "PHASE", "AGE"]
    assert table[1].split()[:3] == ["w1", "4", "Ready"]
    assert kubectl("get", "wd", "w1", "-o", "jsonpath={.spec.color}").stdout == "blue"

    uid = kubectl("get", "wd", "w1", "-o", "jsonpath={.metadata.uid}").stdout
    event = {"apiVersion": "v1", "kind": "Event", "metadata": {"name": "w1.1"},
             "involvedObject": {"apiVersion": "example.dev/v1", "kind": "Widget", "name": "w1", "namespace": "default",
                                "uid": uid},
             "reason": "BudgetExceeded", "message": "exceeded budget team-a/team-a", "type": "Warning",
             "firstTimestamp": "2026-11-24T00:00:00Z", "lastTimestamp": "2026-11-24T00:00:00Z",
             "source": {"component": "qgov"}}
    kubectl("apply", "-f", "-", input=json.dumps(event))
    described = kubectl("describe", "widget", "w1").stdout
    assert "Phase:  Ready" in described
    assert "Warning  BudgetExceeded" in described and "exceeded budget team-a/team-a" in described

    kubectl("delete", "widget", "w1", "--wait=false")
    assert kubectl("get", "wd", "w1", "-o", "jsonpath={.metadata.deletionTimestamp}").stdout  # held
    kubectl("patch", "widget", "w1", "--type=json", "-p", '[{"op":"remove","path":"/metadata/finalizers"}]')
    gone = kubectl("get", "wd", "w1", check=False)
    assert gone.returncode != 0 and 'widgets.example.dev "w1" not found' in gone.stderr


def test_invalid_objects_show_the_field_path(kubectl) -> None:
    kubectl("apply", "-f", "-", input=yaml.safe_dump(WIDGET_CRD))
    bad = kubectl("apply", "-f", "-", input=WIDGET.replace("size: 3", "size: 0"), check=False)
    assert bad.returncode != 0
    assert "spec.size: Invalid value: 0: spec.size in body should be greater than or equal to 1" in bad.stderr


def test_label_patch_and_json_patch_test_op(kubectl) -> None:
    kubectl("apply", "-f", "-", input="apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {a: '1'}\n")
    kubectl("label", "configmap", "c", "tier=web")
    assert kubectl("get", "cm", "-l", "tier=web", "-o", "name").stdout.strip() == "configmap/c"
    kubectl("patch", "cm", "c", "-p", '{"data":{"b":"2"}}')
    failed = kubectl("patch", "cm", "c", "--type=json", "-p", '[{"op":"test","path":"/data/b","value":"3"}]',
                     check=False)
    assert failed.returncode != 0 and "test operation on '/data/b' failed" in failed.stderr


def test_get_watch_prints_changes(kubectl, cluster) -> None:
    kubectl("apply", "-f", "-", input="apiVersion: v1\nkind: ConfigMap\nmetadata: {name: w}\n")
    watcher = subprocess.Popen([kubectl_path(), "--kubeconfig", str(cluster.kubeconfig), "get", "cm", "-w",
                                "--request-timeout=4s"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)
    kubectl("apply", "-f", "-", input="apiVersion: v1\nkind: ConfigMap\nmetadata: {name: w2}\n")
    try:
        out, _ = watcher.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        watcher.kill()
        out, _ = watcher.communicate()
    names = [line.split()[0] for line in out.splitlines()[1:] if line.strip()]
    assert "w" in names and "w2" in names


def test_protobuf_generators_get_a_clear_refusal(kubectl) -> None:
    result = kubectl("create", "configmap", "x", "--from-literal=a=b", check=False)
    assert result.returncode != 0 and "use `kubectl apply -f`" in result.stderr


def kubectl_path() -> str:
    from .conftest import kubectl_binary

    return kubectl_binary()


def test_qgov_dev_serves_until_interrupted(tmp_path) -> None:
    """`qgov dev` as a user starts it: prints its kubeconfig, kubectl reaches it, Ctrl-C stops it."""
    import re
    import signal
    import sys
    from pathlib import Path

    qgov = str(Path(sys.executable).parent / "qgov")
    proc = subprocess.Popen([qgov, "dev", "--workdir", str(tmp_path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        kubeconfig = None
        for line in proc.stdout:  # type: ignore[union-attr]
            if m := re.match(r"kubeconfig: (.+)", line):
                kubeconfig = m[1].strip()
                break
        assert kubeconfig == str(tmp_path / "kubeconfig")
        assert "server: http://127.0.0.1:" in Path(kubeconfig).read_text()
        out = subprocess.run([kubectl_path(), "--kubeconfig", kubeconfig, "get", "namespaces", "-o", "name"],
                             capture_output=True, text=True, timeout=30)
        assert out.stdout.split() == ["namespace/default", "namespace/kube-public", "namespace/kube-system"]
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(15) == 0
