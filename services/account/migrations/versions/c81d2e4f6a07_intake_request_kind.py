"""intake requests know what they ask for: erasure or access

Revision ID: c81d2e4f6a07
Revises: c7ea2f54a176
Create Date: 2026-12-07 15:10:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = 'c81d2e4f6a07'
down_revision: str | None = 'c7ea2f54a176'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('intake_requests', schema=None) as batch_op:
        batch_op.add_column(sa.Column('kind', sa.String(length=10), server_default='erasure', nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('intake_requests', schema=None) as batch_op:
        batch_op.drop_column('kind')
