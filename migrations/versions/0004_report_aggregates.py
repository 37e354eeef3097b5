"""report aggregates: reports and budget status read sums kept per period and per day, not every
reservation; compaction of closed periods (tombstones, a `compact` entry kind)

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01

Upgrading an existing ledger fills reservations.created_period (the budget period, under the
budget's current settings, that contains its created_at), reservations.top_cost, and builds
every aggregate from the reservations (aggregates.rebuild, the code `verify()` checks them with).
That reads every reservation once: count about 10 s per million on a small machine.

Downgrading drops the aggregates; compacted reservations (if `qgov ledger compact` ran) stay
gone: their folded `compact` entries become `adjust` entries (balances unchanged), and their
tombstones and report figures are lost.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

OLD_KINDS = "kind IN ('reserve', 'settle', 'release', 'adjust', 'late')"
NEW_KINDS = "kind IN ('reserve', 'settle', 'release', 'adjust', 'late', 'compact')"


def _kinds(check: str) -> None:
    with op.batch_alter_table("ledger_entries", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_ledger_entries_kind"), type_="check")
        batch_op.create_check_constraint("kind", check)


def _cell(*extra: sa.Column[Any]) -> list[sa.Column[Any]]:
    return [
        sa.Column("budget_id", sa.Integer(), nullable=False),
        sa.Column("grain", sa.String(length=1), nullable=False),
        sa.Column("compacted", sa.Boolean(), nullable=False),
        sa.Column("cell_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("period_start", sa.DateTime(timezone=True), nullable=False),
        *extra,
    ]


def _fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(["budget_id"], ["budgets.id"], name=op.f(f"fk_{table}_budget_id_budgets"),
                                   ondelete="CASCADE")


CELL_KEY = ("budget_id", "grain", "compacted", "cell_start", "period_start")


def upgrade() -> None:
    with op.batch_alter_table("reservations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("created_period", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("top_cost", sa.BigInteger(), nullable=True))
    _kinds(NEW_KINDS)

    big = sa.BigInteger
    op.create_table(
        "report_cells",
        *_cell(sa.Column("first_at", sa.DateTime(timezone=True), nullable=False),
               sa.Column("last_at", sa.DateTime(timezone=True), nullable=False),
               *(sa.Column(c, big(), nullable=False) for c in (
                   "settled", "overruns", "ratio_count", "ratio_units", "ratio_nanos", "max_units", "max_nanos", "max_actual",
                   "max_estimate", "late_jobs", "late_micro"))),
        sa.CheckConstraint("grain IN ('P', 'D')", name=op.f("ck_report_cells_grain")),
        _fk("report_cells"),
        sa.PrimaryKeyConstraint(*CELL_KEY, name="pk_report_cells"),
    )
    op.create_index("ix_report_cells_last", "report_cells", ["budget_id", "grain", "compacted", "last_at"])
    op.create_table(
        "report_lines",
        *_cell(sa.Column("kind", sa.String(length=16), nullable=False),
               sa.Column("name", sa.String(length=253), nullable=False),
               sa.Column("jobs", big(), nullable=False),
               sa.Column("spent_micro", big(), nullable=False),
               sa.Column("held_micro", big(), nullable=False)),
        sa.CheckConstraint("kind IN ('state', 'backend', 'session')", name=op.f("ck_report_lines_kind")),
        _fk("report_lines"),
        sa.PrimaryKeyConstraint(*CELL_KEY, "kind", "name", name="pk_report_lines"),
    )
    op.create_table(
        "report_ratios",
        *_cell(sa.Column("bucket", big(), nullable=False), sa.Column("jobs", big(), nullable=False)),
        _fk("report_ratios"),
        sa.PrimaryKeyConstraint(*CELL_KEY, "bucket", name="pk_report_ratios"),
    )
    op.create_table(
        "report_top",
        sa.Column("budget_id", sa.Integer(), nullable=False),
        sa.Column("grain", sa.String(length=1), nullable=False),
        sa.Column("cell_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("period_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("key", sa.String(length=253), nullable=False),
        sa.Column("job", sa.String(length=253), nullable=False),
        sa.Column("backend", sa.String(length=253), nullable=False),
        sa.Column("session", sa.String(length=253), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("estimate_micro", big(), nullable=False),
        sa.Column("actual_micro", big(), nullable=True),
        _fk("report_top"),
        sa.PrimaryKeyConstraint("budget_id", "grain", "cell_start", "period_start", "key", name="pk_report_top"),
    )
    op.create_table(
        "compacted_reservations",
        sa.Column("key", sa.String(length=253), nullable=False),
        sa.Column("budget_id", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("admitted", sa.Boolean(), nullable=False),
        sa.Column("late", sa.Boolean(), nullable=False),
        sa.Column("amount_micro", big(), nullable=False),
        sa.Column("actual_micro", big(), nullable=True),
        sa.Column("overrun_micro", big(), nullable=False),
        sa.Column("period_start", sa.DateTime(timezone=True), nullable=True),
        sa.Column("compacted_at", sa.DateTime(timezone=True), nullable=False),
        _fk("compacted_reservations"),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_compacted_reservations")),
    )
    op.create_index("ix_compacted_reservations_budget", "compacted_reservations", ["budget_id", "period_start"])

    conn = op.get_bind()
    _fill_created_period(conn)
    conn.execute(sa.text("UPDATE reservations SET top_cost = CASE state WHEN 'settled' THEN actual_micro "
                         "WHEN 'held' THEN amount_micro END"))
    op.create_index("ix_reservations_top", "reservations",
                    ["budget_id", "created_period", sa.text("top_cost DESC"), "key"])

    from governance.budget import aggregates

    aggregates.rebuild(conn)


def _fill_created_period(conn: sa.Connection) -> None:
    """Each reservation's creation period, under its budget's current settings (earlier settings are
    not recorded; any period works as a cell as long as the cell's span is right, which it is)."""
    from governance.budget.periods import utc, window_at

    meta = sa.MetaData()
    budgets = sa.Table("budgets", meta, autoload_with=conn)
    reservations = sa.Table("reservations", meta, autoload_with=conn)
    windows = sa.Table("qgov_0004_windows", meta, sa.Column("budget_id", sa.Integer(), primary_key=True),
                       sa.Column("start", sa.DateTime(timezone=True), primary_key=True))
    windows.create(conn)
    try:
        spans = {r.budget_id: (r.first, r.last) for r in conn.execute(
            sa.select(reservations.c.budget_id, sa.func.min(reservations.c.created_at).label("first"),
                      sa.func.max(reservations.c.created_at).label("last")).group_by(reservations.c.budget_id))}
        for b in conn.execute(sa.select(budgets.c.id, budgets.c.period, budgets.c.anchor)):
            if b.id not in spans:
                continue
            if b.period == "none":
                conn.execute(reservations.update().where(reservations.c.budget_id == b.id)
                             .values(created_period=utc(b.anchor)))
                continue
            first, last = (utc(t) for t in spans[b.id])
            starts: list[datetime] = []
            window = window_at(b.period, utc(b.anchor), first)
            while True:
                starts.append(window.start)
                if window.end is None or window.end > last:
                    break
                window = window_at(b.period, utc(b.anchor), window.end)
            conn.execute(windows.insert(), [dict(budget_id=b.id, start=s) for s in starts])
            latest = (sa.select(windows.c.start)
                      .where(windows.c.budget_id == reservations.c.budget_id,
                             windows.c.start <= reservations.c.created_at)
                      .order_by(windows.c.start.desc()).limit(1).scalar_subquery())
            conn.execute(reservations.update().where(reservations.c.budget_id == b.id)
                         .values(created_period=latest))
    finally:
        windows.drop(conn)


def downgrade() -> None:
    op.drop_index("ix_reservations_top", table_name="reservations")
    op.drop_index("ix_compacted_reservations_budget", table_name="compacted_reservations")
    op.drop_table("compacted_reservations")
    op.drop_table("report_top")
    op.drop_table("report_ratios")
    op.drop_table("report_lines")
    op.drop_index("ix_report_cells_last", table_name="report_cells")
    op.drop_table("report_cells")
    # the older schema knows no compaction: a folded entry keeps its sums as an adjustment
    op.execute("UPDATE ledger_entries SET kind = 'adjust' WHERE kind = 'compact'")
    _kinds(OLD_KINDS)
    with op.batch_alter_table("reservations", schema=None) as batch_op:
        batch_op.drop_column("top_cost")
        batch_op.drop_column("created_period")
