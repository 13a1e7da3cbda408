"""each expected slice's last failure: attempts, failing system, error, next retry

Revision ID: e5a9c3b7d210
Revises: d41f7a2c9e63
Create Date: 2026-12-07 14:30:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = 'e5a9c3b7d210'
down_revision: str | None = 'd41f7a2c9e63'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('erasure_slices', schema=None) as batch_op:
        batch_op.add_column(sa.Column('attempts', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('failing_system', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('last_error', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('last_failed_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('next_retry_at', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('erasure_slices', schema=None) as batch_op:
        batch_op.drop_column('next_retry_at')
        batch_op.drop_column('last_failed_at')
        batch_op.drop_column('last_error')
        batch_op.drop_column('failing_system')
        batch_op.drop_column('attempts')
