"""The broker topology (docs/CONTRACT.md, Topology), derived in one place and declared idempotently."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

EVENT_PREFIX = "se.loggamera."
DAY_MS = 24 * 60 * 60 * 1000


def delay_label(seconds: float) -> str:
    """A short, stable name for a delay tier: 500ms, 1s, 10s, 1m, 10m, 1h."""
    ms = round(seconds * 1000)
    for unit, size in (("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms >= size and ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


@dataclass(frozen=True)
class Names:
    """Every exchange and queue name, from the namespace. Names are spelled nowhere else."""

    namespace: str = "erasure"

    @property
    def events_exchange(self) -> str:
        return f"{self.namespace}.events"

    @property
    def dead_exchange(self) -> str:
        return f"{self.namespace}.dead"

    def queue(self, service: str) -> str:
        return f"{self.namespace}.{service}"

    def retry_queue(self, service: str, delay: float) -> str:
        return f"{self.namespace}.{service}.retry.{delay_label(delay)}"

    def dead_queue(self, service: str) -> str:
        return f"{self.namespace}.{service}.dead"


def routing_key(event_type: str) -> str:
    """The topic routing key of an event type: the type without `se.loggamera.`."""
    return event_type.removeprefix(EVENT_PREFIX)


@dataclass(frozen=True)
class QueueSpec:
    name: str
    arguments: dict[str, Any]
    bindings: tuple[tuple[str, str], ...] = ()  # (exchange, routing key)


@dataclass(frozen=True)
class Topology:
    """Exchanges, queues with their arguments, and bindings: one value both the code and deploy/ use."""

    exchanges: tuple[tuple[str, str], ...]  # (name, type)
    queues: tuple[QueueSpec, ...] = field(default_factory=tuple)

    def queue(self, name: str) -> QueueSpec:
        return next(q for q in self.queues if q.name == name)


def build_topology(
    names: Names,
    subscriptions: Mapping[str, Iterable[str]],
    *,
    retry_delays: Iterable[float],
    delivery_limit: int,
    dead_letter_ttl_days: float,
) -> Topology:
    """The full topology for services that consume the given event types."""
    queues: list[QueueSpec] = []
    delays = tuple(retry_delays)
    for service, event_types in sorted(subscriptions.items()):
        queues.append(
            QueueSpec(
                names.queue(service),
                {
                    "x-queue-type": "quorum",
                    "x-delivery-limit": delivery_limit,
                    "x-dead-letter-exchange": names.dead_exchange,
                    "x-dead-letter-routing-key": service,
                    "x-dead-letter-strategy": "at-least-once",
                    "x-overflow": "reject-publish",
                },
                tuple((names.events_exchange, routing_key(t)) for t in sorted(event_types)),
            )
        )
        for delay in delays:
            queues.append(
                QueueSpec(
                    names.retry_queue(service, delay),
                    {
                        "x-queue-type": "quorum",
                        "x-message-ttl": round(delay * 1000),
                        "x-dead-letter-exchange": "",
                        "x-dead-letter-routing-key": names.queue(service),
                        "x-dead-letter-strategy": "at-least-once",
                        "x-overflow": "reject-publish",
                    },
                )
            )
        queues.append(
            QueueSpec(
                names.dead_queue(service),
                {"x-queue-type": "quorum", "x-message-ttl": round(dead_letter_ttl_days * DAY_MS)},
                ((names.dead_exchange, service),),
            )
        )
    return Topology(
        exchanges=((names.events_exchange, "topic"), (names.dead_exchange, "direct")),
        queues=tuple(queues),
    )


def declare(channel: Any, topology: Topology) -> None:
    """Declare exchanges, queues and bindings on a py-amqp channel; safe to repeat."""
    for name, kind in topology.exchanges:
        channel.exchange_declare(name, kind, durable=True, auto_delete=False)
    for spec in topology.queues:
        channel.queue_declare(spec.name, durable=True, auto_delete=False, arguments=spec.arguments)
        for exchange, key in spec.bindings:
            channel.queue_bind(spec.name, exchange, routing_key=key)
