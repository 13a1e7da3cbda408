"""Wire format (DESIGN §2): events to signed CloudEvents bytes and back, with every failure named."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from pydantic import ValidationError

from schemas import CloudEvent, EventData, UnknownEventType, data_model_for, envelope_for
from shared.errors import BadInput
from shared.signing import HEADER as SIGNATURE_HEADER
from shared.signing import sign, verify
from shared.topology import routing_key

CONTENT_TYPE = "application/cloudevents+json"


@dataclass(frozen=True)
class Outbound:
    """A signed event ready to publish: the exact body bytes and the AMQP properties that mirror it."""

    event_id: str
    event_type: str
    routing_key: str
    body: bytes
    signature: str
    source: str
    timestamp: int
    headers: dict[str, Any] = field(default_factory=dict)

    def properties(self) -> dict[str, Any]:
        """AMQP basic properties mirroring the CloudEvents attributes."""
        return {
            "content_type": CONTENT_TYPE,
            "delivery_mode": 2,
            "message_id": self.event_id,
            "type": self.event_type,
            "app_id": self.source,
            "timestamp": self.timestamp,
            "headers": {SIGNATURE_HEADER: self.signature, **self.headers},
        }


@dataclass(frozen=True)
class Inbound:
    """A decoded, verified and validated event."""

    envelope: CloudEvent
    data: EventData
    body_sha256: str

    @property
    def event_id(self) -> str:
        return str(self.envelope.id)


def encode(
    data: EventData,
    *,
    source: str,
    keyring: Mapping[str, bytes],
    key_id: str,
    subject: str | None = None,
    event_id: UUID | None = None,
    time: datetime | None = None,
) -> Outbound:
    """Wrap event data in a CloudEvents envelope, serialise it and sign the exact bytes."""
    envelope = envelope_for(data, source=source, subject=subject, id=event_id, time=time)
    return encode_envelope(envelope, keyring=keyring, key_id=key_id)


def encode_envelope(envelope: CloudEvent, *, keyring: Mapping[str, bytes], key_id: str) -> Outbound:
    """Serialise and sign an already-built envelope."""
    body = envelope.model_dump_json(exclude_none=True).encode()
    return Outbound(
        event_id=str(envelope.id),
        event_type=envelope.type,
        routing_key=routing_key(envelope.type),
        body=body,
        signature=sign(body, key_id, keyring),
        source=envelope.source,
        timestamp=int(envelope.time.astimezone(UTC).timestamp()),
    )


def decode(
    body: bytes,
    *,
    content_type: str | None,
    headers: Mapping[str, Any] | None,
    keyring: Mapping[str, bytes],
    max_bytes: int,
    message_id: str | None = None,
) -> Inbound:
    """Check size, content type, signature, JSON, envelope and data, in that order; raise BadInput."""
    if len(body) > max_bytes:
        raise BadInput("oversized", f"body is {len(body)} bytes; the limit is {max_bytes}")
    if (content_type or "").split(";")[0].strip().lower() != CONTENT_TYPE:
        raise BadInput("content_type", f"content type {content_type!r} is not {CONTENT_TYPE}")
    verify(body, (headers or {}).get(SIGNATURE_HEADER), keyring)
    try:
        raw = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadInput("not_json", f"body is not JSON: {exc}") from exc
    except RecursionError as exc:
        raise BadInput("not_json", "body is JSON nested too deeply to parse") from exc
    try:
        envelope = CloudEvent.model_validate(raw)
    except ValidationError as exc:
        raise BadInput("schema", f"not a CloudEvents 1.0 envelope: {_summary(exc)}") from exc
    except (OverflowError, ValueError, RecursionError) as exc:  # e.g. a time beyond what UTC can represent
        raise BadInput("schema", f"not a CloudEvents 1.0 envelope: {type(exc).__name__}") from exc
    if message_id is not None and message_id != str(envelope.id):
        raise BadInput("schema", f"message_id {message_id!r} differs from the event id {envelope.id}")
    try:
        model = data_model_for(envelope.type)
    except UnknownEventType as exc:
        raise BadInput("unknown_type", f"event {envelope.id}: unknown type {envelope.type!r}") from exc
    try:
        data = model.model_validate(envelope.data)
    except ValidationError as exc:
        raise BadInput("schema", f"event {envelope.id} ({envelope.type}): {_summary(exc)}") from exc
    except (OverflowError, ValueError, RecursionError) as exc:
        raise BadInput("schema", f"event {envelope.id} ({envelope.type}): {type(exc).__name__}") from exc
    return Inbound(envelope=envelope, data=data, body_sha256=hashlib.sha256(body).hexdigest())


def _summary(exc: ValidationError, limit: int = 5) -> str:
    """A short, PII-free account of what failed validation: field paths and messages, no input values."""
    parts = [
        f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}" for err in exc.errors()[:limit]
    ]
    more = exc.error_count() - limit
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")
