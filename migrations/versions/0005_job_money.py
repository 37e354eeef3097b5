"""job money state in the ledger: what a job was admitted with and each attempt's pod and charge,
keyed by the job's UID (the job's status, which tenants can write, only displays it)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "job_money",
        sa.Column("key", sa.String(253), nullable=False),
        sa.Column("job", sa.String(253), nullable=False),
        sa.Column("budget", sa.String(253), nullable=False),
        sa.Column("unit", sa.String(16), nullable=False),
        sa.Column("paid_by_session", sa.Boolean(), nullable=False),
        sa.Column("backend", sa.String(253), nullable=False),
        sa.Column("session", sa.String(253), nullable=False),
        sa.Column("model_qpu_seconds", sa.String(40), nullable=False),
        sa.Column("model_cpu_seconds", sa.String(40), nullable=False),
        sa.Column("model_shots", sa.BigInteger(), nullable=False),
        sa.Column("model_tasks", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_job_money")),
    )
    op.create_table(
        "job_attempts",
        sa.Column("key", sa.String(253), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("pod_uid", sa.String(64), nullable=True),
        sa.Column("counted", sa.Boolean(), nullable=False),
        sa.Column("charge_micro", sa.BigInteger(), nullable=True),
        sa.Column("qpu_seconds", sa.String(40), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("counted_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("charge_micro IS NULL OR charge_micro >= 0", name=op.f("ck_job_attempts_charge_nonneg")),
        sa.CheckConstraint("attempt >= 1", name=op.f("ck_job_attempts_attempt_positive")),
        sa.PrimaryKeyConstraint("key", "attempt", name="pk_job_attempts"),
    )


def downgrade() -> None:
    op.drop_table("job_attempts")
    op.drop_table("job_money")
