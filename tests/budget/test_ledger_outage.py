"""A database outage: every ledger call says so with one clear error (never a driver traceback,
never the password), nothing half-written, and the same Ledger works again when the server is
back, although every pooled connection died with it. Real PostgreSQL, stopped as an operator
would see it: `pg_ctl stop -m fast` and `-m immediate`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from governance.budget import db
from governance.budget.errors import DatabaseUnavailable
from governance.budget.ledger import Ledger
from governance.budget.report import period_window
from governance.budget.types import BudgetSpec, ReserveRequest
from qgov_dev.testing import pgserver

NS = "team-a"
SECRET = "s3cret-password"


@pytest.fixture
def own_server() -> Iterator[pgserver.PostgresServer]:
    """A server of this test's own: stopping it disturbs no other test. Durable (fsync on): after
    `-m immediate` a server without it may lose commits, which no ledger could survive."""
    server = pgserver.start(fsync=True)
    yield server
    server.stop()


def req(key: str, amount: int) -> ReserveRequest:
    return ReserveRequest(key, NS, NS, amount, job=f"{NS}/{key}")


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_every_call_during_an_outage_raises_database_unavailable_and_the_ledger_recovers(
        own_server: pgserver.PostgresServer, mode: str) -> None:
    url = pgserver.create_database(own_server, "outage").replace("postgres@", f"postgres:{SECRET}@")
    db.upgrade(url)
    ledger = Ledger(url)
    ledger.upsert_budget(BudgetSpec(NS, NS, 12_000_000))
    assert ledger.reserve(req("ran", 300_000)).admitted
    balance = ledger.balance(NS, NS)
    window = period_window(balance.period_start, balance.period_end)

    own_server.halt(mode)
    calls = {
        "reserve": lambda: ledger.reserve(req("new", 300_000)),
        "settle": lambda: ledger.settle("ran", 300_000, ran=True),
        "release": lambda: ledger.release("ran"),
        "balance": lambda: ledger.balance(NS, NS),
        "reservation": lambda: ledger.reservation("ran"),
        "open_reservations": ledger.open_reservations,
        "reservations": ledger.reservations,
        "budgets": lambda: ledger.budgets(NS),
        "admit_queued": lambda: ledger.admit_queued(NS),
        "report": lambda: ledger.report(NS, window),
    }
    for name, call in calls.items():
        with pytest.raises(DatabaseUnavailable) as err:
            call()
        message = str(err.value)
        assert message.startswith("database postgresql+psycopg://postgres:***@127.0.0.1"), (name, message)
        assert SECRET not in message and "\n" not in message, (name, message)

    own_server.resume()
    # the same Ledger: its pooled connections died with the server and are replaced
    outcome = ledger.settle("ran", 300_000, ran=True)
    assert outcome.actual_micro == 300_000 and not outcome.late and not outcome.replayed
    assert not _exists(ledger, "new")  # the reserve that failed left nothing behind
    assert ledger.balance(NS, NS).spent_micro == 300_000
    assert ledger.verify() == []
    ledger.close()


def _exists(ledger: Ledger, key: str) -> bool:
    return any(r.key == key for r in ledger.reservations())
