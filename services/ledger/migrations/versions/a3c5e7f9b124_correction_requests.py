"""correction requests (GDPR Art. 16, 19): the request and each slice's report

Revision ID: a3c5e7f9b124
Revises: f7b2d4e6a813
Create Date: 2026-12-07 15:00:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = 'a3c5e7f9b124'
down_revision: str | None = 'f7b2d4e6a813'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('correction_requests',
    sa.Column('request_id', sa.String(length=36), nullable=False),
    sa.Column('user_id', sa.String(length=64), nullable=False),
    sa.Column('fields', sa.JSON(), nullable=False),
    sa.Column('requested_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('opened_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('due_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('completed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('receipt_hash', sa.String(length=64), nullable=True),
    sa.CheckConstraint("status IN ('open', 'complete')", name='ck_correction_requests_status'),
    sa.PrimaryKeyConstraint('request_id')
    )
    with op.batch_alter_table('correction_requests', schema=None) as batch_op:
        batch_op.create_index('ix_correction_requests_status_due_at', ['status', 'due_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_correction_requests_user_id'), ['user_id'], unique=False)
    op.create_table('correction_parts',
    sa.Column('request_id', sa.String(length=36), nullable=False),
    sa.Column('service', sa.String(length=40), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('outcome', sa.String(length=20), nullable=True),
    sa.Column('corrected', sa.JSON(), nullable=True),
    sa.Column('recipients', sa.JSON(), nullable=True),
    sa.Column('reported_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['request_id'], ['correction_requests.request_id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('request_id', 'service')
    )


def downgrade() -> None:
    op.drop_table('correction_parts')
    with op.batch_alter_table('correction_requests', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_correction_requests_user_id'))
        batch_op.drop_index('ix_correction_requests_status_due_at')
    op.drop_table('correction_requests')
