"""The runtime's hooks: metrics, logging context and the outbox relay's wake-up plug in here, not in the stages.

As dramatiq's and FastStream's middleware: each hook is a no-op on the base class, a middleware overrides the
ones it needs, and the runtime calls every middleware's hook in order (`after_handler` in reverse order).
Per-delivery hooks run in the worker thread around each handler; `after_commit` runs once a batch's
transaction has committed (a batch that is rolled back and run again reports once); the settle hooks run on
the connection's thread after the confirmed publish to a delay tier or the dead-letter exchange.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

import structlog

from shared import metrics
from shared.codec import Inbound
from shared.logging import get_logger

if TYPE_CHECKING:
    from shared.runtime.delivery import Delivery
    from shared.runtime.outcome import Outcome

log = get_logger("shared.consumer")


class Handled(NamedTuple):
    """One delivery of a committed batch that reached the inbox: its event type and what became of it."""

    event_type: str
    result: str  # ok | retry | failed (dead-lettered) | duplicate | raced (a replica claimed it first)
    seconds: float | None = None  # time in its handler, if it ran


@dataclass
class BatchReport:
    """What one committed batch did."""

    service: str
    size: int
    handled: list[Handled] = field(default_factory=list)
    emitted: int = 0


class Middleware:
    """The hooks; override the ones you need."""

    def before_handler(self, inbound: Inbound) -> None:
        """Just before the handler of `inbound` runs (in the worker thread)."""

    def after_handler(self, inbound: Inbound, seconds: float) -> None:
        """Right after it returned or raised."""

    def after_commit(self, report: BatchReport) -> None:
        """A batch's transaction committed."""

    def after_retry(self, service: str, delivery: Delivery, outcome: Outcome, tier: int, delay: float) -> None:
        """A delivery was published to delay tier `tier` (0-based) of `delay` seconds."""

    def after_dead(self, service: str, delivery: Delivery, kind: str, error: str) -> None:
        """A delivery was published to the dead-letter exchange."""


class LogContext(Middleware):
    """Binds the event's id, type and request id to every log line its handler writes."""

    def before_handler(self, inbound: Inbound) -> None:
        structlog.contextvars.bind_contextvars(
            event_id=inbound.event_id, event_type=inbound.envelope.type,
            request_id=str(getattr(inbound.data, "request_id", "")) or None,
        )

    def after_handler(self, inbound: Inbound, seconds: float) -> None:
        structlog.contextvars.unbind_contextvars("event_id", "event_type", "request_id")

    def after_retry(self, service: str, delivery: Delivery, outcome: Outcome, tier: int, delay: float) -> None:
        log.info("retry scheduled", event_id=delivery.event_id, delay_s=delay, attempt=tier + 1,
                 error=outcome.error)

    def after_dead(self, service: str, delivery: Delivery, kind: str, error: str) -> None:
        log.warning("dead-lettered", event_id=delivery.event_id, kind=kind, error=error)


class Metrics(Middleware):
    """The Prometheus counters of handled, duplicate, retried and dead-lettered events (shared/metrics.py)."""

    def __init__(self, event_types: tuple[str, ...]) -> None:
        self._event_types = frozenset(event_types)
        self._timers: dict[tuple[str, str], Any] = {}  # the handler-seconds histogram's child per label pair

    def after_commit(self, report: BatchReport) -> None:
        name = report.service
        metrics.BATCH_SIZE.labels(name).observe(report.size)
        counts: Counter[tuple[str, str]] = Counter()
        for event_type, result, seconds in report.handled:
            if seconds is not None:
                timer = self._timers.get((name, event_type))
                if timer is None:
                    timer = self._timers[name, event_type] = metrics.HANDLER_SECONDS.labels(name, event_type)
                timer.observe(seconds)
            counts[event_type, result] += 1
        for (event_type, result), n in counts.items():  # one update per type and result, not per delivery
            if result in ("duplicate", "raced"):
                metrics.INBOX_DUPLICATES.labels(name).inc(n)
            if result in ("ok", "retry", "duplicate"):
                metrics.EVENTS.labels(name, event_type, result).inc(n)

    def after_retry(self, service: str, delivery: Delivery, outcome: Outcome, tier: int, delay: float) -> None:
        metrics.RETRIES.labels(service, str(tier)).inc()

    def after_dead(self, service: str, delivery: Delivery, kind: str, error: str) -> None:
        metrics.DEAD_LETTERS.labels(service, kind).inc()
        event_type = delivery.message.properties.get("type")
        metrics.EVENTS.labels(service, event_type if event_type in self._event_types else "other", "dead").inc()


class OutboxWakeup(Middleware):
    """After a batch that emitted events: wake the outbox relay (the relay itself reports the backlog gauge)."""

    def __init__(self, notify: Callable[[], None]) -> None:
        self._notify = notify

    def after_commit(self, report: BatchReport) -> None:
        if report.emitted:
            self._notify()


class JournalWipe(Middleware):
    """After a batch that erased something: copy SQLite's WAL into the database and truncate it, so that erased
    rows (already zeroed in the database by secure_delete) do not live on in the journal; the key store's too,
    when a data key was destroyed. Nothing to do on PostgreSQL, where sealing covers dead tuples and WAL."""

    def __init__(self, wipe: Callable[[], None], erasing_types: frozenset[str]) -> None:
        self._wipe = wipe
        self._erasing = erasing_types

    def after_commit(self, report: BatchReport) -> None:
        if any(h.event_type in self._erasing and h.result == "ok" for h in report.handled):
            self._wipe()
