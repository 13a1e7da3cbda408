"""An in-memory transport: services' handlers, inbox, outbox and retry decisions run without a broker.

The idea of FastStream's `TestRabbitBroker`, nameko's `worker_factory` and dramatiq's `StubBroker`: the
namespace's topology (the same `full_topology` the broker gets) is kept as queues of messages in memory, and
a started service runs every batch through the same stages as on the broker (`shared/runtime/`: decode →
claim → handle → stage, then settle, which publishes retries and dead letters to this transport's
"channel"). `publish` delivers at once; a delay tier keeps its messages until their TTL has passed while a test
waits (`wait_handled`), or until `retry()` lets them expire at once. The outbox is relayed by the runtime's
own `OutboxRelay`, to the queues bound to each event.

    def test_erasure(erasure_memory, db_backend):
        running = erasure_memory.start(build())
        [sent] = erasure_memory.publish(example_deregistration("u-1"))
        assert running.handled(sent.event_id)
        [report] = erasure_memory.wait_events(ErasureSliceReported)

What only a broker proves (acks and confirms on the wire, dead lettering by the broker, delivery limits,
reconnects) stays with `shared.testing.pipeline.Pipeline` on a real RabbitMQ.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from amqp.basic_message import Message as AmqpMessage
from sqlalchemy import Engine, select

from schemas import EventData
from shared.codec import Outbound
from shared.consumer import default_middlewares, full_topology
from shared.db import ensure_schema, make_engine, session_factory
from shared.keys.wire import DeadLetterSealer
from shared.outbox import OutboxRelay
from shared.retrying import slice_retry_reports
from shared.runtime.delivery import Delivery
from shared.runtime.headers import ATTEMPTS
from shared.runtime.outcome import Outcome
from shared.runtime.pipeline import BatchPipeline
from shared.runtime.settle import RetryPolicy, Settler
from shared.service import Service
from shared.settings import RuntimeSettings
from shared.testing.scratch import Scratch, events_of
from shared.topology import Names, Topology

E = TypeVar("E", bound=EventData)


@dataclass
class MemoryMessage:
    """A message in a memory queue, with what the runtime reads of a kombu message."""

    body: bytes
    properties: dict[str, Any]
    headers: dict[str, Any]
    delivery_info: dict[str, Any] = field(default_factory=dict)
    delivery_tag: int = 0
    queued_at: float = 0.0  # time.monotonic() when it entered its queue (a delay tier's TTL counts from it)

    @property
    def content_type(self) -> str | None:
        return self.properties.get("content_type")

    @classmethod
    def of(cls, outbound: Outbound) -> MemoryMessage:
        properties = outbound.properties()
        return cls(outbound.body, properties, dict(properties.pop("headers")),
                   {"routing_key": outbound.routing_key})


class MemoryBroker:
    """The topology's queues in memory, routing as RabbitMQ would (topic bindings, default exchange, TTL)."""

    def __init__(self, topology: Topology) -> None:
        self.queues: dict[str, deque[MemoryMessage]] = {}
        self._bindings: dict[tuple[str, str], list[str]] = {}
        self._expire_to: dict[str, tuple[str, float]] = {}  # delay tier -> (its service queue, TTL in seconds)
        self.declare(topology)

    def declare(self, topology: Topology) -> None:
        """Add the topology's queues and bindings that are not declared yet (as declaring on a broker does)."""
        for spec in topology.queues:
            if spec.name in self.queues:
                continue
            self.queues[spec.name] = deque()
            for binding in spec.bindings:
                self._bindings.setdefault(binding, []).append(spec.name)
            if "x-message-ttl" in spec.arguments and spec.arguments.get("x-dead-letter-exchange") == "":
                self._expire_to[spec.name] = (spec.arguments["x-dead-letter-routing-key"],
                                              spec.arguments["x-message-ttl"] / 1000)

    def route(self, exchange: str, routing_key: str, message: MemoryMessage) -> None:
        """Copy the message to every queue bound to (exchange, routing_key); "" is the default exchange."""
        targets = [routing_key] if exchange == "" else self._bindings.get((exchange, routing_key), [])
        for name in targets:
            info = {**message.delivery_info, "exchange": exchange, "routing_key": routing_key, "redelivered": False}
            self.queues[name].append(replace(message, headers=dict(message.headers), delivery_info=info,
                                             queued_at=time.monotonic()))

    def expire_delay_tiers(self, *, all_now: bool = False) -> int:
        """Move the messages whose TTL has passed (all of them with all_now) back to their service queues."""
        moved = 0
        now = time.monotonic()
        for name, (target, ttl) in self._expire_to.items():
            waiting = self.queues[name]
            while waiting and (all_now or waiting[0].queued_at + ttl <= now):
                self.route("", target, waiting.popleft())
                moved += 1
        return moved


class MemoryChannel:
    """What the settle stage publishes, acks and rejects on; a publish is routed in the memory broker."""

    def __init__(self, broker: MemoryBroker, queue: str) -> None:
        self._broker = broker
        self._queue = queue
        self.unsettled: dict[int, MemoryMessage] = {}

    def basic_publish(self, msg: AmqpMessage, exchange: str, routing_key: str, mandatory: bool) -> None:
        properties = dict(msg.properties)
        headers = dict(properties.pop("application_headers", None) or {})
        self._broker.route(exchange, routing_key, MemoryMessage(msg.body, properties, headers))

    def basic_ack(self, delivery_tag: int, multiple: bool) -> None:
        for tag in [t for t in self.unsettled if t == delivery_tag or (multiple and t < delivery_tag)]:
            del self.unsettled[tag]

    def basic_reject(self, delivery_tag: int, requeue: bool) -> None:
        message = self.unsettled.pop(delivery_tag)
        if requeue:
            message.delivery_info["redelivered"] = True
            self._broker.queues[self._queue].appendleft(message)


class _RelayTarget:
    """The outbox relay's producer: publishes to the memory broker's events exchange."""

    def __init__(self, broker: MemoryBroker, exchange: str) -> None:
        self._broker = broker
        self._exchange = exchange

    def publish_many(self, messages: Iterable[Outbound]) -> None:
        for outbound in messages:
            self._broker.route(self._exchange, outbound.routing_key, MemoryMessage.of(outbound))


class MemoryService:
    """One service on the memory transport: the runtime's stages on its own database."""

    def __init__(self, service: Service[Any], settings: RuntimeSettings, database_url: str, broker: MemoryBroker,
                 *, deps: Any = None) -> None:
        self.service = service
        self.settings = settings
        self.names = Names(settings.namespace)
        self.queue = self.names.queue(service.name)
        self.engine: Engine = make_engine(database_url)
        ensure_schema(self.engine, service.metadata, service.migrations)
        self.sessions = session_factory(self.engine, service.metadata)
        self.inbox = service.metadata.tables["inbox"]
        self.outbox = service.metadata.tables["outbox"]
        middlewares = [*default_middlewares(service, self.engine),
                       *slice_retry_reports(service.name, self.sessions, self.outbox, settings)]
        self.pipeline = BatchPipeline(service, settings, self.sessions, middlewares)
        self.pipeline.deps = service.build_deps(self.engine) if deps is None else deps
        self.settler = Settler(service.name, self.names, RetryPolicy(settings.retry_delays), middlewares,
                               park=DeadLetterSealer(settings.keyring, settings.signing_key_id))
        target = _RelayTarget(broker, self.names.events_exchange)
        self.relay = OutboxRelay(self.engine, self.outbox, target)  # type: ignore[arg-type]
        self._broker = broker
        self._channel = MemoryChannel(broker, self.queue)
        self._tags = 0
        self.run_all: Callable[[], int] = self.deliver  # MemoryPipeline.start points it at every service
        self.outcomes: list[tuple[str | None, Outcome]] = []  # (event id, outcome) of every delivery, in order

    @property
    def deps(self) -> Any:
        return self.pipeline.deps

    def deliver(self) -> int:
        """Run what waits in the service's queue through the stages, a batch at a time; how many were settled."""
        waiting = self._broker.queues[self.queue]
        settled = 0
        while waiting:
            batch = []
            while waiting and len(batch) < self.settings.batch_size:
                self._tags += 1
                message = waiting.popleft()
                message.delivery_tag = self._tags
                self._channel.unsettled[self._tags] = message
                batch.append(Delivery(message, generation=1))
            outcomes = self.pipeline.process(batch)
            self.settler.settle(self._channel, self._channel, batch, outcomes)
            self.outcomes.extend((d.event_id, o) for d, o in zip(batch, outcomes, strict=True))
            settled += len(batch)
        return settled

    def relay_outbox(self) -> int:
        """Publish what the service committed to its outbox (the relay thread's job on the broker)."""
        published = 0
        while count := self.relay.relay_once():
            published += count
        return published

    def handled(self, event_id: str | uuid.UUID) -> bool:
        """Whether the service has committed the effects of this event."""
        with self.engine.connect() as conn:
            row = conn.execute(select(self.inbox.c.event_id).where(self.inbox.c.event_id == str(event_id))).first()
        return row is not None

    def wait_handled(self, event_id: str | uuid.UUID, timeout: float = 20.0) -> None:
        """Wait until the service has committed this event, letting the delay tiers expire as time passes."""
        deadline = time.monotonic() + timeout
        while not self.handled(event_id):
            assert time.monotonic() < deadline, f"timed out after {timeout}s: {self.service.name} to handle {event_id}"
            time.sleep(0.02)
            if self._broker.expire_delay_tiers():
                self.run_all()

    def close(self) -> None:
        self.pipeline.close()
        self.service.close_deps(self.deps)
        self.engine.dispose()


class MemoryPipeline(Scratch):
    """The pipeline of `shared.testing.pipeline.Pipeline` without a broker: start, publish, take, wait_events."""

    def __init__(self, *, workdir: Path, postgres_admin_url: str | None = None, namespace: str = "memory",
                 **settings: Any) -> None:
        self.settings = RuntimeSettings(namespace=namespace, **settings)
        self.namespace = namespace
        self.workdir = workdir
        self.postgres_admin_url = postgres_admin_url
        self.services: dict[str, MemoryService] = {}
        self._databases: list[str] = []
        self._seen: dict[str, list[dict[str, Any]]] = {}
        self.broker = MemoryBroker(full_topology(self.settings))

    def start(self, service: Service[Any], database_url: str | None = None, *, deps: Any = None) -> MemoryService:
        """Start a service on the transport (its queue joins the topology if the catalog lacks it)."""
        self.broker.declare(full_topology(self.settings, service))
        running = MemoryService(service, self.settings, database_url or self.database_url(service.name),
                                self.broker, deps=deps)
        running.run_all = self.run
        self.services[service.name] = running
        return running

    def publish(self, *events: EventData | Outbound, attempts: int = 0, run: bool = True) -> list[Outbound]:
        """Publish events (EventData is signed first) and, unless run=False, let the services handle them."""
        messages = [e if isinstance(e, Outbound) else self.encode(e) for e in events]
        if attempts:
            messages = [replace(m, headers={**m.headers, ATTEMPTS: attempts}) for m in messages]
        for message in messages:
            self.broker.route(self.names.events_exchange, message.routing_key, MemoryMessage.of(message))
        if run:
            self.run()
        return messages

    @property
    def names(self) -> Names:
        return Names(self.namespace)

    def run(self, *, rounds: int = 100) -> int:
        """Deliver and relay until nothing moves (emitted events reach the started services too)."""
        total = 0
        for _ in range(rounds):
            moved = sum(s.deliver() + s.relay_outbox() for s in list(self.services.values()))
            total += moved
            if not moved:
                return total
        raise AssertionError(f"still delivering after {rounds} rounds: events cycle between services")

    def retry(self) -> int:
        """Let the delay tiers expire now (without waiting out their TTL) and deliver what returns."""
        moved = self.broker.expire_delay_tiers(all_now=True)
        self.run()
        return moved

    def depth(self, queue: str) -> int:
        return len(self.broker.queues[queue])

    def take(self, queue: str) -> list[MemoryMessage]:
        """Every message now in a queue, removed from it."""
        waiting = self.broker.queues[queue]
        taken = list(waiting)
        waiting.clear()
        return taken

    def dead(self, service: str) -> list[MemoryMessage]:
        """The service's dead letters, removed from its dead-letter queue."""
        return self.take(self.names.dead_queue(service))

    def wait_events(self, model: type[E], *, count: int = 1, where: Callable[[E], bool] = lambda _event: True,
                    queue: str | None = None, timeout: float = 0.0) -> list[E]:
        """The events of a type (matching `where`) that reached a queue, the ledger's by default; at least `count`.

        As on the broker, events taken from the queue are remembered, so successive calls see them all.
        """
        self.run()
        name = queue or self.names.queue("ledger")
        seen = self._seen.setdefault(name, [])
        seen.extend(json.loads(m.body) for m in self.take(name))
        found = events_of(model, seen)
        matching = [e for e in found if where(e)]
        assert len(matching) >= count, f"{len(matching)} {model.__name__} on {name}, expected {count}"
        return matching

    def close(self) -> None:
        for running in self.services.values():
            running.close()
        self.drop_databases()


def outcomes_by_event(running: MemoryService) -> Mapping[str | None, list[Outcome]]:
    """Every outcome a service settled, by event id (a retried event has one per attempt)."""
    result: dict[str | None, list[Outcome]] = {}
    for event_id, outcome in running.outcomes:
        result.setdefault(event_id, []).append(outcome)
    return result
