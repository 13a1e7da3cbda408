"""personal data sealed under per-user keys

Revision ID: a8c7c5673e5d
Revises: d5d3962e7f1d
Create Date: 2026-12-07 13:59:49.873334
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from shared.keys.migrate import seal_existing


revision: str = 'a8c7c5673e5d'
down_revision: str | None = 'd5d3962e7f1d'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # The address leaves the primary key for its blind index, and is sealed.
    with op.batch_alter_table('subscribers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('email_index', sa.String(length=64), nullable=True))
        batch_op.alter_column('email', existing_type=sa.VARCHAR(length=320), type_=sa.Text(), existing_nullable=False)
    seal_existing(op.get_bind(), 'newsletter', 'subscribers', ['user_id', 'email', 'list_id'], ['email'],
                  indexes={'email_index': 'email'})
    conn = op.get_bind()
    # SQLite reflects the initial schema's primary key without a name: the convention gives it one to drop.
    old = 'pk_subscribers' if conn.dialect.name == 'sqlite' else \
        sa.inspect(conn).get_pk_constraint('subscribers')['name']
    with op.batch_alter_table('subscribers', schema=None, naming_convention={'pk': 'pk_%(table_name)s'}) as batch_op:
        batch_op.alter_column('email_index', existing_type=sa.String(length=64), nullable=False)
        batch_op.drop_constraint(old, type_='primary')
        batch_op.create_primary_key('pk_subscribers', ['user_id', 'email_index', 'list_id'])


def downgrade() -> None:
    with op.batch_alter_table('subscribers', schema=None) as batch_op:
        batch_op.drop_constraint('pk_subscribers', type_='primary')
        batch_op.create_primary_key('pk_subscribers', ['user_id', 'email', 'list_id'])
        batch_op.drop_column('email_index')
