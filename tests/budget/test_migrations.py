"""Alembic: upgrade from empty, downgrade to base, and no drift between models and migrations."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from governance.budget import db
from governance.budget.models import Base

TABLES = {"budgets", "budget_periods", "reservations", "ledger_entries", "adjustments"}


def test_upgrade_head_from_empty_then_downgrade_to_base(databases) -> None:
    url = databases.empty()
    assert db.upgrade(url) == db.head_revision()
    engine = db.make_engine(url)
    assert TABLES <= set(inspect(engine).get_table_names())
    db.check_schema(engine)  # does not raise at head
    db.downgrade(url, "base")
    assert not TABLES & set(inspect(engine).get_table_names())
    assert db.current_revision(engine) is None
    assert db.upgrade(url) == db.head_revision()  # and up again
    engine.dispose()


def test_models_and_migrated_schema_do_not_drift(databases) -> None:
    url = databases.empty()
    db.upgrade(url)
    engine = db.make_engine(url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    engine.dispose()
    assert diff == []


def test_upgrade_is_idempotent(databases) -> None:
    url = databases.empty()
    db.upgrade(url)
    assert db.upgrade(url) == db.head_revision()


MIGRATE_AT = """
import sys, time
from governance.budget import db
at = float(sys.argv[2])
time.sleep(max(0.0, at - time.time()))  # every process starts migrating at the same instant
print(db.upgrade(sys.argv[1]))
"""


def test_replicas_that_start_together_migrate_a_fresh_database_once(databases) -> None:
    """Two operator replicas (three here) starting at once against a database with no schema: each
    runs the migrations at start. One migrates, the others wait for it and find nothing to do:
    every one of them starts (none fails on a table the other created), and the schema is whole."""
    import os
    import subprocess
    import sys
    import time

    url = databases.empty()
    at = time.time() + 6  # after the slowest interpreter has imported alembic and SQLAlchemy
    procs = [subprocess.Popen([sys.executable, "-c", MIGRATE_AT, url, str(at)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=os.environ) for _ in range(3)]
    results = [(p.wait(120), *p.communicate()) for p in procs]
    assert [r[0] for r in results] == [0, 0, 0], [r[2][-1500:] for r in results]
    assert {r[1].strip() for r in results} == {db.head_revision()}
    engine = db.make_engine(url)
    db.check_schema(engine)
    assert TABLES <= set(inspect(engine).get_table_names())
    engine.dispose()
