"""Wire the ledger to the runtime: its handlers, tables, migrations and deadline settings."""

from __future__ import annotations

from pathlib import Path

from services.ledger.handlers import HANDLERS
from services.ledger.models import metadata
from services.ledger.settings import LedgerSettings
from shared.service import Service

NAME = "ledger"


def build() -> Service:
    """The ledger service, with deadlines read from the environment now."""
    settings = LedgerSettings()
    return Service(
        name=NAME,
        handlers=HANDLERS,
        metadata=metadata,
        migrations=Path(__file__).parent / "migrations",
        build_deps=lambda _engine: settings,
        database_only=True,
    )
