"""Stage 1, decode: a delivery's bytes to a verified, validated event and its handler, or a dead-letter outcome."""

from __future__ import annotations

from typing import Any, NamedTuple

from shared import codec
from shared.codec import Inbound
from shared.errors import BadInput
from shared.logging import get_logger
from shared.runtime.delivery import Delivery
from shared.runtime.outcome import Outcome
from shared.service import Handler, OutsideStep, Service
from shared.settings import RuntimeSettings

log = get_logger(__name__)


class Ready(NamedTuple):
    """A delivery that can be handled: its event, the handler registered for its type, and its outside step
    (if the service gave its type one) with the step's result once reach.py has run it."""

    inbound: Inbound
    handler: Handler
    step: OutsideStep | None = None
    outside: Any = None


def decode_delivery(delivery: Delivery, service: Service, settings: RuntimeSettings) -> Ready | Outcome:
    """The delivery's event and handler; or, for a delivery that cannot be handled, why (dead-lettered)."""
    try:
        inbound = codec.decode_delivery(delivery.message, keyring=settings.keyring,
                                        max_bytes=settings.max_body_bytes, max_clock_skew=settings.max_clock_skew)
    except BadInput as exc:
        return Outcome.dead(exc.kind, str(exc))
    except Exception as exc:  # a decoder bug must cost one message, never the consumer
        log.exception("decoding failed unexpectedly")
        return Outcome.dead("undecodable", f"{type(exc).__name__} while decoding")
    event_type = inbound.envelope.type
    handler = service.handler_for(event_type)
    if handler is None:
        return Outcome.dead("unknown_type", f"event {inbound.event_id}: {service.name} has no handler for {event_type}")
    return Ready(inbound, handler, service.outside_for(event_type))
