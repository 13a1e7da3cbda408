"""extensions (GDPR Art. 12(3)) on erasure requests, and legal holds

Revision ID: d41f7a2c9e63
Revises: b7e41c0d2a19
Create Date: 2026-12-07 04:15:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = 'd41f7a2c9e63'
down_revision: str | None = 'b7e41c0d2a19'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('erasure_requests', schema=None) as batch_op:
        batch_op.add_column(sa.Column('extension_months', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('extension_reason', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('extended_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('extension_notice', sa.String(length=20), nullable=True))
    op.create_table('legal_holds',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('user_id', sa.String(length=64), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('placed_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('released_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('legal_holds', schema=None) as batch_op:
        batch_op.create_index('ix_legal_holds_user_id_released_at', ['user_id', 'released_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('legal_holds', schema=None) as batch_op:
        batch_op.drop_index('ix_legal_holds_user_id_released_at')
    op.drop_table('legal_holds')
    with op.batch_alter_table('erasure_requests', schema=None) as batch_op:
        batch_op.drop_column('extension_notice')
        batch_op.drop_column('extended_at')
        batch_op.drop_column('extension_reason')
        batch_op.drop_column('extension_months')
