"""/metrics answers only whom the API server allows, as controller-runtime's secure metrics serving
does: the scrape's bearer token authenticated by a TokenReview, its user authorised by a
SubjectAccessReview for GET /metrics (the ClusterRole qgov-metrics-reader).

Real control plane only (the emulator serves neither review). The operator is a local process
that is the ServiceAccount qgov-operator, so the manifests' RBAC (tokenreviews and
subjectaccessreviews create) is what lets it ask."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest

from qgov_dev.devcluster.controlplane import free_port
from tests.operator.conftest import NS, Operator, bearer_get

pytestmark = pytest.mark.slow


def get(port: int, token: str | None, path: str = "/metrics") -> tuple[int, str]:
    return bearer_get(f"http://127.0.0.1:{port}{path}", token)


def token_reviews(upstream: Any) -> float:
    """TokenReviews the API server has answered so far (its own apiserver_request_total)."""
    text = upstream.kubectl("get", "--raw", "/metrics")
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("apiserver_request_total{") and 'resource="tokenreviews"' in line
               and 'verb="POST"' in line)


@pytest.fixture
def served(upstream_cluster: Any, tmp_path: Path) -> Iterator[tuple[Any, int]]:
    upstream = upstream_cluster
    upstream.reset((NS,))
    port = free_port()
    operator = Operator(upstream, f"sqlite:///{tmp_path / 'ledger.db'}", tmp_path / "operator.log",
                        {"QGOV_METRICS_PORT": str(port)}, kubeconfig=upstream.operator_kubeconfig())
    try:
        operator.start()
        yield upstream, port
    finally:
        operator.stop()


def test_metrics_need_a_token_the_api_server_allows_to_read_them(served: tuple[Any, int]) -> None:
    upstream, port = served
    status, body = get(port, None)
    assert status == 401 and "bearer token is required" in body and "qgov_" not in body
    status, body = get(port, "not-a-token-anyone-issued")
    assert status == 401 and "not authenticated" in body and "qgov_" not in body

    # a real ServiceAccount of the cluster, bound to nothing: known, not allowed
    status, body = get(port, upstream.metrics_token(bound=False))
    assert status == 403, body
    assert 'system:serviceaccount:default:metrics-stranger may not get the non-resource URL "/metrics"' in body
    assert "qgov_" not in body

    # a team member's own token (the built-in `edit` role in its namespace) reads no other team's budgets
    api = kubernetes.config.new_client_from_config(config_file=str(upstream.kubeconfig))
    try:
        core = kubernetes.client.CoreV1Api(api)
        core.create_namespace({"metadata": {"name": NS}})
        core.create_namespaced_service_account(NS, {"metadata": {"name": "member"}})
        kubernetes.client.RbacAuthorizationV1Api(api).create_namespaced_role_binding(NS, {
            "metadata": {"name": "member-edit"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
            "subjects": [{"kind": "ServiceAccount", "name": "member", "namespace": NS}]})
    finally:
        api.close()
    status, _ = get(port, upstream.token(NS, "member"))
    assert status == 403

    # bound to qgov-metrics-reader: the metrics
    token = upstream.metrics_token()
    status, body = get(port, token)
    assert status == 200 and "qgov_leader" in body
    assert get(port, token, "/elsewhere")[0] == 404

    # the verdict is cached: five more scrapes with the same token ask the API server nothing
    before = token_reviews(upstream)
    assert [get(port, token)[0] for _ in range(5)] == [200] * 5
    assert token_reviews(upstream) == before
