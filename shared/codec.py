"""Wire format (docs/CONTRACT.md): events to signed CloudEvents bytes and back, with every failure named."""

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

from schemas import SEALED_FIELDS, CloudEvent, EventData, UnknownEventType, data_model_for, envelope_for
from shared.errors import BadInput
from shared.keys.jwe import SealedFieldError
from shared.keys.wire import open_sealed_field
from shared.runtime.headers import ORIGINAL_ROUTING_KEY as ORIGINAL_KEY_HEADER
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
        or (subject is not None and subject != getattr(data, "user_id", None))  # the model checks any other
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


def encode_sealed(data: EventData, *, source: str, keyring: Mapping[str, bytes], key_id: str,
                  subject: str | None = None) -> Outbound:
    """As encode(), with the event's personal field sealed under the user's data key (docs/CONTRACT.md)."""
    from shared.keys.wire import sealed_body

    envelope, body = sealed_body(data, source=source, subject=subject)
    return encode_envelope(envelope, keyring=keyring, key_id=key_id, body=body)


def encode_own(data: EventData, *, source: str, keyring: Mapping[str, bytes], key_id: str,
               subject: str | None = None) -> Outbound:
    """An event we publish ourselves: its personal field sealed if its type has one (SEALED_FIELDS), else as
    encode() writes it. Nothing we send carries personal data in clear."""
    if data.event_type in SEALED_FIELDS:
        return encode_sealed(data, source=source, keyring=keyring, key_id=key_id, subject=subject)
    return encode(data, source=source, keyring=keyring, key_id=key_id, subject=subject)


def encode_envelope(envelope: CloudEvent, *, keyring: Mapping[str, bytes], key_id: str,
                    body: bytes | None = None) -> Outbound:
    """Serialise and sign an already-built envelope (or sign `body`, its serialisation written elsewhere)."""
    body = envelope.model_dump_json(exclude_none=True).encode() if body is None else body
    return Outbound(
        event_id=str(envelope.id),
        event_type=envelope.type,
        routing_key=routing_key(envelope.type),
        body=body,
        signature=sign(body, key_id, keyring),
        source=envelope.source,
        timestamp=int(envelope.time.astimezone(UTC).timestamp()),
    )


# Every reason a message is dead-lettered for, by its `x-error-kind` header: the one list the consumer runtime,
# docs/CONTRACT.md and the AsyncAPI document use (tests/contract/test_contract_docs.py keeps them in step).
DEAD_LETTER_REASONS: dict[str, str] = {
    "oversized": "the body is larger than the limit (ERASURE_MAX_BODY_BYTES, 256 KiB by default)",
    "content_type": f"the content type is not {CONTENT_TYPE}, or the body is not text in its content encoding",
    "signature": "no x-signature header, a malformed one, an unknown key id, or a digest that does not match",
    "not_json": "the body is not JSON (or is nested too deeply to parse)",
    "schema": "the envelope or its data breaks the JSON Schema (a type, pattern, length, enum, format, "
              "unknown field or cross-field rule)",
    "unknown_type": "the CloudEvent type is not one of the known event types, or this service has no handler",
    "routing_key_mismatch": "the routing key the message was published with is not the one its type maps to",
    "type_mismatch": "the AMQP type property is set and differs from the CloudEvent type",
    "message_id_mismatch": "the AMQP message_id is missing or differs from the CloudEvent id",
    "subject_mismatch": "the CloudEvent subject differs from the user_id in its data",
    "future_time": "an instant (the event time or a time in its data) lies further in the future than the "
                   "allowed clock skew (ERASURE_MAX_CLOCK_SKEW, 300 s by default)",
    "conflicting_duplicate": "an event with this id was already handled with a different body",
    "permanent": "the handler failed in a way retrying cannot fix (e.g. a vendor refused the request as invalid)",
    "retries_exhausted": "a transient failure persisted through every delay tier",
    "delivery_limit": "the message was delivered more often than x-delivery-limit (it crashed its consumer)",
    "sealed": "a sealed (compact JWE) personal field does not open: malformed, altered, or under a data key that is "
              "unknown or destroyed (its user was erased)",
    "undecodable": "decoding failed unexpectedly (a defect in the decoder; the message is kept for replay)",
}
DEFAULT_MAX_CLOCK_SKEW_S = 300.0


def _bad(kind: str, message: str) -> BadInput:
    """A BadInput whose kind is one of DEAD_LETTER_REASONS."""
    assert kind in DEAD_LETTER_REASONS, kind
    return BadInput(kind, message)


def body_bytes(body: object, content_encoding: str | None = None) -> bytes:
    """The exact bytes of a delivered body; BadInput('content_type') if they cannot be recovered.

    py-amqp hands over text, not bytes, when a message names a content encoding, and always for an empty
    body: encoding it again in that encoding gives back the bytes that were signed.
    """
    if isinstance(body, bytes):
        return body
    if isinstance(body, bytearray | memoryview):
        return bytes(body)
    if body is None:
        return b""
    if isinstance(body, str):
        try:
            return body.encode(content_encoding or "utf-8")
        except (LookupError, UnicodeError, TypeError) as exc:  # an unknown, unusable or non-text encoding
            raise _bad("content_type", f"body cannot be encoded in its content encoding "
                                       f"{content_encoding!r}: {type(exc).__name__}") from exc
    raise _bad("content_type", f"body is a {type(body).__name__}, not bytes")


def effective_routing_key(exchange: str | None, routing_key: str | None, headers: Mapping[str, Any]) -> str | None:
    """The routing key an event was published with.

    Through the events exchange it is the delivery's own. A delay tier or a dead-letter replay returns the
    message through the default exchange, keyed by the queue name; the runtime recorded the original key in
    `x-original-routing-key` then (only the services' own accounts may publish to the default exchange, so
    the header is trusted there and only there). None when it is not known: the message was put on the queue
    directly by the runtime or an operator.
    """
    if exchange:
        return routing_key
    original = headers.get(ORIGINAL_KEY_HEADER)
    if isinstance(original, bytes):
        original = original.decode("utf-8", "replace")
    return original if isinstance(original, str) and original else None


def decode_delivery(
    message: Any, *, keyring: Mapping[str, bytes], max_bytes: int, max_clock_skew: float | None,
    now: datetime | None = None,
) -> Inbound:
    """Decode a message as delivered (kombu or py-amqp): body, properties, headers and the delivery's key."""
    properties = message.properties or {}
    headers = getattr(message, "headers", None) or properties.get("application_headers") or {}
    info = getattr(message, "delivery_info", None) or {}
    return decode(
        body_bytes(message.body, getattr(message, "content_encoding", None) or properties.get("content_encoding")),
        content_type=getattr(message, "content_type", None) or properties.get("content_type"),
        headers=headers,
        keyring=keyring,
        max_bytes=max_bytes,
        wire=Wire(
            routing_key=effective_routing_key(info.get("exchange"), info.get("routing_key"), headers),
            message_id=properties.get("message_id"),
            amqp_type=properties.get("type"),
        ),
        max_clock_skew=max_clock_skew,
        now=now,
    )


@dataclass(frozen=True)
class Wire:
    """What the AMQP message says besides its body; each must agree with the CloudEvent it carries."""

    routing_key: str | None  # None: not known (delivered straight to the queue), so not compared
    message_id: str | None  # required, equal to the CloudEvent id
    amqp_type: str | None = None  # optional; when set, equal to the CloudEvent type


def decode(
    body: bytes,
    *,
    content_type: str | None,
    headers: Mapping[str, Any] | None,
    keyring: Mapping[str, bytes],
    max_bytes: int,
    message_id: str | None = None,
    wire: Wire | None = None,
    max_clock_skew: float | None = None,
    now: datetime | None = None,
) -> Inbound:
    """Check a body and what the message says about it; raise BadInput with one of DEAD_LETTER_REASONS.

    In order: size, content type, signature, JSON, envelope, type, data, then agreement of the AMQP
    properties (`wire`) and of the subject with the data, then that no instant is further in the future than
    `max_clock_skew` seconds (None: not checked). Never raises anything else for any input.
    """
    try:
        return _decode(body, content_type=content_type, headers=headers, keyring=keyring, max_bytes=max_bytes,
                       message_id=message_id, wire=wire, max_clock_skew=max_clock_skew, now=now)
    except BadInput:
        raise
    except Exception as exc:  # a defect here must still name its input's fate, never escape as a crash
        raise _bad("undecodable", f"{type(exc).__name__} while decoding") from exc


def _decode(
    body: bytes,
    *,
    content_type: str | None,
    headers: Mapping[str, Any] | None,
    keyring: Mapping[str, bytes],
    max_bytes: int,
    message_id: str | None,
    wire: Wire | None,
    max_clock_skew: float | None,
    now: datetime | None,
) -> Inbound:
    body = body_bytes(body)
    if len(body) > max_bytes:
        raise _bad("oversized", f"body is {len(body)} bytes; the limit is {max_bytes}")
    if not isinstance(content_type, str | None) or (content_type or "").split(";")[0].strip().lower() != CONTENT_TYPE:
        raise _bad("content_type", f"content type {content_type!r} is not {CONTENT_TYPE}")
    verify(body, (headers or {}).get(SIGNATURE_HEADER), keyring)
    try:
        raw = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _bad("not_json", f"body is not JSON: {exc}") from exc
    except RecursionError as exc:
        raise _bad("not_json", "body is JSON nested too deeply to parse") from exc
    try:
        envelope = CloudEvent.model_validate(raw, strict=True)
    except ValidationError as exc:
        raise _bad("schema", f"not a CloudEvents 1.0 envelope: {_summary(exc)}") from exc
    except (OverflowError, ValueError, RecursionError) as exc:  # e.g. a time beyond what UTC can represent
        raise _bad("schema", f"not a CloudEvents 1.0 envelope: {type(exc).__name__}") from exc
    if message_id is not None and message_id != str(envelope.id):
        raise _bad("message_id_mismatch", f"message_id {message_id!r} differs from the event id {envelope.id}")
    try:
        model = data_model_for(envelope.type)
    except UnknownEventType as exc:
        raise _bad("unknown_type", f"event {envelope.id}: unknown type {envelope.type!r}") from exc
    try:
        opened = open_sealed_field(envelope.type, envelope.data)
    except SealedFieldError as exc:
        raise _bad("sealed", f"event {envelope.id} ({envelope.type}): {exc}") from None
    try:
        data = model.model_validate(opened, strict=True)
    except ValidationError as exc:
        raise _bad("schema", f"event {envelope.id} ({envelope.type}): {_summary(exc)}") from exc
    except (ArithmeticError, ValueError, RecursionError) as exc:  # e.g. amounts beyond exact decimal arithmetic
        raise _bad("schema", f"event {envelope.id} ({envelope.type}): {type(exc).__name__}") from exc
    if wire is not None:
        _check_wire(envelope, wire)
    user_id = getattr(data, "user_id", None)
    if envelope.subject is not None and user_id is not None and envelope.subject != user_id:
        raise _bad("subject_mismatch", f"event {envelope.id}: the subject differs from the data's user_id")
    if max_clock_skew is not None:
        _check_not_ahead(envelope, data, (now or datetime.now(UTC)).timestamp() + max_clock_skew)
    return Inbound(envelope=envelope, data=data, body_sha256=hashlib.sha256(body).hexdigest())


def _check_wire(envelope: CloudEvent, wire: Wire) -> None:
    """The routing key, AMQP type and message_id agree with the CloudEvent, or BadInput."""
    expected_key = routing_key(envelope.type)
    if wire.routing_key is not None and wire.routing_key != expected_key:
        raise _bad("routing_key_mismatch", f"event {envelope.id} ({envelope.type}) was published with routing key "
                                           f"{_short(wire.routing_key)}; its type is routed as {expected_key!r}")
    if wire.amqp_type is not None and wire.amqp_type != envelope.type:
        raise _bad("type_mismatch", f"event {envelope.id}: AMQP type {_short(wire.amqp_type)} differs from the "
                                    f"CloudEvent type {envelope.type!r}")
    if wire.message_id is None:
        raise _bad("message_id_mismatch", f"event {envelope.id}: the AMQP message_id is missing; it must be the id")
    if wire.message_id != str(envelope.id):
        raise _bad("message_id_mismatch", f"event {envelope.id}: AMQP message_id {_short(wire.message_id)} differs "
                                          f"from the CloudEvent id")


def _check_not_ahead(envelope: CloudEvent, data: EventData, limit: float) -> None:
    """No instant of the event lies beyond `limit` (a POSIX time), or BadInput('future_time')."""
    instants = {"time": envelope.time}
    instants.update((name, value) for name, value in data if isinstance(value, datetime))
    for name, value in instants.items():
        if value.timestamp() > limit:
            raise _bad("future_time", f"event {envelope.id}: {name} {value.isoformat()} is in the future beyond "
                                      f"the allowed clock skew")


def _short(value: object, limit: int = 80) -> str:
    """A value from the wire, quoted and cut short for an error message."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"


def _summary(exc: ValidationError, limit: int = 5) -> str:
    """A short, PII-free account of what failed validation: field paths and messages, no input values."""
    parts = [
        f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}" for err in exc.errors()[:limit]
    ]
    more = exc.error_count() - limit
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")
