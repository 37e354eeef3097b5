"""End-to-end fixtures: a dev cluster with qgov's CRDs and a real `qgov operator` process.
The harness itself (Operator, Env, the chaos environment) is qgov_dev.harness, which bench/ shares."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest

from qgov_dev.devcluster.cluster import ThreadedDevCluster
from qgov_dev.devcluster.devmain import install_crds
from qgov_dev.harness import (  # noqa: F401  (the tests import these from here)
    BELL, G, JOB_LABEL_KEY, NS, TERMINAL, V, ChaosEnv, Env, Operator, StandInKubelet, chaos_environment,
    condition, upgrade_ledger, wait_for)
from qgov_dev.testing import pgserver
from tests.conftest import CLUSTER_KINDS


@pytest.fixture(params=CLUSTER_KINDS)
def cluster_kind(request: pytest.FixtureRequest) -> str:
    """Every end-to-end test that takes `env` runs on the emulator and on the real control plane."""
    return str(request.param)


@pytest.fixture
def env(tmp_path: Path, request: pytest.FixtureRequest, cluster_kind: str) -> Iterator[Env]:
    """A cluster and a running operator; `@pytest.mark.operator_env(NAME="value")` adds settings,
    `@pytest.mark.no_pod_runner` keeps every pod Pending (on the real cluster: the node is cordoned).
    On the real cluster the operator is a local process that is the ServiceAccount qgov-operator,
    so the manifests' RBAC judges every call it makes."""
    marker = request.node.get_closest_marker("operator_env")
    no_pods = request.node.get_closest_marker("no_pod_runner") is not None
    database_url = f"sqlite:///{tmp_path / 'ledger.db'}"
    if cluster_kind == "upstream":
        upstream = request.getfixturevalue("upstream_cluster")
        upstream.reset((NS,))
        cluster: Any = upstream
        kubeconfig = upstream.operator_kubeconfig()
        if no_pods:
            upstream.set_schedulable(False)
        holder = None
    else:
        holder = ThreadedDevCluster(workdir=tmp_path / "cluster", pods=not no_pods)
        cluster = holder.__enter__()
        holder.call(install_crds, cluster)
        kubeconfig = None
    api = kubernetes.config.new_client_from_config(config_file=str(cluster.kubeconfig))
    core, custom = kubernetes.client.CoreV1Api(api), kubernetes.client.CustomObjectsApi(api)
    core.create_namespace({"metadata": {"name": NS}})
    operator = Operator(cluster, database_url, tmp_path / "operator.log", marker.kwargs if marker else None,
                        kubeconfig=kubeconfig)
    try:
        operator.start()
        environment = Env(cluster, core, custom, operator, operator.database_url)
        # 0.30 USD per task, CPU free: every one-circuit job costs exactly 0.30 estimated and actual
        environment.backend("priced-aer", pricing={"perTask": "0.30"},
                            limits={"maxQubits": 20, "maxShots": 100000, "maxCircuits": 4})
        yield environment
    finally:
        operator.stop()
        if holder is not None:
            holder.__exit__(None, None, None)
        else:
            try:
                cluster.reset((NS,))  # first: uncordoned, the node would start every Pending pod left
            finally:
                if no_pods:
                    cluster.set_schedulable(True)
        api.close()


@pytest.fixture
def pg_env(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[ChaosEnv]:
    """Like `env`, but the ledger is PostgreSQL on a throwaway server of this test's own
    (`pg_env.pg.halt("fast")` / `.resume()` make an outage), and `pg_env.new_operator(label)` adds
    operator processes. `@pytest.mark.operator_env(...)` and `@pytest.mark.no_pod_runner` apply."""
    marker = request.node.get_closest_marker("operator_env")
    try:
        manager = chaos_environment(tmp_path / "chaos",
                                    pods="none" if request.node.get_closest_marker("no_pod_runner") else "real",
                                    operator_env=dict(marker.kwargs) if marker else None)
        environment = manager.__enter__()
    except pgserver.PostgresUnavailable as exc:
        pytest.fail(f"PostgreSQL is required for the chaos tests and could not start: {exc}", pytrace=False)
    try:
        yield environment
    finally:
        manager.__exit__(None, None, None)


def bearer_get(url: str, token: str | None) -> tuple[int, str]:
    """GET `url` with `Authorization: Bearer <token>` (none when token is None): the HTTP status and
    body, a refusal's as well as a success's."""
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token is not None else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
