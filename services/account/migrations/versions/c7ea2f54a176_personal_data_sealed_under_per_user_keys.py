"""personal data sealed under per-user keys

Revision ID: c7ea2f54a176
Revises: 33b6831414c9
Create Date: 2026-12-07 13:59:48.044015
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from shared.keys.migrate import seal_existing


revision: str = 'c7ea2f54a176'
down_revision: str | None = '33b6831414c9'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


NAMES = {'uq': 'uq_%(table_name)s_%(column_0_name)s'}


def upgrade() -> None:
    # Sealed values are longer than the clear ones: text columns. The address is found by its blind index.
    with op.batch_alter_table('completion_notices', schema=None) as batch_op:
        batch_op.alter_column('email', existing_type=sa.VARCHAR(length=254), type_=sa.Text(), existing_nullable=False)
    with op.batch_alter_table('devices', schema=None) as batch_op:
        batch_op.alter_column('name', existing_type=sa.VARCHAR(length=200), type_=sa.Text(), existing_nullable=False)
    # SQLite reflects the initial schema's UNIQUE(email) without a name: the convention gives it one to drop.
    with op.batch_alter_table('users', schema=None, naming_convention=NAMES) as batch_op:
        batch_op.add_column(sa.Column('email_index', sa.String(length=64), nullable=True))
        batch_op.drop_constraint(_email_unique(), type_='unique')
        batch_op.alter_column('name', existing_type=sa.VARCHAR(length=200), type_=sa.Text(), existing_nullable=False)
        batch_op.alter_column('email', existing_type=sa.VARCHAR(length=254), type_=sa.Text(), existing_nullable=False)
        batch_op.alter_column('phone', existing_type=sa.VARCHAR(length=20), type_=sa.Text(), existing_nullable=True)
        batch_op.alter_column('street', existing_type=sa.VARCHAR(length=200), type_=sa.Text(), existing_nullable=True)
        batch_op.alter_column('postal_code', existing_type=sa.VARCHAR(length=6), type_=sa.Text(), existing_nullable=True)
        batch_op.alter_column('city', existing_type=sa.VARCHAR(length=100), type_=sa.Text(), existing_nullable=True)
        batch_op.alter_column('company_name', existing_type=sa.VARCHAR(length=200), type_=sa.Text(), existing_nullable=True)
        batch_op.alter_column('corporate_id', existing_type=sa.VARCHAR(length=12), type_=sa.Text(), existing_nullable=True)
    conn = op.get_bind()
    seal_existing(conn, 'account', 'users', ['user_id'], ['name', 'email', 'phone', 'street', 'postal_code', 'city', 'company_name', 'corporate_id'], indexes={'email_index': 'email'})
    seal_existing(conn, 'account', 'devices', ['device_id'], ['name', 'location_note', 'description'])
    seal_existing(conn, 'account', 'completion_notices', ['request_id'], ['email'], owner='request_id',
                  subject=lambda request_id: f"notice:{request_id}")
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.alter_column('email_index', existing_type=sa.String(length=64), nullable=False)
        batch_op.create_unique_constraint('uq_users_email_index', ['email_index'])


def _email_unique() -> str:
    """The name the database gave the unnamed UNIQUE(email) of the initial schema."""
    conn = op.get_bind()
    if conn.dialect.name == 'sqlite':
        return 'uq_users_email'
    return next(c['name'] for c in sa.inspect(conn).get_unique_constraints('users') if c['column_names'] == ['email'])


def downgrade() -> None:
    # Sealed values cannot go back to the short clear columns: only the schema is reverted.
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_constraint('uq_users_email_index', type_='unique')
        batch_op.drop_column('email_index')
