"""paypal customers: each user's PayPal vault customer id

Revision ID: b3d1c0e2a4f5
Revises: f7271efbb775
Create Date: 2026-12-07 03:20:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = 'b3d1c0e2a4f5'
down_revision: str | None = 'f7271efbb775'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('paypal_customers',
    sa.Column('user_id', sa.String(length=64), nullable=False),
    sa.Column('customer_id', sa.String(length=36), nullable=False),
    sa.PrimaryKeyConstraint('user_id'),
    sa.UniqueConstraint('customer_id')
    )


def downgrade() -> None:
    op.drop_table('paypal_customers')
