"""Wire the ledger to the runtime: its handlers, tables, migrations, deadline settings and gauge."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine

from services.ledger import batch
from services.ledger.handlers import HANDLERS
from services.ledger.metrics import REQUEST_STATES
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
        build_deps=lambda engine: _watched(engine, settings),
        database_only=True,
        prepare_batch=batch.prepare,  # a batch's requests in two statements, its writes in one flush
        flush_per_handler=False,
    )


def _watched(engine: Engine, settings: LedgerSettings) -> LedgerSettings:
    """The handlers' settings, once the requests-per-state gauge counts this database."""
    REQUEST_STATES.watch(engine, settings)
    return settings
