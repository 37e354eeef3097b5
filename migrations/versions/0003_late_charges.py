"""late charges: work that ran after its reservation was released is charged, as its own entry kind

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

OLD = "kind IN ('reserve', 'settle', 'release', 'adjust')"
NEW = "kind IN ('reserve', 'settle', 'release', 'adjust', 'late')"


def _kinds(check: str) -> None:
    with op.batch_alter_table("ledger_entries", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_ledger_entries_kind"), type_="check")
        batch_op.create_check_constraint("kind", check)


def upgrade() -> None:
    _kinds(NEW)


def downgrade() -> None:
    # the older schema knows no late charges: they stay charged, as plain settlements
    op.execute("UPDATE ledger_entries SET kind = 'settle' WHERE kind = 'late'")
    _kinds(OLD)
