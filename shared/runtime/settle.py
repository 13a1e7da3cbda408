"""Stage 5, settle: after the commit, failed deliveries go to a delay tier or the dead-letter exchange by a
confirmed publish, then the batch is acked with one multiple-ack (released ones are rejected back to the queue).

The retry policy (which tier a failure goes to, when the tiers are used up) is its own object, so a service or
a test can plug another in.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from amqp.basic_message import Message as AmqpMessage

from shared.faults import failpoint
from shared.logging import mask_text
from shared.runtime import headers as h
from shared.runtime.delivery import Delivery
from shared.runtime.middleware import Middleware
from shared.runtime.outcome import Action, Outcome
from shared.signing import HEADER as SIGNATURE_HEADER
from shared.topology import Names


class Channel(Protocol):
    """What settling needs of an AMQP channel (py-amqp's, as kombu hands it out, or the in-memory one)."""

    def basic_publish(self, msg: AmqpMessage, exchange: str, routing_key: str, mandatory: bool) -> Any: ...
    def basic_ack(self, delivery_tag: int, multiple: bool) -> Any: ...
    def basic_reject(self, delivery_tag: int, requeue: bool) -> Any: ...


@dataclass(frozen=True)
class RetryPolicy:
    """The delay tiers: a failure with `attempts` earlier failures goes to tier `attempts`, or is exhausted.

    A `retry_after` (a vendor's Retry-After) longer than that tier moves it to the first tier at least as long.
    """

    delays: tuple[float, ...]

    def tier(self, attempts: int, retry_after: float | None) -> int | None:
        """The 0-based tier to wait in, or None when every tier has been used."""
        if attempts >= len(self.delays):
            return None
        if retry_after:
            return next((i for i, d in enumerate(self.delays) if i >= attempts and d >= retry_after), attempts)
        return attempts


class Settler:
    """Settles a committed batch's deliveries on one connection's channels."""

    def __init__(self, service: str, names: Names, policy: RetryPolicy, middlewares: Sequence[Middleware], *,
                 park: Callable[[Delivery, str], tuple[bytes, str | None]] | None = None) -> None:
        self.service = service
        self.names = names
        self.policy = policy
        self.middlewares = middlewares
        # What a dead letter's body becomes before it is parked, and its new signature (None: keep the old one).
        self.park = park

    def settle(self, channel: Channel, publisher: Channel, batch: Sequence[Delivery],
               outcomes: Sequence[Outcome]) -> None:
        """Republish the failures (confirmed on `publisher`), then ack the rest on `channel` in one go."""
        last_acked = None
        for delivery, outcome in zip(batch, outcomes, strict=True):
            if outcome.action is Action.RELEASE:
                channel.basic_reject(delivery.tag, requeue=True)
                continue
            if outcome.action is Action.RETRY:
                self.retry(publisher, delivery, outcome)
            elif outcome.action is Action.DEAD:
                self.dead(publisher, delivery, outcome.kind, outcome.error)
            last_acked = delivery.tag if last_acked is None else max(last_acked, delivery.tag)
        failpoint("after_commit")
        if last_acked is not None:
            channel.basic_ack(last_acked, multiple=True)

    def retry(self, publisher: Channel, delivery: Delivery, outcome: Outcome) -> None:
        """To the next delay tier, counting the attempt; dead-lettered once the tiers are used up."""
        tier = self.policy.tier(delivery.attempts, outcome.retry_after)
        if tier is None:
            self.dead(publisher, delivery, "retries_exhausted",
                      f"gave up after {delivery.attempts + 1} attempts: {outcome.error}")
            return
        delay = self.policy.delays[tier]
        headers = self._carry_headers(delivery)
        headers[h.ATTEMPTS] = tier + 1
        headers[h.LAST_ERROR] = mask_text(outcome.error)[:500]
        _republish(publisher, delivery, "", self.names.retry_queue(self.service, delay), headers)
        for middleware in self.middlewares:
            middleware.after_retry(self.service, delivery, outcome, tier, delay)

    def dead(self, publisher: Channel, delivery: Delivery, kind: str, error: str) -> None:
        """To this service's dead-letter queue, with why, when and by whom."""
        headers = self._carry_headers(delivery)
        headers.update({
            h.ERROR_KIND: kind,
            h.ERROR: mask_text(error)[:1000],
            h.FAILED_AT: datetime.now(UTC).isoformat(),
            h.ATTEMPTS: delivery.attempts + 1,
            h.SERVICE: self.service,
        })
        body = None
        if self.park is not None:
            body, signature = self.park(delivery, kind)
            if signature is not None:
                headers[SIGNATURE_HEADER] = signature
        _republish(publisher, delivery, self.names.dead_exchange, self.service, headers, body=body)
        for middleware in self.middlewares:
            middleware.after_dead(self.service, delivery, kind, error)

    @staticmethod
    def _carry_headers(delivery: Delivery) -> dict[str, Any]:
        headers = dict(delivery.headers)
        headers.setdefault(h.ORIGINAL_ROUTING_KEY, delivery.message.delivery_info.get("routing_key", ""))
        return headers


def _republish(publisher: Channel, delivery: Delivery, exchange: str, key: str, headers: dict[str, Any], *,
               body: bytes | None = None) -> None:
    """The same body (or `body`) and properties (persistent), with new headers, confirmed and mandatory."""
    props = {k: v for k, v in delivery.message.properties.items() if k not in ("application_headers", "headers")}
    props["delivery_mode"] = 2
    message = AmqpMessage(delivery.message.body if body is None else body, application_headers=headers, **props)
    publisher.basic_publish(message, exchange=exchange, routing_key=key, mandatory=True)
