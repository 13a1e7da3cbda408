"""personal data sealed under per-user keys

Revision ID: 9420d92ec616
Revises: b3d1c0e2a4f5
Create Date: 2026-12-07 13:59:53.377053
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from shared.keys.migrate import seal_existing


revision: str = '9420d92ec616'
down_revision: str | None = 'b3d1c0e2a4f5'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Sealed values are longer than the clear ones: text columns; rows written before are sealed in place.
    with op.batch_alter_table('payments', schema=None) as batch_op:
        batch_op.alter_column('payer_id', existing_type=sa.VARCHAR(length=64), type_=sa.Text(), existing_nullable=True)
    seal_existing(op.get_bind(), 'payment', 'payments', ['purchase_id'], ['payer_id'])


def downgrade() -> None:
    # Only the schema is reverted; sealed values stay sealed (they do not fit the short columns otherwise).
    pass
