"""The consumer runtime (kombu): decode → verify → validate → dispatch → commit → ack.

The connection belongs to the main loop, which only moves frames, checks heartbeats and settles results;
handlers run in a worker thread, a batch of deliveries per database transaction (one savepoint each), so a
slow handler never starves heartbeats and commits and acks are amortised. Nothing is acked before its
transaction commits; failures go to a delay tier or the dead-letter queue by a confirmed publish first.

A service whose handlers touch only the database and the outbox (`Service.database_only`) takes a fast
path: the batch's inbox rows are read and written with one statement each and its handlers run without a
savepoint apiece. If any of them fails, the whole transaction is rolled back and the batch runs again with
a savepoint per delivery, which settles each delivery on its own; either way the outcomes come back in
batch order and are settled only after the commit.
"""

from __future__ import annotations

import contextlib
import queue
import signal
import threading
import time
from collections import Counter, deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

import kombu
import structlog
from amqp.basic_message import Message as AmqpMessage
from sqlalchemy import Table, bindparam, insert, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from schemas.catalog import SUBSCRIPTIONS
from shared import metrics
from shared.backoff import Backoff
from shared.broker import kombu_connection
from shared.broker import producer as make_producer
from shared.codec import Inbound, decode
from shared.db import ensure_schema, make_engine, session_factory
from shared.errors import BadInput, PermanentError, TransientError
from shared.faults import failpoint
from shared.logging import get_logger, mask_text
from shared.outbox import OutboxRelay, stage_many
from shared.service import Context, Handler, Service
from shared.settings import RuntimeSettings
from shared.topology import Names, Topology, build_topology, declare
from shared.web import Request, Response, WebServer, metrics_route

log = get_logger(__name__)
ATTEMPTS_HEADER = "x-attempts"
ORIGINAL_KEY_HEADER = "x-original-routing-key"


@dataclass(frozen=True)
class Outcome:
    """What to do with one delivery once its batch has committed."""

    action: str  # ack | retry | dead | release
    kind: str = ""
    error: str = ""
    retry_after: float | None = None


ACK = Outcome("ack")


@dataclass(frozen=True)
class Delivery:
    """One message taken from the queue on the connection of `generation`."""

    message: Any
    generation: int

    @property
    def tag(self) -> int:
        return self.message.delivery_tag

    @cached_property
    def headers(self) -> Mapping[str, Any]:
        """The message's headers, read once; copy them before changing them."""
        return dict(self.message.headers or {})

    @cached_property
    def attempts(self) -> int:
        """How many times this event failed before (the delay tiers count them in a header)."""
        try:
            return int(self.headers.get(ATTEMPTS_HEADER, 0))
        except (TypeError, ValueError):
            return 0


class _RunAgain(Exception):
    """The fast path gave up on a batch: roll it back and run it with a savepoint per delivery."""


@contextlib.contextmanager
def _run_again_on_failure(step: str) -> Iterator[None]:
    """On the fast path, any failure but a lost database (left to the hold-and-retry loop) is a _RunAgain."""
    try:
        yield
    except OperationalError:
        raise
    except Exception as exc:
        log.debug(f"{step} failed; running the batch again with a savepoint per delivery",
                  error=f"{type(exc).__name__}: {exc}")
        raise _RunAgain from exc


def _write_appended(session: Any, rows: list[tuple[Table, dict[str, Any]]]) -> None:
    """Insert the rows handlers appended, one executemany per table and set of columns, in their order."""
    if not rows:
        return
    groups: dict[tuple[Table, frozenset[str]], list[dict[str, Any]]] = {}
    for table, row in rows:
        groups.setdefault((table, frozenset(row)), []).append(row)
    conn = session.connection()
    for (table, _columns), params in groups.items():
        conn.execute(insert(table), params)


def full_topology(settings: RuntimeSettings, extra: Service | None = None) -> Topology:
    """The topology of every service in the catalog (plus `extra`), with these settings' tiers and limits."""
    subscriptions = {svc: [m.event_type for m in models] for svc, models in SUBSCRIPTIONS.items()}
    if extra is not None:
        subscriptions[extra.name] = list(extra.event_types)
    return build_topology(
        Names(settings.namespace),
        subscriptions,
        retry_delays=settings.retry_delays,
        delivery_limit=settings.delivery_limit,
        dead_letter_ttl_days=settings.dead_letter_ttl_days,
    )


class ServiceRunner:
    """Runs one service: consumes its queue, relays its outbox, survives broker and database outages."""

    def __init__(
        self, service: Service, settings: RuntimeSettings, database_url: str, *, http_port: int | None = None
    ) -> None:
        self.service = service
        self.http_port = http_port
        self.settings = settings
        self.names = Names(settings.namespace)
        self.queue = self.names.queue(service.name)
        self.engine = make_engine(database_url)
        self.sessions = session_factory(self.engine, service.metadata)
        self.inbox: Table = service.metadata.tables["inbox"]
        self.outbox: Table = service.metadata.tables["outbox"]
        inbox = self.inbox.c
        self._inbox_seen = select(inbox.event_id, inbox.body_sha256).where(
            inbox.event_id.in_(bindparam("ids", expanding=True)))
        self._inbox_insert = insert(self.inbox)
        self.ready = threading.Event()
        self._stopping = threading.Event()
        self._todo: queue.Queue[list[Delivery] | None] = queue.Queue()
        self._done: queue.Queue[tuple[list[Delivery], list[Outcome]]] = queue.Queue()
        self._buffer: deque[Delivery] = deque()
        self._in_flight = 0
        self._generation = 0
        self.deps: Any = None
        self.relay: OutboxRelay | None = None

    # ---- lifecycle ---------------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop taking deliveries, finish and settle in-flight work, then return from run()."""
        self._stopping.set()

    def run(self) -> None:
        """Block until stop() or SIGTERM/SIGINT; reconnect and re-declare after any broker loss."""
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda *_: self.stop())
        structlog.contextvars.bind_contextvars(service=self.service.name)
        self._wait_for_database()
        self.deps = self.service.build_deps(self.engine)
        web = self._start_web()
        producer = make_producer(self.settings, exchange=self.names.events_exchange,
                                 name=f"{self.service.name}-outbox", timeout=5.0)
        self.relay = OutboxRelay(self.engine, self.outbox, producer,
                                 on_backlog=metrics.OUTBOX_BACKLOG.labels(self.service.name).set)
        metrics.BROKER_CONNECTED.labels(self.service.name, "consumer").set_function(self.ready.is_set)
        metrics.BROKER_CONNECTED.labels(self.service.name, "outbox").set_function(lambda: producer.connected)
        worker = threading.Thread(target=self._work, name=f"{self.service.name}-worker", daemon=True)
        worker.start()
        relay_started = False
        backoff = Backoff()
        try:
            while not self._stopping.is_set():
                try:
                    if not relay_started:
                        producer.start()
                        self.relay.start()
                        relay_started = True
                    self._consume(backoff)
                except Exception as exc:  # any connection loss: reconnect with back-off
                    self.ready.clear()
                    delay = backoff.next()
                    log.warning("broker connection lost; reconnecting", error=repr(exc), in_s=round(delay, 2))
                    self._stopping.wait(delay)
        finally:
            self._todo.put(None)
            worker.join(timeout=30)
            self.relay.stop()
            producer.close()
            self.service.close_deps(self.deps)
            if web is not None:
                web.stop()
            self.engine.dispose()
            log.info("service stopped")

    def _start_web(self) -> WebServer | None:
        if self.http_port is None:
            return None
        routes = {
            ("GET", "/metrics"): metrics_route,
            ("GET", "/healthz"): lambda _r: Response.text(200, "alive"),
            ("GET", "/readyz"): self._readiness,
            **self.service.routes(self),
        }
        web = WebServer(self.settings.http_host, self.http_port, routes).start()
        self.http_port = web.port
        log.info("serving health and metrics", port=web.port)
        return web

    def _readiness(self, _request: Request) -> Response:
        problems = []
        if not self.ready.is_set():
            problems.append("broker: not consuming")
        try:
            with self.engine.connect().execution_options(sqlite_begin="DEFERRED") as conn:
                conn.execute(text("select 1"))
        except DBAPIError as exc:
            problems.append(f"database: {type(exc.orig).__name__}")
        if problems:
            return Response.text(503, "; ".join(problems))
        return Response.text(200, "ready")

    def _wait_for_database(self) -> None:
        delay = 0.5
        while True:
            try:
                ensure_schema(self.engine, self.service.metadata, self.service.migrations)
                return
            except OperationalError as exc:
                if self._stopping.is_set():
                    raise
                log.warning("database unreachable; waiting", error=str(exc.orig), in_s=delay)
                time.sleep(delay)
                delay = min(delay * 2, 10.0)

    # ---- the connection loop (main thread) -----------------------------------------------------------
    def _consume(self, backoff: Backoff) -> None:
        self._generation += 1
        self._buffer.clear()
        with kombu_connection(
            self.settings, name=f"{self.service.name}-consumer", heartbeat=self.settings.heartbeat,
            connect_timeout=5, transport_options={"confirm_publish": True},
        ) as conn:
            # One attempt: the caller's back-off paces the next (kombu's connect() would retry after 2 s).
            conn.ensure_connection(max_retries=0, reraise_as_library_errors=False)
            channel = conn.channel()
            self._declare(channel)
            publisher = conn.channel()
            consumer = kombu.Consumer(
                channel,
                queues=[kombu.Queue(self.queue, no_declare=True)],
                on_message=lambda m: self._buffer.append(Delivery(m, self._generation)),
                auto_declare=False,
                no_ack=False,
                prefetch_count=self.settings.prefetch,
            )
            consumer.consume()
            backoff.reset()
            self.ready.set()
            log.info("consuming", queue=self.queue, prefetch=self.settings.prefetch)
            cancelled = False
            while True:
                if self._stopping.is_set() and not cancelled:
                    consumer.cancel()
                    cancelled = True
                if cancelled and not self._buffer and self._in_flight == 0:
                    return
                with contextlib.suppress(TimeoutError):  # nothing arrived within the tick
                    conn.drain_events(timeout=0.005 if self._in_flight or self._buffer else 0.25)
                conn.heartbeat_check()
                self._settle(channel, publisher)
                self._dispatch()

    def _declare(self, channel: Any) -> None:
        # A least-privilege broker account (deploy/rabbitmq) may configure only its own queues, or nothing:
        # ERASURE_DECLARE=own|none declares that much and only checks (passively) that the rest exists.
        topology = full_topology(self.settings, self.service)
        if self.settings.declare == "all":
            declare(channel, topology)
            return
        for name, kind in topology.exchanges:
            channel.exchange_declare(name, kind, passive=True)
        own = tuple(q for q in topology.queues if q.name == self.queue or q.name.startswith(f"{self.queue}.retry."))
        if self.settings.declare == "own":
            declare(channel, Topology(exchanges=(), queues=own))
        for name in (*(q.name for q in own), self.names.dead_queue(self.service.name)):
            channel.queue_declare(name, passive=True)

    def _dispatch(self) -> None:
        while self._buffer and self._in_flight < 2:
            size = min(len(self._buffer), self.settings.batch_size)
            batch = [self._buffer.popleft() for _ in range(size)]
            self._in_flight += 1
            self._todo.put(batch)

    def _settle(self, channel: Any, publisher: Any) -> None:
        while True:
            try:
                batch, outcomes = self._done.get_nowait()
            except queue.Empty:
                return
            self._in_flight -= 1
            if batch[0].generation != self._generation:
                continue  # delivered on a lost connection: the broker redelivers, the inbox dedupes
            for delivery, outcome in zip(batch, outcomes, strict=True):
                if outcome.action == "retry":
                    self._send_to_retry(publisher, delivery, outcome)
                elif outcome.action == "dead":
                    self._send_to_dead(publisher, delivery, outcome.kind, outcome.error)
                elif outcome.action == "release":
                    channel.basic_reject(delivery.tag, requeue=True)
            failpoint("after_commit")
            if any(o.action != "release" for o in outcomes):
                channel.basic_ack(max(d.tag for d, o in zip(batch, outcomes, strict=True)
                                      if o.action != "release"), multiple=True)

    # ---- retry and dead-letter ----------------------------------------------------------------------
    def _send_to_retry(self, publisher: Any, delivery: Delivery, outcome: Outcome) -> None:
        delays = self.settings.retry_delays
        tier = delivery.attempts
        if tier >= len(delays):
            self._send_to_dead(publisher, delivery, "retries_exhausted",
                               f"gave up after {tier + 1} attempts: {outcome.error}")
            return
        if outcome.retry_after:
            tier = next((i for i, d in enumerate(delays) if i >= tier and d >= outcome.retry_after), tier)
        headers = self._carry_headers(delivery)
        headers[ATTEMPTS_HEADER] = tier + 1
        headers["x-last-error"] = mask_text(outcome.error)[:500]
        self._republish(publisher, delivery, "", self.names.retry_queue(self.service.name, delays[tier]),
                        headers)
        metrics.RETRIES.labels(self.service.name, str(tier)).inc()
        log.info("retry scheduled", event_id=delivery.message.properties.get("message_id"),
                 delay_s=delays[tier], attempt=tier + 1, error=outcome.error)

    def _send_to_dead(self, publisher: Any, delivery: Delivery, kind: str, error: str) -> None:
        headers = self._carry_headers(delivery)
        headers.update({
            "x-error-kind": kind,
            "x-error": mask_text(error)[:1000],
            "x-failed-at": datetime.now(UTC).isoformat(),
            ATTEMPTS_HEADER: delivery.attempts + 1,
            "x-service": self.service.name,
        })
        self._republish(publisher, delivery, self.names.dead_exchange, self.service.name, headers)
        metrics.DEAD_LETTERS.labels(self.service.name, kind).inc()
        metrics.EVENTS.labels(self.service.name, self._type_label(delivery), "dead").inc()
        log.warning("dead-lettered", event_id=delivery.message.properties.get("message_id"),
                    kind=kind, error=error)

    def _carry_headers(self, delivery: Delivery) -> dict[str, Any]:
        headers = dict(delivery.headers)
        headers.setdefault(ORIGINAL_KEY_HEADER, delivery.message.delivery_info.get("routing_key", ""))
        return headers

    @staticmethod
    def _republish(publisher: Any, delivery: Delivery, exchange: str, key: str, headers: dict) -> None:
        props = {k: v for k, v in delivery.message.properties.items() if k != "application_headers"}
        props.pop("headers", None)
        props["delivery_mode"] = 2
        message = AmqpMessage(delivery.message.body, application_headers=headers, **props)
        publisher.basic_publish(message, exchange=exchange, routing_key=key, mandatory=True)

    def _type_label(self, delivery: Delivery) -> str:
        event_type = delivery.message.properties.get("type")
        return event_type if event_type in self.service.event_types else "other"

    # ---- the worker thread: one transaction per batch ------------------------------------------------
    def _work(self) -> None:
        while True:
            batch = self._todo.get()
            if batch is None:
                return
            try:
                outcomes = self._handle_batch(batch)
            except Exception as exc:  # the worker must outlive any batch: retry its deliveries later
                log.exception("batch failed unexpectedly; its deliveries go to the delay tiers")
                outcomes = [Outcome("retry", "error", f"{type(exc).__name__}: {exc}")] * len(batch)
            self._done.put((batch, outcomes))

    def _handle_batch(self, batch: list[Delivery]) -> list[Outcome]:
        delay = 0.2
        while True:
            try:
                return self._handle_batch_once(batch)
            except (OperationalError, DBAPIError) as exc:
                if self._stopping.is_set() and delay >= 5:
                    log.error("database unreachable at shutdown; returning batch to the queue")
                    return [Outcome("release")] * len(batch)
                log.warning("database unavailable; holding batch and retrying", error=str(exc.orig),
                            size=len(batch), in_s=delay)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _handle_batch_once(self, batch: list[Delivery]) -> list[Outcome]:
        decoded = [self._decode(delivery) for delivery in batch]
        handled = self._handle_fast(batch, decoded) if self.service.database_only else None
        if handled is None:
            handled = self._handle_with_savepoints(batch, decoded)
        outcomes, emitted = handled
        metrics.BATCH_SIZE.labels(self.service.name).observe(len(batch))
        if emitted and self.relay is not None:
            self.relay.notify()  # the relay reports the backlog gauge (0 once it has published everything)
        return outcomes

    def _decode(self, delivery: Delivery) -> Outcome | tuple[Inbound, Handler]:
        """The delivery's event and its handler, or the outcome of a delivery that cannot be handled."""
        try:
            inbound = decode(
                delivery.message.body,
                content_type=delivery.message.content_type,
                headers=delivery.headers,
                keyring=self.settings.keyring,
                max_bytes=self.settings.max_body_bytes,
                message_id=delivery.message.properties.get("message_id"),
            )
        except BadInput as exc:
            return Outcome("dead", exc.kind, str(exc))
        except Exception as exc:  # a decoder bug must cost one message, never the consumer
            log.exception("decoding failed unexpectedly")
            return Outcome("dead", "undecodable", f"{type(exc).__name__} while decoding")
        event_type = inbound.envelope.type
        handler = self.service.handler_for(event_type)
        if handler is None:
            return Outcome("dead", "unknown_type",
                           f"event {inbound.event_id}: {self.service.name} has no handler for {event_type}")
        return inbound, handler

    def _context(self, session: Any, delivery: Delivery, inbound: Inbound) -> Context:
        return Context(session=session, envelope=inbound.envelope, deps=self.deps, attempts=delivery.attempts,
                       redelivered=bool(delivery.message.delivery_info.get("redelivered")), log=log)

    @staticmethod
    def _bind(inbound: Inbound) -> None:
        structlog.contextvars.bind_contextvars(
            event_id=inbound.event_id, event_type=inbound.envelope.type,
            request_id=str(getattr(inbound.data, "request_id", "")) or None,
        )

    @staticmethod
    def _unbind() -> None:
        structlog.contextvars.unbind_contextvars("event_id", "event_type", "request_id")

    # ---- the fast path: the batch's inbox in one statement each way, no savepoint per delivery -----------
    def _handle_fast(
        self, batch: list[Delivery], decoded: list[Outcome | tuple[Inbound, Handler]]
    ) -> tuple[list[Outcome], int] | None:
        """Handle the batch in one transaction without savepoints; None (rolled back) if anything failed.

        A handler's failure, or a concurrent replica's inbox row, rolls everything back and nothing is
        counted: the caller runs the batch again with a savepoint per delivery. A lost database propagates.
        """
        name = self.service.name
        outcomes: list[Outcome | None] = [d if isinstance(d, Outcome) else None for d in decoded]
        duplicates: Counter[str] = Counter()
        handled: Counter[str] = Counter()
        timings: list[tuple[str, float]] = []
        emitted: list[Any] = []
        appended: list[tuple[Table, dict[str, Any]]] = []
        try:
            with self.sessions() as session, session.begin():
                fresh = self._claim(session, batch, decoded, outcomes, duplicates)
                for i, inbound, handler in fresh:
                    ctx = self._context(session, batch[i], inbound)
                    event_type = inbound.envelope.type
                    self._bind(inbound)
                    started = time.perf_counter()
                    try:
                        with _run_again_on_failure("handler"):
                            handler(inbound.data, ctx)
                            session.flush()  # as on the savepoint path: its writes, before the next handler
                    finally:
                        timings.append((event_type, time.perf_counter() - started))
                        self._unbind()
                    emitted.extend(ctx.emitted)
                    appended.extend(ctx.appended)
                    handled[event_type] += 1
                    outcomes[i] = ACK
                with _run_again_on_failure("writing the appended rows"):
                    _write_appended(session, appended)
                with _run_again_on_failure("staging the outbox"):
                    stage_many(session, self.outbox, emitted, source=self.settings.source,
                               keyring=self.settings.keyring, key_id=self.settings.signing_key_id)
        except _RunAgain:
            return None
        for event_type, n in duplicates.items():
            metrics.INBOX_DUPLICATES.labels(name).inc(n)
            metrics.EVENTS.labels(name, event_type, "duplicate").inc(n)
        for event_type, seconds in timings:
            metrics.HANDLER_SECONDS.labels(name, event_type).observe(seconds)
        for event_type, n in handled.items():
            metrics.EVENTS.labels(name, event_type, "ok").inc(n)
        return [o if o is not None else ACK for o in outcomes], len(emitted)

    def _claim(
        self,
        session: Any,
        batch: list[Delivery],
        decoded: list[Outcome | tuple[Inbound, Handler]],
        outcomes: list[Outcome | None],
        duplicates: Counter[str],
    ) -> list[tuple[int, Inbound, Handler]]:
        """Settle the batch's duplicates (in the inbox or earlier in the batch); insert and return the rest."""
        todo = [(i, d) for i, d in enumerate(decoded) if not isinstance(d, Outcome)]
        if not todo:
            return []
        conn = session.connection()
        ids = list({inbound.event_id for _, (inbound, _) in todo})
        seen: dict[str, str] = {row.event_id: row.body_sha256
                                for row in conn.execute(self._inbox_seen, {"ids": ids})}
        fresh: list[tuple[int, Inbound, Handler]] = []
        for i, (inbound, handler) in todo:
            known = seen.get(inbound.event_id)
            if known is None:
                seen[inbound.event_id] = inbound.body_sha256
                fresh.append((i, inbound, handler))
            elif known != inbound.body_sha256:
                outcomes[i] = Outcome("dead", "conflicting_duplicate",
                                      f"event {inbound.event_id} was already handled with a different body")
            else:
                outcomes[i] = ACK
                duplicates[inbound.envelope.type] += 1
        if fresh:
            now = datetime.now(UTC)
            try:
                conn.execute(self._inbox_insert, [
                    {"event_id": inbound.event_id, "event_type": inbound.envelope.type,
                     "body_sha256": inbound.body_sha256, "handled_at": now}
                    for _, inbound, _ in fresh])
            except IntegrityError as exc:  # a replica handled one of them concurrently and committed first
                raise _RunAgain from exc
        return fresh

    # ---- the savepoint path: each delivery on its own, so one failure costs only itself ------------------
    def _handle_with_savepoints(
        self, batch: list[Delivery], decoded: list[Outcome | tuple[Inbound, Handler]]
    ) -> tuple[list[Outcome], int]:
        emitted = 0
        outcomes: list[Outcome] = []
        with self.sessions() as session, session.begin():
            for delivery, ready in zip(batch, decoded, strict=True):
                if isinstance(ready, Outcome):
                    outcomes.append(ready)
                    continue
                inbound, handler = ready
                self._bind(inbound)
                try:
                    outcome, count = self._apply(session, delivery, inbound, handler)
                finally:
                    self._unbind()
                outcomes.append(outcome)
                emitted += count
        return outcomes, emitted

    def _apply(
        self, session: Any, delivery: Delivery, inbound: Inbound, handler: Handler
    ) -> tuple[Outcome, int]:
        name, event_type = self.service.name, inbound.envelope.type
        savepoint = session.begin_nested()
        seen = session.execute(
            select(self.inbox.c.body_sha256).where(self.inbox.c.event_id == inbound.event_id)
        ).first()
        if seen is not None:
            savepoint.commit()
            if seen.body_sha256 != inbound.body_sha256:
                return Outcome("dead", "conflicting_duplicate",
                               f"event {inbound.event_id} was already handled with a different body"), 0
            metrics.INBOX_DUPLICATES.labels(name).inc()
            metrics.EVENTS.labels(name, event_type, "duplicate").inc()
            return ACK, 0
        try:
            session.execute(insert(self.inbox).values(
                event_id=inbound.event_id, event_type=event_type, body_sha256=inbound.body_sha256,
                handled_at=datetime.now(UTC)))
            session.flush()
        except IntegrityError:
            savepoint.rollback()  # a replica handled it concurrently and committed first
            metrics.INBOX_DUPLICATES.labels(name).inc()
            return ACK, 0
        ctx = self._context(session, delivery, inbound)
        started = time.perf_counter()
        try:
            handler(inbound.data, ctx)
            _write_appended(session, ctx.appended)
            stage_many(session, self.outbox, ctx.emitted, source=self.settings.source,
                       keyring=self.settings.keyring, key_id=self.settings.signing_key_id)
            session.flush()
        except OperationalError:
            savepoint.rollback()
            raise
        except TransientError as exc:
            savepoint.rollback()
            metrics.EVENTS.labels(name, event_type, "retry").inc()
            return Outcome("retry", "transient", str(exc), exc.retry_after), 0
        except (PermanentError, BadInput) as exc:
            savepoint.rollback()
            kind = exc.kind if isinstance(exc, BadInput) else "permanent"
            return Outcome("dead", kind, f"event {inbound.event_id}: {exc}"), 0
        except Exception as exc:  # an unforeseen error may be a bug or a blip: retry, then dead-letter
            savepoint.rollback()
            log.exception("handler failed unexpectedly")
            metrics.EVENTS.labels(name, event_type, "retry").inc()
            return Outcome("retry", "error", f"{type(exc).__name__}: {exc}"), 0
        finally:
            metrics.HANDLER_SECONDS.labels(name, event_type).observe(time.perf_counter() - started)
        savepoint.commit()
        metrics.EVENTS.labels(name, event_type, "ok").inc()
        return ACK, len(ctx.emitted)
