"""Personal data sealed on the wire: opened on receipt, refused once the user's key is destroyed, plaintext still
accepted and counted; what we publish ourselves through an outbox is always sealed."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from schemas import EVENT_TYPES, SEALED_FIELDS
from schemas.examples import (
    example_access_answer,
    example_consent_change,
    example_correction,
    example_for,
    example_purchase,
)
from shared.codec import CONTENT_TYPE, decode, encode, encode_sealed
from shared.db import runtime_metadata
from shared.errors import BadInput
from shared.keys import key_store, user_subject
from shared.keys.jwe import is_compact_jwe
from shared.keys.wire import PLAINTEXT_CONTACT
from shared.outbox import stage_many
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


def _personal_values(event) -> list[str]:  # type: ignore[no-untyped-def]
    """Every string the event's personal field holds, however deep."""
    found: list[str] = []

    def walk(value: object) -> None:
        if isinstance(value, str):
            found.append(value)
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(event.model_dump(mode="json")[SEALED_FIELDS[event.event_type]])
    return found


@pytest.mark.parametrize("make", [example_access_answer, example_correction])
def test_our_own_events_travel_through_the_outbox_with_their_personal_field_sealed(make, tmp_path) -> None:  # type: ignore[no-untyped-def]
    event = make(f"u-wire-own-{make.__name__}")
    engine = create_engine(f"sqlite:///{tmp_path / 'outbox.db'}")
    metadata = runtime_metadata()
    outbox = metadata.tables["outbox"]
    metadata.create_all(engine)
    with Session(engine) as session, session.begin():
        stage_many(session, outbox, [event], source="urn:test", keyring=SETTINGS.keyring,
                   key_id=SETTINGS.signing_key_id)
    with engine.connect() as conn:
        [(body, signature)] = conn.execute(select(outbox.c.body, outbox.c.signature)).all()
    assert is_compact_jwe(json.loads(body)["data"][SEALED_FIELDS[event.event_type]])
    for value in _personal_values(event):
        assert value.encode() not in body, f"{value} travels in clear"
    counter = PLAINTEXT_CONTACT.labels(event.event_type)
    before = counter._value.get()
    assert _decode(body, signature).data == event
    assert counter._value.get() == before, "a sealed field is not counted as plaintext"


def test_an_empty_access_answer_has_nothing_to_seal_and_is_not_counted_as_plaintext() -> None:
    event = example_access_answer("u-wire-empty", items=[])
    message = _sealed(event)
    assert json.loads(message.body)["data"]["items"] == []
    counter = PLAINTEXT_CONTACT.labels(event.event_type)
    before = counter._value.get()
    assert _decode(message.body, message.signature).data == event
    assert counter._value.get() == before


@pytest.mark.parametrize("make", [example_access_answer, example_correction])
def test_a_foreign_publishers_clear_access_answer_or_correction_is_accepted_and_counted(make) -> None:  # type: ignore[no-untyped-def]
    event = make("u-wire-foreign")
    counter = PLAINTEXT_CONTACT.labels(event.event_type)
    before = counter._value.get()
    message = encode(event, source="urn:test", keyring=SETTINGS.keyring, key_id=SETTINGS.signing_key_id)
    assert _decode(message.body, message.signature).data == event
    assert counter._value.get() == before + 1


@pytest.mark.parametrize("event_type", sorted(SEALED_FIELDS))
def test_the_json_schema_of_each_sealed_field_describes_the_sealed_form_we_send(event_type: str) -> None:
    model = EVENT_TYPES[event_type]
    schema = json.loads((Path(__file__).resolve().parents[2] / "schemas" / "json" / f"{model.routing_key()}.json")
                        .read_text(encoding="utf-8"))
    form = schema["properties"][SEALED_FIELDS[event_type]]["x-sealed-form"]
    sent = json.loads(_sealed(example_for(model)).body)["data"][SEALED_FIELDS[event_type]]
    jsonschema.validate(sent, form)
