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
