"""access requests (GDPR Art. 15): the request, each slice's part, and the export with its manifest

Revision ID: f7b2d4e6a813
Revises: e5a9c3b7d210
Create Date: 2026-12-07 14:45:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = 'f7b2d4e6a813'
down_revision: str | None = 'e5a9c3b7d210'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('access_requests',
    sa.Column('request_id', sa.String(length=36), nullable=False),
    sa.Column('user_id', sa.String(length=64), nullable=False),
    sa.Column('requested_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('opened_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('due_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('completed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('manifest', sa.JSON(), nullable=True),
    sa.Column('manifest_hash', sa.String(length=64), nullable=True),
    sa.Column('export_json', sa.Text(), nullable=True),
    sa.Column('export_html', sa.Text(), nullable=True),
    sa.Column('export_erased_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('export_erased_why', sa.String(length=20), nullable=True),
    sa.CheckConstraint("status IN ('open', 'complete')", name='ck_access_requests_status'),
    sa.PrimaryKeyConstraint('request_id')
    )
    with op.batch_alter_table('access_requests', schema=None) as batch_op:
        batch_op.create_index('ix_access_requests_status_due_at', ['status', 'due_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_access_requests_expires_at'), ['expires_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_access_requests_user_id'), ['user_id'], unique=False)
    op.create_table('access_parts',
    sa.Column('request_id', sa.String(length=36), nullable=False),
    sa.Column('service', sa.String(length=40), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('answered_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('items', sa.JSON(), nullable=True),
    sa.Column('sha256', sa.String(length=64), nullable=True),
    sa.ForeignKeyConstraint(['request_id'], ['access_requests.request_id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('request_id', 'service')
    )


def downgrade() -> None:
    op.drop_table('access_parts')
    with op.batch_alter_table('access_requests', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_access_requests_user_id'))
        batch_op.drop_index(batch_op.f('ix_access_requests_expires_at'))
        batch_op.drop_index('ix_access_requests_status_due_at')
    op.drop_table('access_requests')
