"""Contact details sealed on the wire: opened on receipt, refused once the user's key is destroyed, plaintext still
accepted and counted."""

from __future__ import annotations

import json

import pytest

from schemas.examples import example_consent_change, example_purchase
from shared.codec import CONTENT_TYPE, decode, encode, encode_sealed
from shared.errors import BadInput
from shared.keys import key_store, user_subject
from shared.keys.wire import PLAINTEXT_CONTACT
from shared.settings import RuntimeSettings

SETTINGS = RuntimeSettings()


def _decode(body: bytes, signature: str):  # type: ignore[no-untyped-def]
    return decode(body, content_type=CONTENT_TYPE, headers={"x-signature": signature}, keyring=SETTINGS.keyring,
                  max_bytes=SETTINGS.max_body_bytes)


def _sealed(event):  # type: ignore[no-untyped-def]
    return encode_sealed(event, source="urn:test", keyring=SETTINGS.keyring, key_id=SETTINGS.signing_key_id)


@pytest.mark.parametrize("make", [example_purchase, example_consent_change])
def test_a_sealed_event_carries_no_contact_detail_in_clear_and_opens_on_receipt(make) -> None:  # type: ignore[no-untyped-def]
    event = make("u-wire-open")
    message = _sealed(event)
    address = event.customer.email if hasattr(event, "customer") else event.email
    assert address.encode() not in message.body and json.dumps(address)[1:-1].encode() not in message.body
    assert _decode(message.body, message.signature).data == event


def test_a_sealed_event_is_dead_lettered_once_its_user_is_erased() -> None:
    message = _sealed(example_purchase("u-wire-erased"))
    key_store().destroy(user_subject("u-wire-erased"))
    with pytest.raises(BadInput) as refused:
        _decode(message.body, message.signature)
    assert refused.value.kind == "sealed" and "destroyed" in str(refused.value)


def test_a_sealed_field_under_another_users_key_or_altered_is_refused() -> None:
    mine = json.loads(_sealed(example_purchase("u-wire-a")).body)
    theirs = json.loads(_sealed(example_purchase("u-wire-b")).body)
    mine["data"]["customer"] = theirs["data"]["customer"]
    moved = json.dumps(mine).encode()
    from shared.signing import sign

    with pytest.raises(BadInput, match="not the key of user u-wire-a"):
        _decode(moved, sign(moved, SETTINGS.signing_key_id, SETTINGS.keyring))
    parts = theirs["data"]["customer"].split(".")
    parts[3] = ("A" if parts[3][0] != "A" else "B") + parts[3][1:]
    theirs["data"]["customer"] = ".".join(parts)
    altered = json.dumps(theirs).encode()
    with pytest.raises(BadInput, match="altered"):
        _decode(altered, sign(altered, SETTINGS.signing_key_id, SETTINGS.keyring))


def test_plaintext_contact_details_are_accepted_and_counted() -> None:
    counter = PLAINTEXT_CONTACT.labels(example_purchase().event_type)
    before = counter._value.get()
    event = example_purchase("u-wire-clear")
    message = encode(event, source="urn:test", keyring=SETTINGS.keyring, key_id=SETTINGS.signing_key_id)
    assert _decode(message.body, message.signature).data == event
    assert counter._value.get() == before + 1
