"""How the account publishes events it originates (a confirmed e-mail request, the inactivity sweep).

They are staged in the account's outbox inside the caller's transaction, so the decision and the event
commit together; the service's relay publishes them, and an operator command relays what it staged itself
so it works with the service stopped. Should both relay the same row, consumers drop the copy by event id.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from schemas import EventData
from services.account.models import metadata
from shared.broker import producer as make_producer
from shared.codec import Outbound
from shared.db import ensure_schema, make_engine, session_factory
from shared.outbox import OutboxRelay, stage, stage_many
from shared.producer import Producer
from shared.settings import RuntimeSettings, database_url_for
from shared.topology import Names

MIGRATIONS = Path(__file__).parent / "migrations"
OUTBOX = metadata.tables["outbox"]


def stage_event(session: Session, data: EventData, runtime: RuntimeSettings) -> Outbound:
    """Sign an event as the pipeline does and write it to the account outbox in the caller's transaction."""
    return stage(session, OUTBOX, data, source=runtime.source, keyring=runtime.keyring,
                 key_id=runtime.signing_key_id)


def stage_events(session: Session, events: Iterable[EventData], runtime: RuntimeSettings) -> list[Outbound]:
    """stage_event for many events in one statement (the sweep's batches)."""
    return stage_many(session, OUTBOX, events, source=runtime.source, keyring=runtime.keyring,
                      key_id=runtime.signing_key_id)


@contextmanager
def account_database(database_url: str | None = None) -> Iterator[tuple[Engine, sessionmaker[Session]]]:
    """The account database brought to the newest schema, for operator commands; disposed on exit."""
    engine = make_engine(database_url or database_url_for("account"))
    try:
        ensure_schema(engine, metadata, MIGRATIONS)
        yield engine, session_factory(engine, metadata)
    finally:
        engine.dispose()


@contextmanager
def producer_for(runtime: RuntimeSettings, name: str) -> Iterator[Producer]:
    """A started, confirming producer on the namespace's events exchange; closed on exit."""
    with make_producer(runtime, exchange=Names(runtime.namespace).events_exchange, name=name) as producer:
        yield producer


def relay_outbox(engine: Engine, producer: Producer, *, batch: int = 1000) -> int:
    """Publish every committed outbox row with confirms, deleting each batch once confirmed; return how many."""
    relay = OutboxRelay(engine, OUTBOX, producer, batch=batch)
    published = 0
    while sent := relay.relay_once():
        published += sent
    return published
