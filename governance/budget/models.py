"""Ledger tables (SQLAlchemy 2.0 typed models).

The budget row is the lock: every money movement on a budget first takes its row lock
(`SELECT ... FOR UPDATE` on PostgreSQL, `BEGIN IMMEDIATE` on SQLite), so writers of one
budget are serialised while writers of different budgets proceed in parallel.

Balances are per period (`budget_periods`) and can always be recomputed from the
append-only `ledger_entries`; `Ledger.verify()` checks that they agree.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
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


class LedgerEntry(Base):
    """Append-only log of every money movement; balances are the sums of these deltas."""

    __tablename__ = "ledger_entries"
    __table_args__ = (
        CheckConstraint("kind IN ('reserve', 'settle', 'release', 'adjust', 'late')", name="kind"),
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
