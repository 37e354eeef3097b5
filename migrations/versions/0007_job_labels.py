"""each job's own labels at admission, kept with what it was admitted with, so its cost can be
attributed by label (the cost API's aggregate=label:KEY, the FOCUS export's Tags)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # jobs admitted before this revision have no labels on record: '{}'
    op.add_column("job_money", sa.Column("labels", sa.Text(), nullable=False, server_default="{}"))


def downgrade() -> None:
    with op.batch_alter_table("job_money") as batch:
        batch.drop_column("labels")
