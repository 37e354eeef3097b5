"""Admission webhook latency on the real control plane, for a circuit the webhook has priced before.

    python bench/webhook.py [--reviews 1000] [--creates 300] [--kubectl 50]

Starts the upstream control plane (etcd, kube-apiserver, ...; scripts/kube-binaries.sh builds it),
a local `qgov operator` that is the ServiceAccount qgov-operator and serves the webhook on
127.0.0.1 (the manifests' ValidatingWebhookConfiguration pointed at it, with its CA), a 1000 USD
budget and the fake_manila backend. Then, for the Bell circuit on fake_manila (priced once first):

- review: the webhook's own time per AdmissionReview (its X-Qgov-Review-Seconds: JSON in, the
  review, JSON out), POSTed directly over HTTPS, one at a time;
- create --dry-run: the API server round trip of a QiskitJob create with dryRun=All through the
  kubernetes client (authentication, schema, the webhook call over TLS, nothing stored);
- kubectl: `kubectl apply --dry-run=server -f job.yaml`, a user's whole command (process start
  included).
Reported: p50, p99 and max of each, in ms.
"""

from __future__ import annotations

import argparse
import json
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import kubernetes
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from qgov_dev.devcluster.controlplane import free_port  # noqa: E402
from qgov_dev.devcluster.upstream import SYSTEM_NAMESPACE, UpstreamCluster, kubectl_binary  # noqa: E402
from qgov_dev.harness import BELL, G, NS, V, Operator, restore_configuration, webhook_url  # noqa: E402


def percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return (f"p50 {statistics.median(ordered) * 1000:7.2f} ms   p99 {p99 * 1000:7.2f} ms   "
            f"max {ordered[-1] * 1000:7.2f} ms   (n={len(ordered)})")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reviews", type=int, default=1000)
    parser.add_argument("--creates", type=int, default=300)
    parser.add_argument("--kubectl", type=int, default=50)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="qgov-webhook-bench-"))
    cluster = UpstreamCluster(work / "upstream").start()
    api = kubernetes.config.new_client_from_config(config_file=str(cluster.kubeconfig))
    core, custom = kubernetes.client.CoreV1Api(api), kubernetes.client.CustomObjectsApi(api)
    port = free_port()
    url = f"https://127.0.0.1:{port}/validate"
    operator = Operator(cluster, f"sqlite:///{work / 'ledger.db'}", work / "operator.log",
                        {"QGOV_WEBHOOK_PORT": str(port), "QGOV_WEBHOOK_URL": url,
                         "QGOV_WEBHOOK_NAMESPACE": SYSTEM_NAMESPACE}, kubeconfig=cluster.operator_kubeconfig())
    try:
        core.create_namespace({"metadata": {"name": NS}})
        operator.start()
        while webhook_url(api) != url:
            time.sleep(0.2)
        custom.create_cluster_custom_object(G, V, "qiskitbackends", {
            "apiVersion": f"{G}/{V}", "kind": "QiskitBackend", "metadata": {"name": "fake-manila"},
            "spec": {"provider": "fake", "name": "fake_manila", "pricing": {"perQPUSecond": "1.60"}}})
        custom.create_namespaced_custom_object(G, V, NS, "qiskitbudgets", {
            "apiVersion": f"{G}/{V}", "kind": "QiskitBudget", "metadata": {"name": NS}, "spec": {"limit": "1000.00"}})
        while not (custom.get_namespaced_custom_object(G, V, NS, "qiskitbudgets", NS).get("status") or {}).get("limit"):
            time.sleep(0.2)
        job = {"apiVersion": f"{G}/{V}", "kind": "QiskitJob", "metadata": {"name": "bell", "namespace": NS},
               "spec": {"backend": "fake-manila", "circuits": [BELL], "shots": 4000}}
        first = time.perf_counter()
        custom.create_namespaced_custom_object(G, V, NS, "qiskitjobs", job, dry_run="All")
        print(f"first create --dry-run (pricing the circuit, transpiled for fake_manila): "
              f"{(time.perf_counter() - first) * 1000:.1f} ms")

        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        reviews = []
        for _ in range(args.reviews):
            body = json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
                "uid": str(uuid.uuid4()), "kind": {"group": G, "version": V, "kind": "QiskitJob"},
                "operation": "CREATE", "namespace": NS, "name": "bell", "object": job, "dryRun": True}}).encode()
            request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
            with urllib.request.urlopen(request, context=context) as answer:
                reviews.append(float(answer.headers["X-Qgov-Review-Seconds"]))
                assert json.loads(answer.read())["response"]["allowed"]
        creates = []
        for _ in range(args.creates):
            started = time.perf_counter()
            custom.create_namespaced_custom_object(G, V, NS, "qiskitjobs", job, dry_run="All")
            creates.append(time.perf_counter() - started)
        path = work / "job.yaml"
        path.write_text(yaml.safe_dump(job))
        runs = []
        for _ in range(args.kubectl):
            started = time.perf_counter()
            done = subprocess.run([kubectl_binary(), "--kubeconfig", str(cluster.kubeconfig), "apply",
                                   "--dry-run=server", "-f", str(path)], capture_output=True, text=True)
            runs.append(time.perf_counter() - started)
            assert done.returncode == 0 and "Warning: estimated" in done.stderr, done.stderr
        print(f"review (the webhook's own time)      {percentiles(reviews)}")
        print(f"create --dry-run (API round trip)    {percentiles(creates)}")
        print(f"kubectl apply --dry-run=server       {percentiles(runs)}")
    finally:
        operator.stop()
        try:
            restore_configuration(api)
        finally:
            api.close()
            cluster.stop()


if __name__ == "__main__":
    main()
