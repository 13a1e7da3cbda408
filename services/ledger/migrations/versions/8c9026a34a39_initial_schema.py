"""initial schema

Revision ID: 8c9026a34a39
Revises: 
Create Date: 2026-11-25 09:28:43.025557
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '8c9026a34a39'
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # The runtime's inbox, outbox and tombstones come from shared/runtime/migrations (branch "runtime").
    op.create_table('erasure_requests',
    sa.Column('request_id', sa.String(length=36), nullable=False),
    sa.Column('user_id', sa.String(length=64), nullable=False),
    sa.Column('reason', sa.String(length=20), nullable=True),
    sa.Column('requested_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('opened_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('opened_by', sa.String(length=20), nullable=False),
    sa.Column('due_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('replay', sa.Boolean(), nullable=False),
    sa.Column('original_request_id', sa.String(length=36), nullable=True),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('completed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('receipt_hash', sa.String(length=64), nullable=True),
    sa.CheckConstraint("opened_by IN ('deregistration', 'report')", name='ck_erasure_requests_opened_by'),
    sa.CheckConstraint("status IN ('open', 'complete')", name='ck_erasure_requests_status'),
    sa.PrimaryKeyConstraint('request_id')
    )
    with op.batch_alter_table('erasure_requests', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_erasure_requests_completed_at'), ['completed_at'], unique=False)
        batch_op.create_index('ix_erasure_requests_status_due_at', ['status', 'due_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_erasure_requests_user_id'), ['user_id'], unique=False)

    op.create_table('erasure_slices',
    sa.Column('request_id', sa.String(length=36), nullable=False),
    sa.Column('service', sa.String(length=40), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('outcome', sa.String(length=20), nullable=True),
    sa.Column('reported_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('recorded_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('report', sa.JSON(), nullable=True),
    sa.ForeignKeyConstraint(['request_id'], ['erasure_requests.request_id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('request_id', 'service')
    )
    op.create_table('receipt_entries',
    sa.Column('request_id', sa.String(length=36), nullable=False),
    sa.Column('seq', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('service', sa.String(length=40), nullable=False),
    sa.Column('payload', sa.Text(), nullable=False),
    sa.Column('prev_hash', sa.String(length=64), nullable=False),
    sa.Column('entry_hash', sa.String(length=64), nullable=False),
    sa.Column('recorded_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['request_id'], ['erasure_requests.request_id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('request_id', 'seq'),
    sa.UniqueConstraint('request_id', 'service', name='uq_receipt_entries_request_service')
    )


def downgrade() -> None:
    op.drop_table('receipt_entries')
    op.drop_table('erasure_slices')
    with op.batch_alter_table('erasure_requests', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_erasure_requests_user_id'))
        batch_op.drop_index('ix_erasure_requests_status_due_at')
        batch_op.drop_index(batch_op.f('ix_erasure_requests_completed_at'))

    op.drop_table('erasure_requests')
