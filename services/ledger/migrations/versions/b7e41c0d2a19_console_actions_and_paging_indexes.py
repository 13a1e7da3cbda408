"""console actions (the operations console's audit log) and keyset-paging indexes

Revision ID: b7e41c0d2a19
Revises: 8c9026a34a39
Create Date: 2026-12-07 03:10:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = 'b7e41c0d2a19'
down_revision: str | None = '8c9026a34a39'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('console_actions',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('who', sa.String(length=100), nullable=False),
    sa.Column('role', sa.String(length=20), nullable=False),
    sa.Column('action', sa.String(length=40), nullable=False),
    sa.Column('target', sa.String(length=200), nullable=False),
    sa.Column('detail', sa.JSON(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('console_actions', schema=None) as batch_op:
        batch_op.create_index('ix_console_actions_at', ['at'], unique=False)
    with op.batch_alter_table('erasure_requests', schema=None) as batch_op:
        batch_op.create_index('ix_erasure_requests_due_at_request_id', ['due_at', 'request_id'], unique=False)
        batch_op.create_index('ix_erasure_requests_status_due_at_request_id', ['status', 'due_at', 'request_id'],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table('erasure_requests', schema=None) as batch_op:
        batch_op.drop_index('ix_erasure_requests_status_due_at_request_id')
        batch_op.drop_index('ix_erasure_requests_due_at_request_id')
    with op.batch_alter_table('console_actions', schema=None) as batch_op:
        batch_op.drop_index('ix_console_actions_at')
    op.drop_table('console_actions')
