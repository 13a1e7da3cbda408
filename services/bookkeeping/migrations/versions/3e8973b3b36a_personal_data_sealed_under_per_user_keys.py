"""personal data sealed under per-user keys

Revision ID: 3e8973b3b36a
Revises: 5a78941c9880
Create Date: 2026-12-07 13:59:51.433208
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from shared.keys.migrate import seal_existing


revision: str = '3e8973b3b36a'
down_revision: str | None = '5a78941c9880'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Sealed values are longer than the clear ones: text columns; rows written before are sealed in place.
    with op.batch_alter_table('customers', schema=None) as batch_op:
        batch_op.alter_column('visma_customer_id', existing_type=sa.VARCHAR(length=64), type_=sa.Text(), existing_nullable=True)
        batch_op.alter_column('name', existing_type=sa.VARCHAR(length=200), type_=sa.Text(), existing_nullable=True)
        batch_op.alter_column('email', existing_type=sa.VARCHAR(length=320), type_=sa.Text(), existing_nullable=True)
        batch_op.alter_column('phone', existing_type=sa.VARCHAR(length=40), type_=sa.Text(), existing_nullable=True)
        batch_op.alter_column('street', existing_type=sa.VARCHAR(length=200), type_=sa.Text(), existing_nullable=True)
        batch_op.alter_column('postal_code', existing_type=sa.VARCHAR(length=10), type_=sa.Text(), existing_nullable=True)
        batch_op.alter_column('city', existing_type=sa.VARCHAR(length=200), type_=sa.Text(), existing_nullable=True)
        batch_op.alter_column('company_name', existing_type=sa.VARCHAR(length=200), type_=sa.Text(), existing_nullable=True)
        batch_op.alter_column('corporate_id', existing_type=sa.VARCHAR(length=20), type_=sa.Text(), existing_nullable=True)
    seal_existing(op.get_bind(), 'bookkeeping', 'customers', ['user_id'], ['visma_customer_id', 'name', 'email', 'phone', 'street', 'postal_code', 'city', 'company_name', 'corporate_id'])


def downgrade() -> None:
    # Only the schema is reverted; sealed values stay sealed (they do not fit the short columns otherwise).
    pass
