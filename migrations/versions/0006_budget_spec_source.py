"""the QiskitBudget (UID, generation) each budget's stored spec came from, so that a stale spec an
operator applies late (two operators during a failover) never overwrites a newer one

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # plain ALTER TABLE, not a batch copy: on SQLite a batch recreates `budgets`, and dropping the old
    # table would cascade to every reservation that refers to it
    op.add_column("budgets", sa.Column("source_uid", sa.String(64), nullable=True))
    op.add_column("budgets", sa.Column("source_generation", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    op.drop_column("budgets", "source_generation")
    op.drop_column("budgets", "source_uid")
