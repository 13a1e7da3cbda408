"""Dead letters over plain AMQP: browse without loss, show masked, replay without loss or duplication, purge.

Counting (`counts`, what `erasure dlq list` shows) reads each dead-letter queue's message count with a passive
declare: no message is taken, so none changes.

Browsing (`survey`, `select`: `dlq show`, `dlq list --messages`, and the selection of replay and purge) takes
messages with basic_get and holds them unacknowledged until it is done, then returns all it did not settle with
one basic.nack (requeue). What a return does to a message depends on the broker, measured and documented:
- RabbitMQ 4.3 and later: basic.nack with requeue leaves the quorum delivery count (`x-delivery-count`) alone;
  only basic.reject and channel closure count as failed deliveries (rabbitmq-server #15387). So a browse changes
  nothing about a dead letter.
- RabbitMQ 3.x (3.10.8 measured): every return counts - basic.nack, basic.reject, a consumer's channel or
  connection closing with the message unacknowledged - so each browse adds one to `x-delivery-count`. The
  dead-letter queues have no `x-delivery-limit`, so on 3.x this never drops a message; `dlq show` leaves the
  counter out of what it prints, since it counts browsing, not the failure (that is `x-attempts`).
- RabbitMQ 4.0-4.2 count every return too, and give a quorum queue without a limit a default of 20: there the
  dead-letter queues need an explicit `x-delivery-limit` before browsing them often is safe.

Replay is crash-safe through a small journal, keyed by (service, event id, failed-at): "publishing" before the
confirmed publish, "published" after its confirm, gone after the dead letter's ack has reached the broker. A
re-run that meets a dead letter journalled "published" only acknowledges it. One journalled "publishing" may
or may not have been confirmed, so it is published again: at worst a duplicate, which the services' inbox
absorbs (same id, same bytes) — never a loss.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import time
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
from shared.broker import pika_parameters
from shared.broker import producer as make_producer
from shared.faults import failpoint
from shared.logging import mask_personal, mask_text, mask_value
from shared.producer import Producer, RawMessage
from shared.runtime import headers as h
from shared.settings import RuntimeSettings
from shared.topology import Names

# Why a message failed and how often: meaningful for the failure, wrong for a fresh attempt.
FAILURE_HEADERS = frozenset({
    *h.RUNTIME_HEADERS, "x-death", "x-delivery-count",
})
BROKER_DEATH_PREFIXES = ("x-first-death-", "x-last-death-")
PROPERTY_NAMES = ("content_type", "content_encoding", "delivery_mode", "priority", "correlation_id", "reply_to",
                  "expiration", "message_id", "timestamp", "type", "user_id", "app_id", "cluster_id")
JOURNAL_FILE = "dlq-replay.sqlite"
RETURN_WAIT_S = 5.0
Advance = Callable[[int], None]


def _opened(event_type: str, data: dict[str, Any]) -> Any:
    """A revealed dead letter's data with its sealed personal field opened, or marked unreadable once its key is
    destroyed (the user was erased)."""
    from shared.keys.wire import SealedFieldError, open_sealed_field

    try:
        return open_sealed_field(event_type, data)
    except SealedFieldError as exc:
        return {**data, "sealed": f"unreadable: {exc}"}


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
    def death(self) -> dict[str, Any]:
        """The broker's latest x-death entry (set when the broker itself dead-lettered the message)."""
        deaths = self.headers.get("x-death") or []
        return dict(deaths[0]) if deaths else {}

    @property
    def kind(self) -> str:
        return str(self.headers.get(h.ERROR_KIND) or self.death.get("reason") or "unknown")

    @property
    def error(self) -> str:
        """Why it failed, personal data masked."""
        headers = self.headers
        text = headers.get(h.ERROR)
        if text is None and self.death:
            last = headers.get(h.LAST_ERROR)
            text = f"dead-lettered by the broker ({self.death.get('reason')}) from {self.death.get('queue')}" + (
                f"; last error: {last}" if last else "")
        return mask_text(str(text or ""))

    @property
    def attempts(self) -> int | None:
        try:
            return int(self.headers[h.ATTEMPTS])
        except (KeyError, TypeError, ValueError):
            return None

    @property
    def failed_at(self) -> datetime | None:
        raw = self.headers.get(h.FAILED_AT)
        if isinstance(raw, str):
            try:
                parsed = datetime.fromisoformat(raw)
            except ValueError:
                return None
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
        when = self.death.get("time")
        return when if isinstance(when, datetime) else None

    @property
    def original_routing_key(self) -> str:
        keys = self.death.get("routing-keys") or [""]
        return str(self.headers.get(h.ORIGINAL_ROUTING_KEY) or keys[0])

    @property
    def key(self) -> tuple[str, str, str]:
        """Identity of this dead-lettering: (service, event id, failed-at as recorded)."""
        raw = self.headers.get(h.FAILED_AT)
        when = raw if isinstance(raw, str) else (self.failed_at.isoformat() if self.failed_at else "")
        return self.service, self.id, when

    def summary(self) -> dict[str, Any]:
        """The list view of this dead letter, personal data masked."""
        return {"service": self.service, "id": self.id, "type": self.properties.type or "", "kind": self.kind,
                "error": self.error, "attempts": self.attempts,
                "failed_at": self.failed_at.isoformat() if self.failed_at else None}

    def detail(self, *, reveal: bool = False) -> dict[str, Any]:
        """Properties, headers and body; personal data masked unless `reveal`."""
        props = {n: getattr(self.properties, n) for n in PROPERTY_NAMES if getattr(self.properties, n) is not None}
        headers = self.headers
        body: Any
        try:
            body = json.loads(self.body)
        except (UnicodeDecodeError, json.JSONDecodeError):
            body = self.body.decode("utf-8", "replace")
        # The broker's redelivery count of the dead-letter queue counts browsing on RabbitMQ 3.x, not the failure.
        headers = {k: v for k, v in headers.items() if k != "x-delivery-count"}
        if not reveal:
            headers, body = mask_value(headers), mask_personal(body)
        elif isinstance(body, dict) and isinstance(body.get("data"), dict):
            body = {**body, "data": _opened(str(body.get("type", "")), body["data"])}
        return {"service": self.service, "id": self.id, "kind": self.kind, "properties": props,
                "headers": headers, "body": body, "revealed": reveal}

    def for_replay(self, names: Names, now: datetime) -> RawMessage:
        """The message to put back on its service queue: same bytes and properties, failure history dropped."""
        headers = {k: v for k, v in self.headers.items()
                   if k not in FAILURE_HEADERS and not k.startswith(BROKER_DEATH_PREFIXES)}
        if self.original_routing_key:
            headers[h.ORIGINAL_ROUTING_KEY] = self.original_routing_key
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


@dataclass
class ReplayReport:
    selected: int = 0
    moved: dict[str, int] = field(default_factory=dict)
    acked_only: int = 0

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

    def close(self) -> None:
        self._db.close()


class HeldQueue:
    """One dead-letter queue on its own channel; what we take stays ours, unacknowledged, until we settle it."""

    def __init__(self, channel: BlockingChannel, names: Names, service: str) -> None:
        self.channel = channel
        self.service = service
        self.name = names.dead_queue(service)
        self._held = 0

    def depth(self) -> int:
        return int(self.channel.queue_declare(self.name, passive=True).method.message_count)

    def letters(self) -> Iterator[DeadLetter]:
        """Every message ready now, once: the depth is fixed first, so what arrives meanwhile waits."""
        for _ in range(self.depth()):
            method, properties, body = self.channel.basic_get(self.name, auto_ack=False)
            if method is None:
                return
            self._held += 1
            yield DeadLetter(self.service, method.delivery_tag, body, properties)

    def ack(self, letters: Sequence[DeadLetter]) -> None:
        """Delete these dead letters, and return once the broker has processed the acks."""
        for letter in letters:
            self.channel.basic_ack(letter.tag)
        self._held -= len(letters)
        self.depth()  # a synchronous round trip on the same channel: the acks before it are processed

    def release(self) -> None:
        """Return every message still held (one nack) and wait until the queue counts them as ready again."""
        if not self.channel.is_open or not self._held:
            return
        expected = self.depth() + self._held
        self.channel.basic_nack(delivery_tag=0, multiple=True, requeue=True)
        # A quorum queue applies returns a moment after the nack; the next command must see them all.
        deadline = time.monotonic() + RETURN_WAIT_S
        while self.depth() < expected and time.monotonic() < deadline:
            time.sleep(0.005)
        self._held = 0


@contextmanager
def connect(settings: RuntimeSettings) -> Iterator[pika.BlockingConnection]:
    """A blocking connection to the broker, or DeadLetterError saying it cannot be reached."""
    params = pika_parameters(settings, name="erasure-dlq", heartbeat=max(settings.heartbeat, 60))
    try:
        conn = pika.BlockingConnection(params.each())
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
    return list(_ready_counts(conn, names, services))


def _ready_counts(conn: pika.BlockingConnection, names: Names, services: Sequence[str] | None) -> dict[str, int]:
    """Messages ready in each existing dead-letter queue (passive declares: no message is touched)."""
    found: dict[str, int] = {}
    channel_log = logging.getLogger("pika.channel")
    for service in services or catalog_services():
        channel = conn.channel()
        level, channel_log.level = channel_log.level, logging.ERROR  # a missing queue is an answer, not a warning
        try:
            declared = channel.queue_declare(names.dead_queue(service), passive=True)
            channel.close()
            found[service] = int(declared.method.message_count)
        except ChannelClosedByBroker as exc:  # the broker closed the channel: nothing to clean up
            if services and exc.reply_code == 404:
                raise DeadLetterError(f"no dead-letter queue {names.dead_queue(service)!r} in namespace "
                                      f"{names.namespace!r}: check the service name and ERASURE_NAMESPACE") from exc
            if exc.reply_code != 404:
                raise
        finally:
            channel_log.setLevel(level)
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
    """Dead letters ready now per service (only services whose dead-letter queue exists); touches none."""
    with connect(settings) as conn:
        return _ready_counts(conn, Names(settings.namespace), services)


def counts(settings: RuntimeSettings, services: Sequence[str] | None) -> list[QueueSummary]:
    """How many dead letters each service's dead-letter queue holds, without taking any message."""
    names = Names(settings.namespace)
    ready = depths(settings, services)
    return [QueueSummary(service, names.dead_queue(service), service in ready, ready.get(service, 0))
            for service in services or catalog_services()]


def distinct(letters: Sequence[DeadLetter]) -> list[tuple[DeadLetter, list[str]]]:
    """One entry per dead letter (same id and bytes), with every service that dead-lettered it.

    An event every slice consumes (a UserDeregistered) that fails everywhere is in five dead-letter queues.
    """
    grouped: dict[tuple[str, bytes], tuple[DeadLetter, list[str]]] = {}
    for letter in letters:
        grouped.setdefault((letter.id, letter.body), (letter, []))[1].append(letter.service)
    return list(grouped.values())


def _matching(queue: HeldQueue, selection: Selection, advance: Advance | None) -> Iterator[DeadLetter]:
    for letter in queue.letters():
        if advance:
            advance(1)
        if selection.matches(letter):
            yield letter


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
    with connect(settings) as conn:
        chosen = []
        for service in existing(conn, names, services):
            with held(conn, names, service) as queue:
                chosen.extend(_matching(queue, selection, advance))
        return chosen


def purge(settings: RuntimeSettings, services: Sequence[str] | None, selection: Selection,
          advance: Advance | None = None) -> dict[str, int]:
    """Delete (acknowledge) exactly the selected dead letters; return how many per service."""
    names = Names(settings.namespace)
    removed: dict[str, int] = {}
    with connect(settings) as conn:
        for service in existing(conn, names, services):
            with held(conn, names, service) as queue:
                doomed = list(_matching(queue, selection, advance))
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
    report = ReplayReport()
    if not dry_run:
        journal.prune(timedelta(days=settings.dead_letter_ttl_days + 1))
    now = datetime.now(UTC)
    with connect(settings) as conn:
        present = existing(conn, names, services)
        producer = None if dry_run else make_producer(settings, exchange="", name="erasure-dlq-replay").start()
        try:
            for service in present:
                with held(conn, names, service) as queue:
                    pending: list[DeadLetter] = []
                    for letter in _matching(queue, selection, advance):
                        report.selected += 1
                        if journal.state(letter.key) == "published":
                            report.acked_only += 1
                            if producer is not None:
                                queue.ack([letter])
                                journal.forget([letter.key])
                            continue
                        pending.append(letter)
                        if len(pending) >= batch_size:
                            _move(producer, queue, journal, pending, names=names, now=now, report=report)
                            pending = []
                    _move(producer, queue, journal, pending, names=names, now=now, report=report)
        finally:
            if producer is not None:
                producer.close()
    return report


def _move(producer: Producer | None, queue: HeldQueue, journal: Journal, letters: list[DeadLetter], *,
          names: Names, now: datetime, report: ReplayReport) -> None:
    """Publish with confirms first, journal that, then ack: a crash anywhere loses nothing."""
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
