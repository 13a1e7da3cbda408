"""The runtime's legal-hold tables: the newest hold state per user, and the erasures deferred under a hold.

Revision ID: 3c8d5e1f7a62
Revises: 7f3e1c2a9b40
Create Date: 2026-12-07 14:20:00

As in the branch's first migration, only what is missing is created: a database whose service created every
runtime table from the models (before the runtime branch existed) upgrades to the same schema.
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "3c8d5e1f7a62"
down_revision: str | None = "7f3e1c2a9b40"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    existing = set(sa.inspect(op.get_bind()).get_table_names())
    if "hold_states" not in existing:
        op.create_table(
            "hold_states",
            sa.Column("user_id", sa.String(length=64), nullable=False),
            sa.Column("hold_id", sa.Integer(), nullable=False),
            sa.Column("held", sa.Boolean(), nullable=False),
            sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
            sa.PrimaryKeyConstraint("user_id"),
        )
    if "parked_erasures" not in existing:
        op.create_table(
            "parked_erasures",
            sa.Column("event_id", sa.String(length=36), nullable=False),
            sa.Column("user_id", sa.String(length=64), nullable=False),
            sa.Column("request_id", sa.String(length=36), nullable=False),
            sa.Column("envelope", sa.Text(), nullable=False),
            sa.Column("parked_at", sa.DateTime(timezone=True), nullable=False),
            sa.PrimaryKeyConstraint("event_id"),
        )
        op.create_index("ix_parked_erasures_user_id", "parked_erasures", ["user_id"])


def downgrade() -> None:
    op.drop_index("ix_parked_erasures_user_id", table_name="parked_erasures")
    op.drop_table("parked_erasures")
    op.drop_table("hold_states")
