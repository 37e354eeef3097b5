"""The webhook answers only the API server: with QGOV_WEBHOOK_CLIENT_CA (and CLIENT_NAMES) it
requires the client certificate the API server's AdmissionConfiguration gives it for webhooks
(the test bed's kube-apiserver runs with `--admission-control-config-file`, as the README tells a
cluster admin to). A forged AdmissionReview, which would otherwise tell anyone whether a Secret
exists in any namespace and how much any budget has left, gets no TLS connection at all, and one
with another certificate from the same CA (an admin's) gets 403; `kubectl apply` through the API
server is still reviewed.

Real control plane only, as every webhook test (see test_webhook_upstream.py)."""

from __future__ import annotations

import json
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from qgov_dev.devcluster.controlplane import WEBHOOK_CLIENT_NAME
from tests.operator.conftest import NS
from tests.operator.test_webhook_upstream import DENIED, Webhooked, qjob, webhooked

pytestmark = pytest.mark.slow


@pytest.fixture
def guarded(upstream_cluster: Any, tmp_path: Path) -> Iterator[Webhooked]:
    with webhooked(upstream_cluster, tmp_path,
                   {"QGOV_WEBHOOK_CLIENT_CA": str(upstream_cluster.control_plane.webhook_client_ca),
                    "QGOV_WEBHOOK_CLIENT_NAMES": WEBHOOK_CLIENT_NAME},
                   ("pricey", {"pricing": {"perTask": "2.00"}})) as env:
        yield env


def forged_review(namespace: str) -> bytes:
    """What anyone on the network could send: a QiskitJob create in another team's namespace."""
    review = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "0f3c9d3e-2b4a-4c1e-9a57-123456789abc", "operation": "CREATE", "namespace": namespace,
        "name": "probe", "kind": {"group": "qgov.dev", "version": "v1alpha1", "kind": "QiskitJob"},
        "resource": {"group": "qgov.dev", "version": "v1alpha1", "resource": "qiskitjobs"},
        "userInfo": {"username": "mallory"},
        "object": {"apiVersion": "qgov.dev/v1alpha1", "kind": "QiskitJob",
                   "metadata": {"name": "probe", "namespace": namespace},
                   "spec": {"backend": "pricey", "circuits": [qjob("x")["spec"]["circuits"][0]]}}}}
    body = json.dumps(review).encode()
    return (b"POST /validate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Connection: close\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)


def send(port: int, request: bytes, cert: tuple[Path, Path] | None = None) -> bytes:
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    if cert is not None:
        context.load_cert_chain(*cert)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw) as tls:
            tls.sendall(request)
            answer = b""
            while chunk := tls.recv(65536):
                answer += chunk
    return answer


def test_only_the_api_servers_certificate_gets_an_answer_and_kubectl_apply_is_still_reviewed(
        guarded: Webhooked) -> None:
    port = guarded.port  # type: ignore[attr-defined]
    guarded.budget("1.00")
    # no client certificate: the handshake fails, so not a byte of an answer (with TLS 1.3 the client
    # learns it only when it reads: an alert, or the connection closed)
    try:
        answer = send(port, forged_review(NS))
    except (ssl.SSLError, ConnectionError):
        answer = b""
    assert answer == b""
    # a certificate from the same CA that is not the API server's (the cluster admin's): 403, no review
    pki = guarded.upstream.control_plane.workdir / "pki"
    answer = send(port, forged_review(NS), (pki / "admin.crt", pki / "admin.key"))
    assert answer.startswith(b"HTTP/1.1 403"), answer[:200]
    assert b"budget" not in answer and b"USD" not in answer
    # the API server presents its certificate: the job is refused at apply, with the controller's message
    over = guarded.apply(qjob("too-dear", backend="pricey"))
    assert over.returncode == 1, over
    assert (DENIED + "exceeded budget team-a/team-a: requested 2.00 USD, spent 0.00 USD, reserved 0.00 USD, "
            "limit 1.00 USD") in over.stderr
    assert not guarded.exists("too-dear")
    log = guarded.operator.log.read_text()
    assert "refused an admission review from a client certificate for 'qgov-admin'" in log
