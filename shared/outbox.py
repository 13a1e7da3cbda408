"""Transactional outbox: events written with the handler's effects, published by a relay after commit."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, Row, Table, delete, func, insert, select
from sqlalchemy.orm import Session

from schemas import EventData
from shared.codec import Outbound, encode_own
from shared.errors import PublishError
from shared.faults import failpoint
from shared.logging import get_logger
from shared.producer import Producer

log = get_logger(__name__)
BACKLOG_REPORT_EVERY_S = 1.0


def stage(
    session: Session,
    outbox: Table,
    data: EventData,
    *,
    source: str,
    keyring: Mapping[str, bytes],
    key_id: str,
    subject: str | None = None,
) -> Outbound:
    """Sign an event and write it to the outbox inside the caller's transaction."""
    [message] = stage_many(session, outbox, [data], source=source, keyring=keyring, key_id=key_id, subject=subject)
    return message


def stage_many(
    session: Session,
    outbox: Table,
    events: Iterable[EventData],
    *,
    source: str,
    keyring: Mapping[str, bytes],
    key_id: str,
    subject: str | None = None,
) -> list[Outbound]:
    """Sign events (their personal field sealed, as everything we publish) and write them to the outbox in one
    statement, inside the caller's transaction."""
    messages = [encode_own(d, source=source, keyring=keyring, key_id=key_id, subject=subject) for d in events]
    if messages:
        now = datetime.now(UTC)
        session.execute(insert(outbox), [
            {"event_id": m.event_id, "event_type": m.event_type, "routing_key": m.routing_key, "body": m.body,
             "signature": m.signature, "source": m.source, "created_at": now}
            for m in messages])
    return messages


def backlog(engine: Engine, outbox: Table) -> int:
    """How many events are waiting in the outbox (a read: on SQLite it does not wait for a writer)."""
    with engine.connect().execution_options(sqlite_begin="DEFERRED") as conn:
        return int(conn.execute(select(func.count()).select_from(outbox)).scalar_one())


class OutboxRelay:
    """Publishes committed outbox rows with confirms, then deletes them; wakes on notify() or a poll."""

    def __init__(
        self, engine: Engine, outbox: Table, producer: Producer, *, batch: int = 500, poll: float = 1.0,
        on_backlog: Callable[[int], None] | None = None,
    ) -> None:
        """`on_backlog` hears how many events wait (the backlog gauge): 0 each time a pass leaves none, the
        count while the relay is busy (at most every BACKLOG_REPORT_EVERY_S) or failing."""
        self._on_backlog = on_backlog
        self._backlog_reported = 0.0
        self._engine = engine
        self._outbox = outbox
        self._producer = producer
        self._batch = batch
        self._poll = poll
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.published = 0

    def start(self) -> None:
        """Run the relay in a background thread."""
        self._thread = threading.Thread(target=self._loop, name="outbox-relay", daemon=True)
        self._thread.start()

    def notify(self) -> None:
        """Something was committed to the outbox: publish it now rather than at the next poll."""
        self._wake.set()

    def stop(self, drain_timeout: float = 10.0) -> None:
        """Publish what is committed (within the timeout), then stop."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(drain_timeout)

    def relay_once(self) -> int:
        """Publish one batch of committed rows; return how many were published."""
        table = self._outbox
        with self._engine.connect().execution_options(sqlite_begin="DEFERRED") as conn:
            rows = conn.execute(select(table).order_by(table.c.id).limit(self._batch)).all()
        if not rows:
            return 0
        failpoint("before_relay")
        try:
            self._producer.publish_many(
                Outbound(
                    event_id=r.event_id, event_type=r.event_type, routing_key=r.routing_key, body=r.body,
                    signature=r.signature, source=r.source,
                    timestamp=int(r.created_at.replace(tzinfo=r.created_at.tzinfo or UTC).timestamp()),
                )
                for r in rows
            )
        except PublishError as exc:  # forget what the broker did confirm; the rest is published again
            self._forget([rows[i] for i in exc.confirmed])
            raise
        self._forget(rows)
        return len(rows)

    def _forget(self, rows: Sequence[Row[Any]]) -> None:
        """Delete published rows from the outbox."""
        if not rows:
            return
        table = self._outbox
        with self._engine.begin() as conn:
            conn.execute(delete(table).where(table.c.id.in_([r.id for r in rows])))
        self.published += len(rows)

    def _report_backlog(self, waiting: int | None = None) -> None:
        """Tell on_backlog how many events wait: `waiting` when known (0 after an empty pass), else count them."""
        if self._on_backlog is None:
            return
        if waiting is None:
            if time.monotonic() - self._backlog_reported < BACKLOG_REPORT_EVERY_S:
                return  # a gauge, not a query per batch
            try:
                waiting = backlog(self._engine, self._outbox)
            except Exception:  # the database is away: the relay's own failure handling says so
                return
        self._backlog_reported = time.monotonic()
        self._on_backlog(waiting)

    def _loop(self) -> None:
        failures = 0
        while True:
            try:
                while self.relay_once():
                    failures = 0
                    self._report_backlog()
                self._report_backlog(0)  # the pass found nothing committed and unpublished
            except (PublishError, Exception) as exc:  # the relay must outlive any one failure
                self._report_backlog()
                failures += 1
                log.warning("outbox relay failed; will retry", error=str(exc), failures=failures)
                self._stop.wait(min(0.2 * 2**failures, 3.0))
                if self._stop.is_set() and failures > 3:
                    return
                continue
            if self._stop.is_set():
                return
            self._wake.wait(self._poll)
            self._wake.clear()
