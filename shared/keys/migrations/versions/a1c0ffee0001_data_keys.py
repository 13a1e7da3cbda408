"""data keys

Revision ID: a1c0ffee0001
Revises:
Create Date: 2026-12-07 14:20:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = 'a1c0ffee0001'
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'data_keys',
        sa.Column('key_id', sa.String(length=32), nullable=False),
        sa.Column('subject', sa.String(length=120), nullable=False),
        sa.Column('kek_id', sa.String(length=64), nullable=True),
        sa.Column('wrapped', sa.LargeBinary(), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('destroyed_at', sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint('key_id'),
    )
    op.create_index('ix_data_keys_subject', 'data_keys', ['subject'])


def downgrade() -> None:
    op.drop_index('ix_data_keys_subject', table_name='data_keys')
    op.drop_table('data_keys')
