"""Re-running the unfinished slices of one request: its UserDeregistered again, to those slices' queues only.

The event is the request's own (same request id, reason, time of receipt and replay flag) under a fresh event
id, as the backup-restore replay does, so each slice's inbox takes it as new and runs its erasure again; the
slices' erasures and the vendors' idempotency make a second run harmless, and the ledger ignores a second
deregistration of a request it knows and keeps the first report of each slice. It goes through the default
exchange keyed by each slice's queue, with the original routing key in `x-original-routing-key`, the way a
delay tier or a dead-letter replay returns a message to one service.
"""

from __future__ import annotations

import dataclasses
import uuid

from sqlalchemy.orm import Session

from schemas import SLICE_SERVICES, UserDeregistered
from services.ledger.legal import Refused, require_started_and_open
from services.ledger.queries import request_status
from shared.codec import Outbound, encode
from shared.producer import Producer
from shared.runtime.headers import ORIGINAL_ROUTING_KEY
from shared.settings import RuntimeSettings
from shared.topology import Names


def plan_retry(session: Session, request_id: str, slice_name: str | None) -> tuple[UserDeregistered, list[str]]:
    """The request's deregistration and the slices to re-run (the named one, or every unfinished one)."""
    if slice_name is not None and slice_name not in SLICE_SERVICES:
        raise Refused(f"no slice {slice_name!r}; the slices are {', '.join(SLICE_SERVICES)}")
    status = require_started_and_open(request_id, request_status(session, request_id))
    assert status.reason is not None and status.requested_at is not None
    if slice_name is not None and slice_name not in status.missing:
        raise Refused(f"slice {slice_name} of request {request_id} has already reported")
    event = UserDeregistered(
        user_id=status.user_id, request_id=uuid.UUID(status.request_id), reason=status.reason,
        requested_at=status.requested_at, replay=status.replay,
        original_request_id=uuid.UUID(status.original_request_id) if status.original_request_id else None)
    return event, [slice_name] if slice_name is not None else list(status.missing)


def retry_messages(event: UserDeregistered, slices: list[str], runtime: RuntimeSettings) -> list[Outbound]:
    """One signed message per slice, keyed by that slice's queue on the default exchange (fresh event ids)."""
    names = Names(runtime.namespace)
    messages = []
    for service in slices:
        signed = encode(event, source=runtime.source, keyring=runtime.keyring, key_id=runtime.signing_key_id)
        messages.append(dataclasses.replace(signed, routing_key=names.queue(service),
                                            headers={**signed.headers, ORIGINAL_ROUTING_KEY: signed.routing_key}))
    return messages


def publish_retry(event: UserDeregistered, slices: list[str], runtime: RuntimeSettings, producer: Producer) -> int:
    """Publish the retry with confirms on a producer of the default exchange; how many were confirmed."""
    return producer.publish_many(retry_messages(event, slices, runtime))


def send_retry(event: UserDeregistered, slices: list[str], runtime: RuntimeSettings) -> int:
    """Open a confirming producer on the default exchange and publish the retry; how many were confirmed.
    Raises `shared.errors.PublishError` when the broker does not confirm (a second run is harmless)."""
    from shared.broker import producer as make_producer

    with make_producer(runtime, exchange="", name="erasure-retry") as producer:
        return publish_retry(event, slices, runtime, producer)
