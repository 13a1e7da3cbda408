"""The consumer runtime's connection and lifecycle (kombu): it feeds batches to the stages and settles them.

The connection belongs to the main loop, which only moves frames, checks heartbeats and settles results;
handlers run in a worker thread, a batch of deliveries per database transaction, so a slow handler never
starves heartbeats and commits and acks are amortised. What happens to a batch is in `shared/runtime/`:
decode → claim (inbox) → handle → stage (outbox) in `pipeline.py`, then settle (ack, delay tier or
dead-letter) in `settle.py`; metrics and logging context plug in as middleware (`middleware.py`).
"""

from __future__ import annotations

import contextlib
import queue
import signal
import threading
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

import kombu
import structlog
from sqlalchemy import Engine, Table, text
from sqlalchemy.exc import DBAPIError, OperationalError

from schemas import ErasureCompleted, ErasureSliceReported, NewsletterConsentChanged, UserDeregistered
from schemas.catalog import SEALED_FIELDS, SUBSCRIPTIONS
from shared import metrics
from shared.backoff import Backoff
from shared.broker import kombu_connection
from shared.broker import producer as make_producer
from shared.db import ensure_schema, make_engine, session_factory, wipe_sqlite_journal
from shared.keys import key_store
from shared.keys.sealing import declares_sealed_columns
from shared.keys.wire import DeadLetterSealer
from shared.logging import get_logger
from shared.outbox import OutboxRelay
from shared.retrying import slice_retry_reports
from shared.runtime.delivery import Delivery
from shared.runtime.headers import ATTEMPTS as ATTEMPTS_HEADER
from shared.runtime.middleware import JournalWipe, LogContext, Metrics, Middleware, OutboxWakeup
from shared.runtime.outcome import Outcome
from shared.runtime.pipeline import BatchPipeline
from shared.runtime.settle import RetryPolicy, Settler
from shared.service import Service
from shared.settings import RuntimeSettings
from shared.topology import Names, Topology, build_topology, declare
from shared.web import Request, Response, WebServer, metrics_route

__all__ = ["ATTEMPTS_HEADER", "ServiceRunner", "full_topology"]

log = get_logger(__name__)


# Event types whose handlers delete personal data from a slice's own database, and the one on which the ledger
# destroys data keys in the key store's.
ERASING_TYPES = frozenset({UserDeregistered.event_type, ErasureCompleted.event_type,
                           NewsletterConsentChanged.event_type})
SHREDDING_TYPES = frozenset({ErasureSliceReported.event_type})


def default_middlewares(service: Service[Any], engine: Engine | None = None) -> list[Middleware]:
    """What every running service plugs in: the logging context and the Prometheus metrics; on SQLite, the
    journal wipes after batches that erased rows or destroyed keys."""
    chosen: list[Middleware] = [LogContext(), Metrics(service.event_types)]
    if engine is not None and engine.dialect.name == "sqlite" and ERASING_TYPES & set(service.event_types):
        chosen.append(JournalWipe(lambda: wipe_sqlite_journal(engine), ERASING_TYPES))
    if SHREDDING_TYPES & set(service.event_types):
        chosen.append(JournalWipe(lambda: key_store().wipe_journal(), SHREDDING_TYPES))
    return chosen


def needs_key_store(service: Service[Any]) -> bool:
    """Whether a service reads or writes anything sealed: its own sealed columns, events whose personal field may
    arrive sealed, or the destruction of data keys. Others never open the key store."""
    return declares_sealed_columns(service.name) or bool(
        (SEALED_FIELDS.keys() | SHREDDING_TYPES) & set(service.event_types))


def full_topology(settings: RuntimeSettings, extra: Service[Any] | None = None) -> Topology:
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
        self, service: Service[Any], settings: RuntimeSettings, database_url: str, *, http_port: int | None = None,
        middlewares: Sequence[Middleware] | None = None, retry_policy: RetryPolicy | None = None,
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
        self.ready = threading.Event()
        self._stopping = threading.Event()
        self.middlewares: list[Middleware] = list(
            default_middlewares(service, self.engine) if middlewares is None else middlewares)
        self.pipeline = BatchPipeline(service, settings, self.sessions, self.middlewares, stopping=self._stopping)
        self.settler = Settler(service.name, self.names, retry_policy or RetryPolicy(settings.retry_delays),
                               self.middlewares, park=DeadLetterSealer(settings.keyring, settings.signing_key_id))
        self._todo: queue.Queue[list[Delivery] | None] = queue.Queue()
        self._done: queue.Queue[tuple[list[Delivery], list[Outcome]]] = queue.Queue()
        self._buffer: deque[Delivery] = deque()
        self._in_flight = 0
        self._generation = 0
        self.relay: OutboxRelay | None = None

    @property
    def deps(self) -> Any:
        """The service's outside gateways, built by run() once the database answers."""
        return self.pipeline.deps

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
        # Missing or wrong key-encryption keys stop the service here, before it could read or write anything.
        if needs_key_store(self.service):
            key_store().check()
        self._wait_for_database()
        self.pipeline.deps = self.service.build_deps(self.engine)
        web = self._start_web()
        producer = make_producer(self.settings, exchange=self.names.events_exchange,
                                 name=f"{self.service.name}-outbox", timeout=5.0)
        relay = self.relay = OutboxRelay(self.engine, self.outbox, producer,
                                         on_backlog=metrics.OUTBOX_BACKLOG.labels(self.service.name).set)
        self.middlewares.append(OutboxWakeup(relay.notify))
        self.middlewares.extend(slice_retry_reports(self.service.name, self.sessions, self.outbox, self.settings,
                                                    relay.notify))
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
            self.pipeline.close()
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
            self.settler.settle(channel, publisher, batch, outcomes)

    # ---- the worker thread: one transaction per batch ------------------------------------------------
    def _work(self) -> None:
        while True:
            batch = self._todo.get()
            if batch is None:
                return
            self._done.put((batch, self.pipeline.process(batch)))
