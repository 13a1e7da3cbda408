"""The codec's bodies are exactly the envelope model's JSON, whichever way they are written, and verify."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from uuid import UUID, uuid4

import pytest
from pydantic import ValidationError

from schemas import EVENT_MODELS, CloudEvent, EventData, envelope_for
from schemas.examples import example_deregistration, example_for, example_purchase
from shared.codec import CONTENT_TYPE, decode, encode
from shared.errors import BadInput
from shared.signing import HEADER, sign, verify

KEYRING = {"k1": b"first secret", "k2": b"second secret"}


def _model_body(data: EventData, *, source: str, event_id: str, when: datetime, subject: str | None = None) -> bytes:
    """The body as the envelope model writes it: the wire format."""
    envelope = envelope_for(data, source=source, subject=subject, id=UUID(event_id), time=when)
    return envelope.model_dump_json(exclude_none=True).encode()


def _encode_twice(data: EventData, **kwargs) -> list:
    """Once with a source the codec has not seen (the model's path), then again with it (the direct path)."""
    source = f"urn:loggamera:test:{uuid4().hex}"
    return [encode(data, source=source, keyring=KEYRING, key_id="k1", **kwargs) for _ in range(2)]


@pytest.mark.parametrize("model", EVENT_MODELS, ids=lambda m: m.__name__)
@pytest.mark.parametrize("subject", [None, "someone-else"])
def test_body_is_the_envelope_models_json(model: type[EventData], subject: str | None) -> None:
    data = example_for(model)
    for out in _encode_twice(data, subject=subject) + _encode_twice(data, subject=subject, event_id=uuid4(),
                                                                    time=datetime(2026, 3, 2, 9, 15, tzinfo=UTC)):
        envelope = CloudEvent.model_validate_json(out.body)
        assert out.body == _model_body(data, source=envelope.source, event_id=out.event_id, when=envelope.time,
                                       subject=subject)
        assert out.event_type == model.event_type and out.routing_key == model.routing_key()
        assert out.timestamp == int(envelope.time.timestamp())
        assert out.signature == sign(out.body, "k1", KEYRING)


def test_fresh_ids_are_random_version_4_uuids_and_the_time_is_now() -> None:
    before = datetime.now(UTC)
    outs = [encode(example_deregistration(f"u-{i}"), source="urn:loggamera:test", keyring=KEYRING, key_id="k1")
            for i in range(200)]
    ids = [UUID(out.event_id) for out in outs]
    assert len(set(ids)) == 200
    assert all(u.version == 4 and u.variant == "specified in RFC 4122" and str(u) == out.event_id
               for u, out in zip(ids, outs, strict=True))
    times = [CloudEvent.model_validate_json(out.body).time for out in outs]
    assert all(before <= t <= datetime.now(UTC) for t in times)


def test_whole_second_times_and_unusual_text_are_written_as_the_model_writes_them() -> None:
    data = example_purchase("u-1001")
    when = datetime(2026, 1, 1, tzinfo=UTC)  # no microseconds
    subject = "u-1001"
    for source in ("urn:loggamera:tëst/ä\"q\"", "/loggamera/x\\y\u00e9"):
        for out in [encode(data, source=source, keyring=KEYRING, key_id="k2", time=when, subject=subject)
                    for _ in range(2)]:
            assert out.body == _model_body(data, source=source, event_id=out.event_id, when=when, subject=subject)


def test_other_timezones_are_normalised_to_utc() -> None:
    data = example_deregistration()
    when = datetime(2026, 3, 2, 10, 15, tzinfo=timezone(timedelta(hours=1)))
    for out in _encode_twice(data, time=when):
        assert CloudEvent.model_validate_json(out.body).time == datetime(2026, 3, 2, 9, 15, tzinfo=UTC)
        assert b'"time":"2026-03-02T09:15:00Z"' in out.body


@pytest.mark.parametrize("kwargs", [{"source": "has space"}, {"source": ""}, {"subject": ""}],
                         ids=lambda kw: f"{next(iter(kw))}={next(iter(kw.values()))!r}")
def test_invalid_envelopes_are_refused_even_after_the_source_was_seen(kwargs: dict) -> None:
    data = example_deregistration()
    encode(data, source="urn:loggamera:seen", keyring=KEYRING, key_id="k1")
    with pytest.raises(ValidationError):
        encode(data, **{"source": "urn:loggamera:seen", **kwargs}, keyring=KEYRING, key_id="k1")
    with pytest.raises(ValidationError):
        encode(data, source="urn:loggamera:seen", time=datetime(2026, 1, 1), keyring=KEYRING, key_id="k1")


def test_encoded_events_decode_and_verify_with_either_key() -> None:
    for key_id in ("k1", "k2"):
        out = encode(example_deregistration("u-7"), source="urn:loggamera:test", keyring=KEYRING, key_id=key_id)
        assert verify(out.body, out.signature, KEYRING) == key_id
        inbound = decode(out.body, content_type=CONTENT_TYPE, headers={HEADER: out.signature}, keyring=KEYRING,
                         max_bytes=65536, message_id=out.event_id)
        assert inbound.data == example_deregistration("u-7") and inbound.event_id == out.event_id
        with pytest.raises(BadInput, match="does not match"):
            verify(out.body + b" ", out.signature, KEYRING)


def test_signature_is_hmac_sha256_of_the_exact_bytes() -> None:
    import hashlib
    import hmac

    for body in (b"", b"x", b"{}" * 5000):
        for key_id, key in KEYRING.items():
            assert sign(body, key_id, KEYRING) == f"v1={key_id}:{hmac.new(key, body, hashlib.sha256).hexdigest()}"


def test_the_direct_path_knows_the_envelopes_attributes() -> None:
    from shared import codec

    assert codec._DIRECT, "CloudEvent's attributes changed: update the direct path of shared.codec.encode"
