"""The cost API on the real control plane: a caller's own token, reviewed by the API server
(TokenReview, then SubjectAccessReview for get qiskitbudgets.qgov.dev per namespace), sees only the
namespaces its RBAC lets it read. The operator is a local process that is the ServiceAccount
qgov-operator, so the manifests' RBAC is what lets it ask."""

from __future__ import annotations

import json
import urllib.error
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest

from governance.budget import db
from governance.budget.ledger import Ledger
from governance.budget.types import BudgetSpec, ReserveRequest
from qgov_dev.devcluster.controlplane import free_port
from tests.operator.conftest import Operator, bearer_get, wait_for

pytestmark = pytest.mark.slow
TEAMS = ("cost-team-a", "cost-team-b")


def get(port: int, token: str | None, query: str = "?window=thismonth") -> tuple[int, str]:
    try:
        return bearer_get(f"http://127.0.0.1:{port}/costs{query}", token)
    except (urllib.error.URLError, ConnectionError):
        return 0, "not serving yet"


@pytest.fixture
def served(upstream_cluster: Any, tmp_path: Path) -> Iterator[tuple[Any, int]]:
    upstream = upstream_cluster
    upstream.reset(TEAMS)
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    db.upgrade(url)
    ledger = Ledger(url)
    for i, team in enumerate(TEAMS):  # a job settled in each team's budget this month
        ledger.upsert_budget(BudgetSpec(team, team, 100_000_000))
        ledger.reserve(ReserveRequest(f"{team}-j1", team, team, 2_000_000, job=f"{team}/j1", backend="aer_simulator"))
        ledger.settle(f"{team}-j1", 1_000_000 * (i + 1))
    ledger.close()
    api = kubernetes.config.new_client_from_config(config_file=str(upstream.kubeconfig))
    try:  # team-a's reader may get qiskitbudgets in its namespace only; the stranger may get nothing
        core, rbac = kubernetes.client.CoreV1Api(api), kubernetes.client.RbacAuthorizationV1Api(api)
        for team in TEAMS:
            core.create_namespace({"metadata": {"name": team}})
        for account in ("reader", "stranger"):
            core.create_namespaced_service_account(TEAMS[0], {"metadata": {"name": account}})
        rbac.create_namespaced_role(TEAMS[0], {"metadata": {"name": "budget-reader"}, "rules": [
            {"apiGroups": ["qgov.dev"], "resources": ["qiskitbudgets"], "verbs": ["get"]}]})
        rbac.create_namespaced_role_binding(TEAMS[0], {
            "metadata": {"name": "reader-budgets"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "budget-reader"},
            "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": TEAMS[0]}]})
    finally:
        api.close()
    port = free_port()
    operator = Operator(upstream, url, tmp_path / "operator.log", {"QGOV_COST_API_PORT": str(port)},
                        kubeconfig=upstream.operator_kubeconfig())
    try:
        operator.start()
        wait_for(lambda: get(port, None)[0] == 401, "the cost API to serve", timeout=60)
        yield upstream, port
    finally:
        operator.stop()
        upstream.reset(TEAMS)


def test_a_reader_of_one_namespace_sees_that_namespace_and_a_stranger_is_refused(served: tuple[Any, int]) -> None:
    upstream, port = served
    assert get(port, None) == (401, "a bearer token is required (Authorization: Bearer <token>)\n")
    assert get(port, "not-a-token-anyone-issued")[0] == 401

    reader = upstream.token(TEAMS[0], "reader")
    status, body = get(port, reader)
    assert status == 200, body
    answer = json.loads(body)
    assert answer["namespaces"] == [TEAMS[0]]
    assert answer["items"] == [{"name": TEAMS[0], "unit": "USD", "jobs": 1, "cost": "1.00", "estimate": "2.00",
                                "late": "0.00"}]
    status, body = get(port, reader, f"?namespace={TEAMS[1]}")
    assert status == 403
    assert body == (f"system:serviceaccount:{TEAMS[0]}:reader may not get qiskitbudgets.qgov.dev "
                    f"in namespace {TEAMS[1]}\n")

    status, body = get(port, upstream.token(TEAMS[0], "stranger"))
    assert status == 403 and "in any namespace that has a budget" in body

    # a ServiceAccount that may GET /metrics (qgov-metrics-reader) may still read no budget's costs
    assert get(port, upstream.metrics_token())[0] == 403
