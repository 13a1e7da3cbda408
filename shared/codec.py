"""Wire format (DESIGN §2): events to signed CloudEvents bytes and back, with every failure named."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from pydantic import ValidationError
from pydantic_core import to_json

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
    """Wrap event data in a CloudEvents envelope, serialise it and sign the exact bytes.

    The body is always `envelope_for(...).model_dump_json(exclude_none=True)`. Once a source has passed the
    envelope's validation, the body is written directly instead: the payload serialised once by its own model,
    the attributes around it by the same serializer, and no envelope model built; that costs a third.
    """
    if subject is None:
        subject = getattr(data, "user_id", None)
    source_json = _valid_sources.get(source)
    if (
        source_json is None
        or not _DIRECT
        or (subject is not None and (type(subject) is not str or not subject))
        or (event_id is not None and type(event_id) is not UUID)
        or (time is not None and (not isinstance(time, datetime) or time.tzinfo is not UTC))
    ):
        envelope = envelope_for(data, source=source, subject=subject, id=event_id, time=time)
        if len(_valid_sources) >= 1024:
            _valid_sources.clear()
        _valid_sources[source] = to_json(source)
        return encode_envelope(envelope, keyring=keyring, key_id=key_id)
    kind = type(data)
    attributes = _attributes.get(kind)
    if attributes is None:
        attributes = _attributes[kind] = (to_json(kind.event_type), to_json(kind.dataschema()))
    type_json, schema_json = attributes
    when = datetime.now(UTC) if time is None else time
    event_id_text = _uuid4_text() if event_id is None else str(event_id)
    body = b"".join((
        b'{"specversion":"1.0","id":"', event_id_text.encode(), b'","source":', source_json,
        b',"type":', type_json, b',"time":', to_json(when),
        b"" if subject is None else b',"subject":' + to_json(subject),
        b',"datacontenttype":"application/json","dataschema":', schema_json,
        b',"data":', data.__pydantic_serializer__.to_json(data), b"}",
    ))
    return Outbound(
        event_id=event_id_text,
        event_type=kind.event_type,
        routing_key=routing_key(kind.event_type),
        body=body,
        signature=sign(body, key_id, keyring),
        source=source,
        timestamp=int(when.timestamp()),
    )


# Sources that passed the envelope's validation, with their JSON; the attributes each event type fixes.
_valid_sources: dict[str, bytes] = {}
_attributes: dict[type[EventData], tuple[bytes, bytes]] = {}
# The direct path writes the attributes in the model's order; should the model change, every event takes the
# model's path (tests/test_codec.py compares the two byte for byte).
_DIRECT = tuple(CloudEvent.model_fields) == (
    "specversion", "id", "source", "type", "time", "subject", "datacontenttype", "dataschema", "data")


def _uuid4_text() -> str:
    """`str(uuid.uuid4())` without building the UUID object."""
    raw = bytearray(os.urandom(16))
    raw[6] = raw[6] & 0x0F | 0x40  # version 4
    raw[8] = raw[8] & 0x3F | 0x80  # the RFC 4122 variant
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


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
