"""Personal data on the wire: which field of which event may travel sealed, opening it on receipt (plaintext
still accepted, and counted), and publishing an event with it sealed under the subject's data key."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from prometheus_client import Counter

from schemas import SEALED_FIELDS, EventData, envelope_for
from shared.keys.jwe import SealedFieldError, is_compact_jwe, open_value, seal_value
from shared.keys.sealing import key_store
from shared.keys.store import user_subject


def _holds_data(value: Any) -> bool:
    """Whether a field's value holds anything to seal: an empty list (a slice holding nothing) does not."""
    return value is not None and value not in ([], {})


PLAINTEXT_CONTACT = Counter(
    "erasure_plaintext_contact_total",
    "Events received with their contact details in clear rather than sealed (accepted for compatibility).",
    ["event_type"])


def open_sealed_field(event_type: str, data: Mapping[str, Any]) -> Mapping[str, Any]:
    """`data` with its sealed personal field opened; plaintext is returned as is and counted. SealedFieldError if
    the field is sealed but cannot be opened."""
    field = SEALED_FIELDS.get(event_type)
    if field is None or not isinstance(data, Mapping) or field not in data:
        return data
    value = data[field]
    if not is_compact_jwe(value):
        if _holds_data(value):
            PLAINTEXT_CONTACT.labels(event_type).inc()
        return data
    user_id = data.get("user_id")
    if not isinstance(user_id, str):
        raise SealedFieldError("a sealed field needs the event's user_id to name its key")
    return {**data, field: open_value(key_store(), value, user_id=user_id)}


def sealed_body(data: EventData, *, source: str, subject: str | None = None) -> tuple[Any, bytes]:
    """The envelope of `data` and its body with the personal field sealed under the user's data key (made on
    first use); events without one, or with it empty, are written as they are."""
    envelope = envelope_for(data, source=source, subject=subject)
    dumped = envelope.model_dump(mode="json", exclude_none=True)
    field = SEALED_FIELDS.get(data.event_type)
    if field is not None and _holds_data(dumped["data"].get(field)):
        key_id, key = key_store().issue(user_subject(dumped["data"]["user_id"]))
        dumped["data"][field] = seal_value(key_id, key, dumped["data"][field])
    return envelope, json.dumps(dumped, separators=(",", ":"), ensure_ascii=False).encode()


__all__ = ["DeadLetterSealer", "SealedFieldError", "open_sealed_field", "sealed_body"]


# Dead-letter kinds raised before the signature was checked, or by it: such a body was never verified, so it is
# not signed again by us (a forged message must stay refused when replayed).
UNVERIFIED_KINDS = frozenset({"oversized", "content_type", "signature", "undecodable"})


class DeadLetterSealer:
    """What a dead letter becomes before a service parks it: its personal field sealed under the user's data key
    (so that the user's erasure reaches the dead-letter queue too), signed again when its signature had been
    verified. Bodies that hold no clear personal field, or cannot be read as an event, are parked as they came."""

    def __init__(self, keyring: Mapping[str, bytes], key_id: str) -> None:
        self.keyring = keyring
        self.key_id = key_id

    def __call__(self, delivery: Any, kind: str) -> tuple[bytes, str | None]:
        from shared.signing import sign

        body = bytes(delivery.message.body)
        try:
            event = json.loads(body)
            data = event["data"]
            field = SEALED_FIELDS.get(event["type"])
            user_id = data["user_id"]
        except (ValueError, TypeError, KeyError, UnicodeDecodeError, RecursionError):
            return body, None
        if field is None or not _holds_data(data.get(field)) or is_compact_jwe(data[field]) \
                or not isinstance(user_id, str):
            return body, None
        key_id, key = key_store().issue(user_subject(user_id))
        data[field] = seal_value(key_id, key, data[field])
        sealed = json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode()
        return sealed, None if kind in UNVERIFIED_KINDS else sign(sealed, self.key_id, self.keyring)
