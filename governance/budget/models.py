"""Ledger tables (SQLAlchemy 2.0 typed models).

The budget row is the lock: every money movement on a budget first takes its row lock
(`SELECT ... FOR UPDATE` on PostgreSQL, `BEGIN IMMEDIATE` on SQLite), so writers of one
budget are serialised while writers of different budgets proceed in parallel.

Balances are per period (`budget_periods`) and can always be recomputed from the
append-only `ledger_entries`; `Ledger.verify()` checks that they agree.

The cost report reads aggregates, not reservations (`report_cells`, `report_lines`,
`report_ratios`, `report_top`; see aggregates.py): they are kept in the same transaction as
the reservations they sum, so a report costs the same with ten or a million jobs behind it.
`compacted_reservations` remembers the keys whose rows `Ledger.compact` removed.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Table,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Budget(Base):
    """One budget: a namespace may have several; jobs name one or use the namespace default."""

    __tablename__ = "budgets"
    __table_args__ = (
        UniqueConstraint("namespace", "name", name="uq_budgets_namespace_name"),
        CheckConstraint("limit_micro >= 0", name="limit_nonneg"),
        CheckConstraint("unit IN ('USD', 'QPU-seconds')", name="unit"),
        CheckConstraint("period IN ('none', 'daily', 'weekly', 'monthly')", name="period"),
        CheckConstraint("enforcement IN ('hard', 'queue')", name="enforcement"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    namespace: Mapped[str] = mapped_column(String(253))
    name: Mapped[str] = mapped_column(String(253))
    limit_micro: Mapped[int] = mapped_column(BigInteger)
    unit: Mapped[str] = mapped_column(String(16))
    period: Mapped[str] = mapped_column(String(16))
    anchor: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    enforcement: Mapped[str] = mapped_column(String(16))
    warn_at: Mapped[str] = mapped_column(String(200), default="")  # comma-separated percentages
    queue_seq: Mapped[int] = mapped_column(BigInteger, default=0)  # last FIFO ticket handed out
    queued_count: Mapped[int] = mapped_column(Integer, default=0)  # reservations waiting in the queue
    # set when the QiskitBudget is deleted: no new reservations; held ones still settle; history stays
    retired_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # the QiskitBudget object (UID) and spec generation the stored spec came from: two operators may
    # apply the same object's specs in either order; an older generation never overwrites a newer one
    source_uid: Mapped[str | None] = mapped_column(String(64), nullable=True)
    source_generation: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class BudgetPeriod(Base):
    """Stored balances of one budget in one period window."""

    __tablename__ = "budget_periods"
    __table_args__ = (
        UniqueConstraint("budget_id", "period_start", name="uq_budget_periods_budget_start"),
        CheckConstraint("held_micro >= 0", name="held_nonneg"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    budget_id: Mapped[int] = mapped_column(ForeignKey("budgets.id", ondelete="CASCADE"))
    period_start: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    period_end: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    limit_micro: Mapped[int] = mapped_column(BigInteger)  # the limit in force for this period
    spent_micro: Mapped[int] = mapped_column(BigInteger, default=0)
    held_micro: Mapped[int] = mapped_column(BigInteger, default=0)
    overrun_micro: Mapped[int] = mapped_column(BigInteger, default=0)  # charged beyond reservations
    warned_pct: Mapped[int] = mapped_column(Integer, default=0)  # highest warning threshold crossed


class Reservation(Base):
    """One job's claim on a budget, keyed by the job's UID (the idempotency key)."""

    __tablename__ = "reservations"
    __table_args__ = (
        CheckConstraint(
            "state IN ('queued', 'held', 'settled', 'released', 'refused')", name="state"
        ),
        CheckConstraint("amount_micro >= 0", name="amount_nonneg"),
        Index("ix_reservations_queue", "budget_id", "state", "queue_seq"),
        Index("ix_reservations_period", "budget_id", "period_start"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(253), unique=True)
    budget_id: Mapped[int] = mapped_column(ForeignKey("budgets.id", ondelete="CASCADE"))
    job: Mapped[str] = mapped_column(String(253), default="")
    backend: Mapped[str] = mapped_column(String(253), default="")
    session: Mapped[str] = mapped_column(String(253), default="")
    amount_micro: Mapped[int] = mapped_column(BigInteger)  # the estimate that was requested / held
    actual_micro: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    overrun_micro: Mapped[int] = mapped_column(BigInteger, default=0)
    state: Mapped[str] = mapped_column(String(16))
    period_start: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    queue_seq: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    message: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    admitted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # the budget period current when the reservation was made (period_start is the one it was
    # admitted in, which differs for work queued across a rollover): its report cell
    created_period: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # what ranks it among the report's top jobs: the actual if settled, the amount if held, else NULL
    top_cost: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


# the report's top jobs of a period: WHERE budget_id, created_period ORDER BY top_cost DESC, key
# LIMIT n reads n index entries
Index("ix_reservations_top", Reservation.budget_id, Reservation.created_period, Reservation.top_cost.desc(),
      Reservation.key)


class LedgerEntry(Base):
    """Append-only log of every money movement; balances are the sums of these deltas."""

    __tablename__ = "ledger_entries"
    __table_args__ = (
        CheckConstraint("kind IN ('reserve', 'settle', 'release', 'adjust', 'late', 'compact')", name="kind"),
        Index("ix_ledger_entries_budget_period", "budget_id", "period_start"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    budget_id: Mapped[int] = mapped_column(ForeignKey("budgets.id", ondelete="CASCADE"))
    period_start: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    reservation_key: Mapped[str | None] = mapped_column(String(253), nullable=True)
    kind: Mapped[str] = mapped_column(String(16))
    held_delta: Mapped[int] = mapped_column(BigInteger, default=0)
    spent_delta: Mapped[int] = mapped_column(BigInteger, default=0)
    note: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Adjustment(Base):
    """Idempotency record for manual adjustments (credits and debits)."""

    __tablename__ = "adjustments"

    key: Mapped[str] = mapped_column(String(253), primary_key=True)
    budget_id: Mapped[int] = mapped_column(ForeignKey("budgets.id", ondelete="CASCADE"))
    amount_micro: Mapped[int] = mapped_column(BigInteger)
    period_start: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


# ---------------------------------------------------------------------- report aggregates
#
# A cell is what the report sums: the reservations of one budget made while one budget period
# was current (grain 'P', cell_start = that period's start), or the part of those made on one
# UTC day (grain 'D', cell_start = that midnight). Rows with compacted = false hold the cell's
# totals over every reservation it ever had, and are what reports read; rows with compacted =
# true hold the part of those totals whose reservations `Ledger.compact` removed, so `verify()`
# can still recompute the rest from the rows that remain.

_CELL = ("budget_id", "grain", "compacted", "cell_start", "period_start")


class ReportCell(Base):
    """Per cell: the span of creation times seen, and the settled jobs' accuracy and late charges."""

    __tablename__ = "report_cells"
    __table_args__ = (
        PrimaryKeyConstraint(*_CELL, name="pk_report_cells"),
        CheckConstraint("grain IN ('P', 'D')", name="grain"),
        # which period cells a report window touches: those whose span reaches into it
        Index("ix_report_cells_last", "budget_id", "grain", "compacted", "last_at"),
    )

    budget_id: Mapped[int] = mapped_column(ForeignKey("budgets.id", ondelete="CASCADE"))
    grain: Mapped[str] = mapped_column(String(1))
    compacted: Mapped[bool] = mapped_column(Boolean)
    cell_start: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    period_start: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    first_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))  # earliest created_at in the cell
    last_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))  # latest created_at in the cell
    settled: Mapped[int] = mapped_column(BigInteger, default=0)
    overruns: Mapped[int] = mapped_column(BigInteger, default=0)  # settled with actual > estimate
    ratio_count: Mapped[int] = mapped_column(BigInteger, default=0)  # settled with an estimate > 0
    # sum over those of floor(10^9 * actual / estimate), split so that neither part can overflow:
    ratio_units: Mapped[int] = mapped_column(BigInteger, default=0)  # sum of the whole parts
    ratio_nanos: Mapped[int] = mapped_column(BigInteger, default=0)  # sum of the remainders (< 10^9 each)
    # the largest ratio: floor(10^9 * ratio) as whole part and remainder (-1, 0 when there is none) ...
    max_units: Mapped[int] = mapped_column(BigInteger, default=-1)
    max_nanos: Mapped[int] = mapped_column(BigInteger, default=0)
    max_actual: Mapped[int] = mapped_column(BigInteger, default=0)  # ... and exactly
    max_estimate: Mapped[int] = mapped_column(BigInteger, default=0)
    late_jobs: Mapped[int] = mapped_column(BigInteger, default=0)
    late_micro: Mapped[int] = mapped_column(BigInteger, default=0)


class ReportLine(Base):
    """Per cell and line: reservations per state (kind 'state'), and jobs, spent and held per
    backend or session (kinds 'backend', 'session'; held and settled reservations only)."""

    __tablename__ = "report_lines"
    __table_args__ = (
        PrimaryKeyConstraint(*_CELL, "kind", "name", name="pk_report_lines"),
        CheckConstraint("kind IN ('state', 'backend', 'session')", name="kind"),
    )

    budget_id: Mapped[int] = mapped_column(ForeignKey("budgets.id", ondelete="CASCADE"))
    grain: Mapped[str] = mapped_column(String(1))
    compacted: Mapped[bool] = mapped_column(Boolean)
    cell_start: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    period_start: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    kind: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(253))
    jobs: Mapped[int] = mapped_column(BigInteger, default=0)
    spent_micro: Mapped[int] = mapped_column(BigInteger, default=0)
    held_micro: Mapped[int] = mapped_column(BigInteger, default=0)


class ReportRatio(Base):
    """Per cell: a histogram of actual / estimate over settled jobs (aggregates.bucket_of), and the
    count of each group of 100 buckets under bucket -1 - group (aggregates.group_code)."""

    __tablename__ = "report_ratios"
    __table_args__ = (PrimaryKeyConstraint(*_CELL, "bucket", name="pk_report_ratios"),)

    budget_id: Mapped[int] = mapped_column(ForeignKey("budgets.id", ondelete="CASCADE"))
    grain: Mapped[str] = mapped_column(String(1))
    compacted: Mapped[bool] = mapped_column(Boolean)
    cell_start: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    period_start: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    bucket: Mapped[int] = mapped_column(BigInteger)
    jobs: Mapped[int] = mapped_column(BigInteger, default=0)


class ReportTop(Base):
    """The most expensive compacted jobs of a cell (at most report.TOP_JOBS): the report's top jobs
    come from the reservations index for the rows that remain, and from here for those removed."""

    __tablename__ = "report_top"
    __table_args__ = (PrimaryKeyConstraint("budget_id", "grain", "cell_start", "period_start", "key",
                                           name="pk_report_top"),)

    budget_id: Mapped[int] = mapped_column(ForeignKey("budgets.id", ondelete="CASCADE"))
    grain: Mapped[str] = mapped_column(String(1))
    cell_start: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    period_start: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    key: Mapped[str] = mapped_column(String(253))
    job: Mapped[str] = mapped_column(String(253), default="")
    backend: Mapped[str] = mapped_column(String(253), default="")
    session: Mapped[str] = mapped_column(String(253), default="")
    state: Mapped[str] = mapped_column(String(16))
    estimate_micro: Mapped[int] = mapped_column(BigInteger)
    actual_micro: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class CompactedReservation(Base):
    """A reservation `Ledger.compact` removed: enough to replay its key (a reserve, settle or
    release of it returns its outcome and changes nothing) and for `verify()` to check the
    compacted totals against. Its report figures live on in the aggregates."""

    __tablename__ = "compacted_reservations"
    __table_args__ = (Index("ix_compacted_reservations_budget", "budget_id", "period_start"),)

    key: Mapped[str] = mapped_column(String(253), primary_key=True)
    budget_id: Mapped[int] = mapped_column(ForeignKey("budgets.id", ondelete="CASCADE"))
    state: Mapped[str] = mapped_column(String(16))  # settled, released or refused
    admitted: Mapped[bool] = mapped_column(Boolean)  # it was held at some point
    late: Mapped[bool] = mapped_column(Boolean)  # settled by a late charge
    amount_micro: Mapped[int] = mapped_column(BigInteger)
    actual_micro: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    overrun_micro: Mapped[int] = mapped_column(BigInteger, default=0)
    period_start: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    compacted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


# ---------------------------------------------------------------------- a job's money state
#
# What decides a job's charge lives here, keyed by the job's UID, never in the job's status (which a
# namespace member can write): what the job was admitted with (`job_money`: the budget it was
# admitted against, whether a dedicated session pays, the modelled usage of the circuits that were
# priced) and each attempt (`job_attempts`: the UID of the pod the operator created for it, and,
# once counted, what it was charged). Status is a display of these rows.


class JobMoney(Base):
    """What a job was admitted with: the facts its charges are computed from."""

    __tablename__ = "job_money"

    key: Mapped[str] = mapped_column(String(253), primary_key=True)  # the job's UID
    job: Mapped[str] = mapped_column(String(253), default="")  # namespace/name, for people
    budget: Mapped[str] = mapped_column(String(253), default="")  # namespace/name it was admitted against ('' none)
    unit: Mapped[str] = mapped_column(String(16), default="USD")
    paid_by_session: Mapped[bool] = mapped_column(Boolean, default=False)
    backend: Mapped[str] = mapped_column(String(253), default="")
    session: Mapped[str] = mapped_column(String(253), default="")  # the QiskitSession it was placed in ('' none)
    # the model's usage of the priced circuits, without the safety margin (decimal strings)
    model_qpu_seconds: Mapped[str] = mapped_column(String(40), default="0")
    model_cpu_seconds: Mapped[str] = mapped_column(String(40), default="0")
    model_shots: Mapped[int] = mapped_column(BigInteger, default=0)
    model_tasks: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # the job's labels at admission, a JSON object (cost attribution: costview, FOCUS Tags)
    labels: Mapped[str] = mapped_column(Text, default="{}", server_default="{}")


class JobAttempt(Base):
    """One attempt of a job: its pod (the operator's own) and, once counted, its charge."""

    __tablename__ = "job_attempts"
    __table_args__ = (
        PrimaryKeyConstraint("key", "attempt", name="pk_job_attempts"),
        CheckConstraint("charge_micro IS NULL OR charge_micro >= 0", name="charge_nonneg"),
        CheckConstraint("attempt >= 1", name="attempt_positive"),
    )

    key: Mapped[str] = mapped_column(String(253))  # the job's UID
    attempt: Mapped[int] = mapped_column(Integer)
    pod_uid: Mapped[str | None] = mapped_column(String(64), nullable=True)  # the pod the operator created
    counted: Mapped[bool] = mapped_column(Boolean, default=False)
    charge_micro: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    qpu_seconds: Mapped[str] = mapped_column(String(40), default="0")
    source: Mapped[str] = mapped_column(Text, default="")  # where the charged usage came from
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    counted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


def table_of(model: type[Base]) -> Table:
    """The Core table of a mapped class, typed as a Table (`__table__` is typed as any FromClause),
    for the statements the ledger and its reports build in SQL expression language."""
    table = model.__table__
    assert isinstance(table, Table)
    return table
