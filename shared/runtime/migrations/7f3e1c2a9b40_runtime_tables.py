"""The runtime's own tables (inbox, outbox, tombstones): one migration every service's Alembic environment includes.

Revision ID: 7f3e1c2a9b40
Revises:
Create Date: 2026-12-07 03:10:00

Its own branch ("runtime"), beside each service's. Databases created before this branch existed got these
tables from their service's first migration: only what is missing is created, so an old database and a new
one upgrade to the same schema, and the service's revision ids stay what they were.
"""
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "7f3e1c2a9b40"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = ("runtime",)
depends_on: str | Sequence[str] | None = None


def _tables() -> list[tuple[str, list[Any]]]:
    return [
        ("inbox", [
            sa.Column("event_id", sa.String(length=36), nullable=False),
            sa.Column("event_type", sa.String(length=120), nullable=False),
            sa.Column("body_sha256", sa.String(length=64), nullable=False),
            sa.Column("handled_at", sa.DateTime(timezone=True), nullable=False),
            sa.PrimaryKeyConstraint("event_id"),
        ]),
        ("outbox", [
            sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
            sa.Column("event_id", sa.String(length=36), nullable=False),
            sa.Column("event_type", sa.String(length=120), nullable=False),
            sa.Column("routing_key", sa.String(length=200), nullable=False),
            sa.Column("body", sa.LargeBinary(), nullable=False),
            sa.Column("signature", sa.String(length=200), nullable=False),
            sa.Column("source", sa.String(length=200), nullable=False),
            sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
            sa.PrimaryKeyConstraint("id"),
        ]),
        ("tombstones", [
            sa.Column("user_id", sa.String(length=64), nullable=False),
            sa.Column("request_id", sa.String(length=36), nullable=False),
            sa.Column("erased_at", sa.DateTime(timezone=True), nullable=False),
            sa.PrimaryKeyConstraint("user_id"),
        ]),
    ]


def upgrade() -> None:
    existing = set(sa.inspect(op.get_bind()).get_table_names())
    for name, items in _tables():
        if name not in existing:
            op.create_table(name, *items)


def downgrade() -> None:
    for name, _items in reversed(_tables()):
        op.drop_table(name)
