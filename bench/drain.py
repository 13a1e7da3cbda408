"""Drains: fill N quorum queues with a backlog, let one consumer process per queue empty them, time it.

The queues are the service queues our topology declares (same arguments), fed through a bench exchange
so that no other queue of the namespace collects copies. Every consumer kind drains the same backlog,
and the rate is total deliveries / (last commit - first delivery) over all consumers.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kombu

from bench import events as ev
from bench import onerow
from bench.env import BenchEnv
from bench.procs import Child, Profile
from shared.codec import Outbound
from shared.consumer import full_topology
from shared.producer import RawMessage
from shared.settings import RuntimeSettings
from shared.topology import Names, declare, routing_key


@dataclass
class Drain:
    """A namespace with `queues` one-row service queues behind the exchange `<ns>.bench`."""

    env: BenchEnv
    namespace: str
    queues: int
    log_dir: Path

    @property
    def settings(self) -> RuntimeSettings:
        return self.env.settings(self.namespace, retry_delays=(1.0,))

    @property
    def exchange(self) -> str:
        return f"{self.namespace}.bench"

    def queue_names(self) -> list[str]:
        return [Names(self.namespace).queue(f"onerow{i}") for i in range(self.queues)]

    def declare(self) -> None:
        """Declare the queues as each one-row service would, plus the bench exchange bound to all of them."""
        key = routing_key(ev.UserDeregistered.event_type)
        with kombu.Connection(self.env.amqp_url) as conn:
            channel = conn.channel()
            for i in range(self.queues):
                topology = full_topology(self.settings, onerow.service(f"onerow{i}", onerow.Clock()))
                self.env.remember(topology)
                declare(channel, topology)
            self.env.remember(exchanges=[self.exchange])
            channel.exchange_declare(self.exchange, "topic", durable=True, auto_delete=False)
            for name in self.queue_names():
                channel.queue_bind(name, self.exchange, routing_key=key)

    def purge(self) -> None:
        """Empty the queues (after a run that hit its time cap)."""
        with kombu.Connection(self.env.amqp_url) as conn:
            channel = conn.channel()
            for name in self.queue_names():
                channel.queue_purge(name)

    def depth(self) -> int:
        """Messages ready in all the queues together."""
        with kombu.Connection(self.env.amqp_url) as conn:
            channel = conn.channel()
            return sum(channel.queue_declare(name, passive=True).message_count for name in self.queue_names())

    def fill(self, events: Sequence[Outbound], *, celery: bool = False) -> float:
        """Put every event in every queue (confirmed); return the publish seconds."""
        messages: list[RawMessage] = (ev.celery_messages(events, self.exchange) if celery
                                      else ev.raw(events, self.exchange))
        return ev.publish_confirmed(self.env.amqp_url, messages)

    def run(
        self,
        kind: str,
        events: Sequence[Outbound],
        *,
        backend: str = "",
        prefetch: int = 200,
        batch: int = 100,
        cap_s: float = 120.0,
        profile: Path | None = None,
    ) -> dict[str, Any]:
        """Fill, start one `kind` consumer per queue, release them together, and measure the drain."""
        fill_s = self.fill(events, celery=kind == "celery")
        label = f"{kind}-{backend or 'nodb'}-{prefetch}-{batch}-{uuid.uuid4().hex[:4]}"
        children = []
        try:
            for i, queue in enumerate(self.queue_names()):
                db = self.env.database_url(backend, f"{label}_{i}".replace("-", "_")) if backend else ""
                children.append(Child(
                    f"{label}-{i}",
                    ["-m", "bench.worker", kind, "--amqp-url", self.env.amqp_url, "--namespace", self.namespace,
                     "--queue", queue, "--expect", str(len(events)), "--db", db, "--prefetch", str(prefetch),
                     "--batch", str(batch)],
                    log_dir=self.log_dir, stdin=True))
            for child in children:
                child.expect("ready", 60)
            spy = Profile(children[0].pid, profile) if profile else None
            for child in children:
                child.send("go")
            started = time.monotonic()
            results, capped = [], False
            for child in children:
                try:
                    results.append(child.result(max(1.0, cap_s - (time.monotonic() - started))))
                except RuntimeError:
                    capped = True
        finally:
            for child in children:
                child.stop()
        hot = spy.finish() if spy else None
        if capped:
            self.purge()
        return _summary(kind, backend, prefetch=prefetch, batch=batch, per_queue=len(events), results=results,
                        capped=capped, fill_s=fill_s, hot=hot)


def _summary(kind: str, backend: str, *, prefetch: int, batch: int, per_queue: int, results: list[dict[str, Any]],
             capped: bool, fill_s: float, hot: dict[str, Any] | None) -> dict[str, Any]:
    delivered = sum(r["count"] for r in results)
    span = (max(r["last"] for r in results) - min(r["first"] for r in results)) if results else 0.0
    summary: dict[str, Any] = {
        "kind": kind, "backend": backend or None, "prefetch": prefetch, "batch_size": batch,
        "events_per_queue": per_queue, "deliveries": delivered, "seconds": round(span, 3),
        "deliveries_per_s": round(delivered / span, 1) if span > 0 else 0.0,
        "cpu_us_per_delivery": round(1e6 * sum(r["cpu_s"] for r in results) / delivered, 1) if delivered else 0.0,
        "peak_rss_mb": max((r["maxrss_mb"] for r in results), default=0.0),
        "fill_seconds": round(fill_s, 2),
        "capped": capped,
    }
    if hot:
        summary["profile"] = hot
    return summary
