"""Shared fixtures. Every ledger test runs twice: on a SQLite file and on a real PostgreSQL.

The PostgreSQL server is started by the test session itself (a throwaway cluster on
loopback). If it cannot start the PostgreSQL tests ERROR, loudly: they are never skipped.
"""

from __future__ import annotations

import itertools
import shutil
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from governance.budget import db
from governance.budget.ledger import Ledger
from qgov_dev.testing import pgserver

DATABASES = ["sqlite", "postgresql"]
_counter = itertools.count()


class FakeClock:
    """A clock the test moves by hand, to cross period boundaries on purpose."""

    def __init__(self, start: datetime = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[pgserver.PostgresServer]:
    try:
        server = pgserver.start(fsync=False)
    except pgserver.PostgresUnavailable as exc:
        pytest.fail(f"PostgreSQL is required for the ledger suite and could not start: {exc}", pytrace=False)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def pg_template(pg_server: pgserver.PostgresServer) -> str:
    """A migrated database that each test clones (CREATE DATABASE ... TEMPLATE) in ~50 ms."""
    url = pgserver.create_database(pg_server, "qgov_template")
    db.upgrade(url)
    db.make_engine(url).dispose()
    return "qgov_template"


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "ledger.db"
    db.upgrade(f"sqlite:///{path}")
    return path


class DatabaseFactory:
    """Makes fresh, migrated databases of one kind."""

    def __init__(self, kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
        self.kind, self.request, self.tmp_path = kind, request, tmp_path

    def new(self) -> str:
        n = next(_counter)
        if self.kind == "sqlite":
            path = self.tmp_path / f"ledger-{n}.db"
            shutil.copy(self.request.getfixturevalue("sqlite_template"), path)
            return f"sqlite:///{path}"
        server = self.request.getfixturevalue("pg_server")
        return pgserver.create_database(server, f"qgov_test_{n}", self.request.getfixturevalue("pg_template"))

    def empty(self) -> str:
        """A database with no schema at all (for migration tests)."""
        n = next(_counter)
        if self.kind == "sqlite":
            return f"sqlite:///{self.tmp_path / f'empty-{n}.db'}"
        return pgserver.create_database(self.request.getfixturevalue("pg_server"), f"qgov_empty_{n}")


@pytest.fixture(params=DATABASES)
def databases(request: pytest.FixtureRequest, tmp_path: Path) -> DatabaseFactory:
    return DatabaseFactory(request.param, request, tmp_path)


@pytest.fixture
def database_url(databases: DatabaseFactory) -> str:
    return databases.new()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def ledger(database_url: str, clock: FakeClock) -> Iterator[Ledger]:
    ledger = Ledger(database_url, clock=clock)
    yield ledger
    ledger.close()


# ---------------------------------------------------------------------- the real Kubernetes cluster

CLUSTER_KINDS = ["emulator", "upstream"]


@pytest.fixture(scope="session")
def upstream_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator["UpstreamCluster"]:
    """One real control plane and node per test session (etcd, kube-apiserver, controller-manager,
    scheduler, built by scripts/kube-binaries.sh), qgov's manifests applied. If the binaries are
    missing the tests that need it ERROR with what to run: they are never skipped."""
    from qgov_dev.devcluster.controlplane import ControlPlaneError
    from qgov_dev.devcluster.upstream import UpstreamCluster

    cluster = UpstreamCluster(tmp_path_factory.mktemp("upstream"))
    try:
        cluster.start()
    except ControlPlaneError as exc:
        pytest.fail(f"the real-cluster tests need the upstream control plane: {exc}", pytrace=False)
    yield cluster
    cluster.stop()


if False:  # for type checkers only
    from qgov_dev.devcluster.upstream import UpstreamCluster  # noqa: F401
