"""initial ledger schema

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

from alembic import op
import sqlalchemy as sa


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('budgets',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('namespace', sa.String(length=253), nullable=False),
    sa.Column('name', sa.String(length=253), nullable=False),
    sa.Column('limit_micro', sa.BigInteger(), nullable=False),
    sa.Column('unit', sa.String(length=16), nullable=False),
    sa.Column('period', sa.String(length=16), nullable=False),
    sa.Column('anchor', sa.DateTime(timezone=True), nullable=False),
    sa.Column('enforcement', sa.String(length=16), nullable=False),
    sa.Column('warn_at', sa.String(length=200), nullable=False),
    sa.Column('queue_seq', sa.BigInteger(), nullable=False),
    sa.Column('queued_count', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("enforcement IN ('hard', 'queue')", name=op.f('ck_budgets_enforcement')),
    sa.CheckConstraint("period IN ('none', 'daily', 'weekly', 'monthly')", name=op.f('ck_budgets_period')),
    sa.CheckConstraint("unit IN ('USD', 'QPU-seconds')", name=op.f('ck_budgets_unit')),
    sa.CheckConstraint('limit_micro >= 0', name=op.f('ck_budgets_limit_nonneg')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_budgets')),
    sa.UniqueConstraint('namespace', 'name', name='uq_budgets_namespace_name')
    )
    op.create_table('adjustments',
    sa.Column('key', sa.String(length=253), nullable=False),
    sa.Column('budget_id', sa.Integer(), nullable=False),
    sa.Column('amount_micro', sa.BigInteger(), nullable=False),
    sa.Column('period_start', sa.DateTime(timezone=True), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['budget_id'], ['budgets.id'], name=op.f('fk_adjustments_budget_id_budgets'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('key', name=op.f('pk_adjustments'))
    )
    op.create_table('budget_periods',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('budget_id', sa.Integer(), nullable=False),
    sa.Column('period_start', sa.DateTime(timezone=True), nullable=False),
    sa.Column('period_end', sa.DateTime(timezone=True), nullable=True),
    sa.Column('limit_micro', sa.BigInteger(), nullable=False),
    sa.Column('spent_micro', sa.BigInteger(), nullable=False),
    sa.Column('held_micro', sa.BigInteger(), nullable=False),
    sa.Column('overrun_micro', sa.BigInteger(), nullable=False),
    sa.Column('warned_pct', sa.Integer(), nullable=False),
    sa.CheckConstraint('held_micro >= 0', name=op.f('ck_budget_periods_held_nonneg')),
    sa.ForeignKeyConstraint(['budget_id'], ['budgets.id'], name=op.f('fk_budget_periods_budget_id_budgets'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_budget_periods')),
    sa.UniqueConstraint('budget_id', 'period_start', name='uq_budget_periods_budget_start')
    )
    op.create_table('ledger_entries',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('budget_id', sa.Integer(), nullable=False),
    sa.Column('period_start', sa.DateTime(timezone=True), nullable=False),
    sa.Column('reservation_key', sa.String(length=253), nullable=True),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('held_delta', sa.BigInteger(), nullable=False),
    sa.Column('spent_delta', sa.BigInteger(), nullable=False),
    sa.Column('note', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("kind IN ('reserve', 'settle', 'release', 'adjust')", name=op.f('ck_ledger_entries_kind')),
    sa.ForeignKeyConstraint(['budget_id'], ['budgets.id'], name=op.f('fk_ledger_entries_budget_id_budgets'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ledger_entries'))
    )
    with op.batch_alter_table('ledger_entries', schema=None) as batch_op:
        batch_op.create_index('ix_ledger_entries_budget_period', ['budget_id', 'period_start'], unique=False)

    op.create_table('reservations',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('key', sa.String(length=253), nullable=False),
    sa.Column('budget_id', sa.Integer(), nullable=False),
    sa.Column('job', sa.String(length=253), nullable=False),
    sa.Column('backend', sa.String(length=253), nullable=False),
    sa.Column('session', sa.String(length=253), nullable=False),
    sa.Column('amount_micro', sa.BigInteger(), nullable=False),
    sa.Column('actual_micro', sa.BigInteger(), nullable=True),
    sa.Column('overrun_micro', sa.BigInteger(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('period_start', sa.DateTime(timezone=True), nullable=True),
    sa.Column('queue_seq', sa.BigInteger(), nullable=True),
    sa.Column('message', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('admitted_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("state IN ('queued', 'held', 'settled', 'released', 'refused')", name=op.f('ck_reservations_state')),
    sa.CheckConstraint('amount_micro >= 0', name=op.f('ck_reservations_amount_nonneg')),
    sa.ForeignKeyConstraint(['budget_id'], ['budgets.id'], name=op.f('fk_reservations_budget_id_budgets'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_reservations')),
    sa.UniqueConstraint('key', name=op.f('uq_reservations_key'))
    )
    with op.batch_alter_table('reservations', schema=None) as batch_op:
        batch_op.create_index('ix_reservations_period', ['budget_id', 'period_start'], unique=False)
        batch_op.create_index('ix_reservations_queue', ['budget_id', 'state', 'queue_seq'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('reservations', schema=None) as batch_op:
        batch_op.drop_index('ix_reservations_queue')
        batch_op.drop_index('ix_reservations_period')

    op.drop_table('reservations')
    with op.batch_alter_table('ledger_entries', schema=None) as batch_op:
        batch_op.drop_index('ix_ledger_entries_budget_period')

    op.drop_table('ledger_entries')
    op.drop_table('budget_periods')
    op.drop_table('adjustments')
    op.drop_table('budgets')
