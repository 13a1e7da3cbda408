"""Dead letters over plain AMQP: browse without loss, show masked, replay without loss or duplication, purge.

Browsing takes messages with basic_get and holds them unacknowledged until it is done, then returns all it did
not settle (basic_nack, requeue). Each return adds one to the message's quorum delivery count; that is harmless
here because dead-letter queues have no `x-delivery-limit` (on RabbitMQ 3.x a quorum queue without one never
drops a message for being redelivered).

Replay is crash-safe through a small journal, keyed by (service, event id, failed-at): "publishing" before the
confirmed publish, "published" after its confirm, gone after the dead letter's ack has reached the broker. A
re-run that meets a dead letter journalled "published" only acknowledges it. One journalled "publishing" may
or may not have been confirmed, so it is published again: at worst a duplicate, which the services' inbox
absorbs (same id, same bytes) — never a loss.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pika
from pika.adapters.blocking_connection import BlockingChannel
from pika.exceptions import ChannelClosedByBroker

from schemas.catalog import SUBSCRIPTIONS
from shared.faults import failpoint
from shared.logging import mask_text, mask_value
from shared.producer import Producer, RawMessage
from shared.settings import RuntimeSettings
from shared.topology import Names

# Why a message failed and how often: meaningful for the failure, wrong for a fresh attempt.
FAILURE_HEADERS = frozenset({
    "x-attempts", "x-error-kind", "x-error", "x-failed-at", "x-last-error", "x-service", "x-death",
    "x-delivery-count",
})
BROKER_DEATH_PREFIXES = ("x-first-death-", "x-last-death-")
PROPERTY_NAMES = ("content_type", "content_encoding", "delivery_mode", "priority", "correlation_id", "reply_to",
                  "expiration", "message_id", "timestamp", "type", "user_id", "app_id", "cluster_id")
JOURNAL_FILE = "dlq-replay.sqlite"
Advance = Callable[[int], None]


class DeadLetterError(Exception):
    """An operator-facing failure: the message says what is wrong and what to do."""


def catalog_services() -> list[str]:
    """Every service of the catalog, in a stable order."""
    return sorted(SUBSCRIPTIONS)


def journal_path() -> Path:
    """Where the replay journal lives: $ERASURE_VAR_DIR (read now, not at import) or ./var."""
    return Path(os.environ.get("ERASURE_VAR_DIR", "var")) / JOURNAL_FILE


@dataclass(frozen=True)
class DeadLetter:
    """One dead letter as taken from its queue: where it came from, its bytes and its AMQP properties."""

    service: str
    tag: int
    body: bytes
    properties: pika.BasicProperties

    @property
    def headers(self) -> dict[str, Any]:
        return dict(self.properties.headers or {})

    @property
    def id(self) -> str:
        """The event id (message_id); for poison without one, a stable hash of the body."""
        return self.properties.message_id or "sha256:" + hashlib.sha256(self.body).hexdigest()[:16]

    @property
    def event_type(self) -> str:
        return self.properties.type or ""

    @property
    def death(self) -> dict[str, Any]:
        """The broker's latest x-death entry (set when the broker itself dead-lettered the message)."""
        deaths = self.headers.get("x-death") or []
        return dict(deaths[0]) if deaths else {}

    @property
    def kind(self) -> str:
        return str(self.headers.get("x-error-kind") or self.death.get("reason") or "unknown")

    @property
    def error(self) -> str:
        """Why it failed, personal data masked."""
        headers = self.headers
        text = headers.get("x-error")
        if text is None and self.death:
            last = headers.get("x-last-error")
            text = f"dead-lettered by the broker ({self.death.get('reason')}) from {self.death.get('queue')}" + (
                f"; last error: {last}" if last else "")
        return mask_text(str(text or ""))

    @property
    def attempts(self) -> int | None:
        try:
            return int(self.headers["x-attempts"])
        except (KeyError, TypeError, ValueError):
            return None

    @property
    def failed_at(self) -> datetime | None:
        raw = self.headers.get("x-failed-at")
        if isinstance(raw, str):
            try:
                return datetime.fromisoformat(raw)
            except ValueError:
                return None
        when = self.death.get("time")
        return when if isinstance(when, datetime) else None

    @property
    def original_routing_key(self) -> str:
        keys = self.death.get("routing-keys") or [""]
        return str(self.headers.get("x-original-routing-key") or keys[0])

    @property
    def key(self) -> tuple[str, str, str]:
        """Identity of this dead-lettering: (service, event id, failed-at as recorded)."""
        raw = self.headers.get("x-failed-at")
        when = raw if isinstance(raw, str) else (self.failed_at.isoformat() if self.failed_at else "")
        return self.service, self.id, when

    def summary(self) -> dict[str, Any]:
        """The list view of this dead letter, personal data masked."""
        return {
            "service": self.service,
            "id": self.id,
            "type": self.event_type,
            "kind": self.kind,
            "error": self.error,
            "attempts": self.attempts,
            "failed_at": self.failed_at.isoformat() if self.failed_at else None,
        }

    def detail(self, *, reveal: bool = False) -> dict[str, Any]:
        """Properties, headers and body; personal data masked unless `reveal`."""
        props = {n: getattr(self.properties, n) for n in PROPERTY_NAMES if getattr(self.properties, n) is not None}
        headers = self.headers
        body: Any
        try:
            body = json.loads(self.body)
        except (UnicodeDecodeError, json.JSONDecodeError):
            body = self.body.decode("utf-8", "replace")
        if not reveal:
            headers, body = mask_value(headers), mask_value(body)
        return {"service": self.service, "id": self.id, "kind": self.kind, "properties": props,
                "headers": headers, "body": body, "revealed": reveal}

    def for_replay(self, names: Names, now: datetime) -> RawMessage:
        """The message to put back on its service queue: same bytes and properties, failure history dropped."""
        headers = {k: v for k, v in self.headers.items()
                   if k not in FAILURE_HEADERS and not k.startswith(BROKER_DEATH_PREFIXES)}
        if self.original_routing_key:
            headers["x-original-routing-key"] = self.original_routing_key
        headers["x-replayed-at"] = now.isoformat()
        props = {n: getattr(self.properties, n) for n in PROPERTY_NAMES if getattr(self.properties, n) is not None}
        props["headers"] = headers
        props["delivery_mode"] = 2
        return RawMessage("", names.queue(self.service), self.body, props)


@dataclass(frozen=True)
class Selection:
    """Which dead letters an operation applies to: an event id, an error kind, exact keys, or all."""

    event_id: str | None = None
    kind: str | None = None
    keys: frozenset[tuple[str, str, str]] | None = None

    def matches(self, letter: DeadLetter) -> bool:
        return ((self.event_id is None or letter.id == self.event_id)
                and (self.kind is None or letter.kind == self.kind)
                and (self.keys is None or letter.key in self.keys))


@dataclass(frozen=True)
class QueueSummary:
    service: str
    queue: str
    exists: bool
    count: int = 0
    oldest_failed_at: datetime | None = None

    def as_dict(self, now: datetime) -> dict[str, Any]:
        oldest = self.oldest_failed_at
        return {"service": self.service, "queue": self.queue, "exists": self.exists, "count": self.count,
                "oldest_failed_at": oldest.isoformat() if oldest else None,
                "oldest_age_s": round((now - oldest).total_seconds(), 1) if oldest else None}


@dataclass
class ReplayReport:
    selected: int = 0
    moved: dict[str, int] = field(default_factory=dict)
    acked_only: int = 0
    dry_run: bool = False

    @property
    def total_moved(self) -> int:
        return sum(self.moved.values())


class Journal:
    """The replay journal (SQLite): which dead letters are being, or have been, published again."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path)
        with self._db:
            self._db.execute("CREATE TABLE IF NOT EXISTS replay (service TEXT, event_id TEXT, failed_at TEXT, "
                             "state TEXT NOT NULL, updated_at TEXT NOT NULL, "
                             "PRIMARY KEY (service, event_id, failed_at))")

    def state(self, key: tuple[str, str, str]) -> str | None:
        """'publishing', 'published', or None if this dead letter is not being replayed."""
        row = self._db.execute("SELECT state FROM replay WHERE service = ? AND event_id = ? AND failed_at = ?",
                               key).fetchone()
        return row[0] if row else None

    def mark(self, keys: Sequence[tuple[str, str, str]], state: str) -> None:
        """Record a state for these keys, durably, in one transaction."""
        now = datetime.now(UTC).isoformat()
        with self._db:
            self._db.executemany("INSERT OR REPLACE INTO replay VALUES (?, ?, ?, ?, ?)",
                                 [(*k, state, now) for k in keys])

    def forget(self, keys: Sequence[tuple[str, str, str]]) -> None:
        """Drop keys whose dead letters are acknowledged (gone from the queue)."""
        with self._db:
            self._db.executemany("DELETE FROM replay WHERE service = ? AND event_id = ? AND failed_at = ?", keys)

    def prune(self, older_than: timedelta) -> None:
        """Drop entries older than any dead letter can live (left by a crash between ack and forget)."""
        cutoff = (datetime.now(UTC) - older_than).isoformat()
        with self._db:
            self._db.execute("DELETE FROM replay WHERE updated_at < ?", (cutoff,))

    def entries(self) -> list[tuple[str, str, str, str]]:
        return self._db.execute("SELECT service, event_id, failed_at, state FROM replay").fetchall()

    def close(self) -> None:
        self._db.close()


class HeldQueue:
    """One dead-letter queue on its own channel; what we take stays ours, unacknowledged, until we settle it."""

    def __init__(self, channel: BlockingChannel, names: Names, service: str) -> None:
        self.channel = channel
        self.service = service
        self.name = names.dead_queue(service)

    def depth(self) -> int:
        return int(self.channel.queue_declare(self.name, passive=True).method.message_count)

    def letters(self) -> Iterator[DeadLetter]:
        """Every message ready now, once: the depth is fixed first, so what arrives meanwhile waits."""
        for _ in range(self.depth()):
            method, properties, body = self.channel.basic_get(self.name, auto_ack=False)
            if method is None:
                return
            yield DeadLetter(self.service, method.delivery_tag, body, properties)

    def ack(self, letters: Sequence[DeadLetter]) -> None:
        """Delete these dead letters, and return once the broker has processed the acks."""
        for letter in letters:
            self.channel.basic_ack(letter.tag)
        self.depth()  # a synchronous round trip on the same channel: the acks before it are processed

    def release(self) -> None:
        """Return every message still held (requeue), in one nack."""
        if self.channel.is_open:
            self.channel.basic_nack(delivery_tag=0, multiple=True, requeue=True)


@contextmanager
def connect(settings: RuntimeSettings) -> Iterator[pika.BlockingConnection]:
    """A blocking connection to the broker, or DeadLetterError saying it cannot be reached."""
    params = pika.URLParameters(settings.amqp_url)
    params.heartbeat = max(settings.heartbeat, 60)
    params.client_properties = {"connection_name": "erasure-dlq"}
    try:
        conn = pika.BlockingConnection(params)
    except pika.exceptions.AMQPConnectionError as exc:
        raise DeadLetterError(f"cannot reach the broker at {params.host}:{params.port} ({exc!r}); "
                              "check ERASURE_AMQP_URL or run `erasure doctor`") from exc
    try:
        yield conn
    finally:
        if conn.is_open:
            conn.close()


def existing(conn: pika.BlockingConnection, names: Names, services: Sequence[str] | None) -> list[str]:
    """The services whose dead-letter queue exists; a service named explicitly must have one."""
    found = []
    for service in services or catalog_services():
        channel = conn.channel()
        try:
            channel.queue_declare(names.dead_queue(service), passive=True)
            channel.close()
            found.append(service)
        except ChannelClosedByBroker as exc:  # the broker closed the channel: nothing to clean up
            if services and exc.reply_code == 404:
                raise DeadLetterError(f"no dead-letter queue {names.dead_queue(service)!r} in namespace "
                                      f"{names.namespace!r}: check the service name and ERASURE_NAMESPACE") from exc
            if exc.reply_code != 404:
                raise
    return found


@contextmanager
def held(conn: pika.BlockingConnection, names: Names, service: str) -> Iterator[HeldQueue]:
    """Hold a dead-letter queue for browsing; everything not acknowledged goes back on exit."""
    queue = HeldQueue(conn.channel(), names, service)
    try:
        yield queue
    finally:
        queue.release()
        if queue.channel.is_open:
            queue.channel.close()


def depths(settings: RuntimeSettings, services: Sequence[str] | None) -> dict[str, int]:
    """Dead letters ready now per service (only services whose dead-letter queue exists)."""
    names = Names(settings.namespace)
    with connect(settings) as conn:
        result = {}
        for service in existing(conn, names, services):
            channel = conn.channel()
            result[service] = int(channel.queue_declare(names.dead_queue(service), passive=True).method.message_count)
            channel.close()
        return result


def survey(settings: RuntimeSettings, services: Sequence[str] | None,
           ) -> tuple[list[QueueSummary], list[DeadLetter]]:
    """Count and browse every dead-letter queue without changing any: summaries, and letters oldest first."""
    names = Names(settings.namespace)
    summaries, letters = [], []
    with connect(settings) as conn:
        present = set(existing(conn, names, services))
        for service in services or catalog_services():
            if service not in present:
                summaries.append(QueueSummary(service, names.dead_queue(service), exists=False))
                continue
            with held(conn, names, service) as queue:
                taken = list(queue.letters())
            times = [t for t in (letter.failed_at for letter in taken) if t is not None]
            summaries.append(QueueSummary(service, queue.name, True, len(taken), min(times) if times else None))
            letters.extend(taken)
    oldest_first = datetime.min.replace(tzinfo=UTC)
    letters.sort(key=lambda letter: letter.failed_at or oldest_first)
    return summaries, letters


def select(settings: RuntimeSettings, services: Sequence[str] | None, selection: Selection,
           advance: Advance | None = None) -> list[DeadLetter]:
    """The dead letters a selection matches, without changing any queue."""
    names = Names(settings.namespace)
    chosen = []
    with connect(settings) as conn:
        for service in existing(conn, names, services):
            with held(conn, names, service) as queue:
                for letter in queue.letters():
                    if advance:
                        advance(1)
                    if selection.matches(letter):
                        chosen.append(letter)
    return chosen


def purge(settings: RuntimeSettings, services: Sequence[str] | None, selection: Selection,
          advance: Advance | None = None) -> dict[str, int]:
    """Delete (acknowledge) exactly the selected dead letters; return how many per service."""
    names = Names(settings.namespace)
    removed: dict[str, int] = {}
    with connect(settings) as conn:
        for service in existing(conn, names, services):
            with held(conn, names, service) as queue:
                doomed = []
                for letter in queue.letters():
                    if advance:
                        advance(1)
                    if selection.matches(letter):
                        doomed.append(letter)
                queue.ack(doomed)
            if doomed:
                removed[service] = len(doomed)
    return removed


def replay(
    settings: RuntimeSettings,
    services: Sequence[str] | None,
    selection: Selection,
    *,
    journal: Journal,
    dry_run: bool = False,
    batch_size: int = 200,
    advance: Advance | None = None,
) -> ReplayReport:
    """Move the selected dead letters back to their service queues with the attempt count reset."""
    names = Names(settings.namespace)
    report = ReplayReport(dry_run=dry_run)
    journal.prune(timedelta(days=settings.dead_letter_ttl_days + 1))
    now = datetime.now(UTC)
    with connect(settings) as conn:
        present = existing(conn, names, services)
        if dry_run:
            producer = None
        else:
            producer = Producer(settings.amqp_url, exchange="", name="erasure-dlq-replay").start()
        try:
            for service in present:
                with held(conn, names, service) as queue:
                    pending: list[DeadLetter] = []
                    for letter in queue.letters():
                        if advance:
                            advance(1)
                        if not selection.matches(letter):
                            continue
                        report.selected += 1
                        if journal.state(letter.key) == "published":
                            report.acked_only += 1
                            if not dry_run:
                                queue.ack([letter])
                                journal.forget([letter.key])
                            continue
                        pending.append(letter)
                        if len(pending) >= batch_size:
                            _move(producer, queue, journal, pending, names, now, report)
                            pending = []
                    _move(producer, queue, journal, pending, names, now, report)
        finally:
            if producer is not None:
                producer.close()
    return report


def _move(producer: Producer | None, queue: HeldQueue, journal: Journal, letters: list[DeadLetter],
          names: Names, now: datetime, report: ReplayReport) -> None:
    if not letters:
        return
    if producer is not None:
        keys = [letter.key for letter in letters]
        journal.mark(keys, "publishing")
        producer.publish_raw(letter.for_replay(names, now) for letter in letters)
        journal.mark(keys, "published")
        failpoint("dlq_after_publish")
        queue.ack(letters)
        journal.forget(keys)
    report.moved[queue.service] = report.moved.get(queue.service, 0) + len(letters)
