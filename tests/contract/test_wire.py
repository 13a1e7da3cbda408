"""The wire is parsed strictly and every bad input gets a named reason; decoding never raises anything else."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas import UserDeregistered
from schemas.examples import example_consent_change, example_deregistration, example_purchase
from shared.codec import (
    CONTENT_TYPE,
    DEAD_LETTER_REASONS,
    ORIGINAL_KEY_HEADER,
    Outbound,
    Wire,
    body_bytes,
    decode,
    effective_routing_key,
    encode,
)
from shared.errors import BadInput
from shared.signing import HEADER, sign, verify

KEYRING = {"k1": b"first secret"}
MAX_BYTES = 256 * 1024
SKEW = 300.0


def _out(data: Any = None, **kwargs: Any) -> Outbound:
    return encode(data or example_deregistration("u-wire"), source="urn:loggamera:test", keyring=KEYRING,
                  key_id="k1", **kwargs)


def _wire(out: Outbound, **changes: Any) -> Wire:
    return Wire(**{"routing_key": out.routing_key, "message_id": out.event_id, "amqp_type": out.event_type,
                   **changes})


def _decode(body: Any, *, wire: Wire | None = None, headers: Any = "sign", content_type: Any = CONTENT_TYPE,
            skew: float | None = SKEW, now: datetime | None = None) -> Any:
    if headers == "sign":
        headers = {HEADER: sign(body_bytes(body), "k1", KEYRING)}
    return decode(body, content_type=content_type, headers=headers, keyring=KEYRING, max_bytes=MAX_BYTES,
                  wire=wire, max_clock_skew=skew, now=now)


def _kind(body: Any, **kwargs: Any) -> str:
    with pytest.raises(BadInput) as caught:
        _decode(body, **kwargs)
    assert caught.value.kind in DEAD_LETTER_REASONS
    assert str(caught.value), "every reason comes with a message"
    return caught.value.kind


def _edited(out: Outbound, **changes: Any) -> bytes:
    """The body with envelope attributes (or `data__field`) replaced; a value of ... removes it."""
    raw = json.loads(out.body)
    for path, value in changes.items():
        target = raw
        *parents, leaf = path.split("__")
        for part in parents:
            target = target[part]
        if value is ...:
            del target[leaf]
        else:
            target[leaf] = value
    return json.dumps(raw).encode()


# ---- A3: decoding and verification never raise anything but a named BadInput ----------------------------
@pytest.mark.parametrize("body", [b"", "", None, bytearray(b""), memoryview(b"")],
                         ids=["bytes", "text", "none", "bytearray", "memoryview"])
def test_a_signed_empty_body_is_not_json_not_a_crash(body: Any) -> None:
    """py-amqp delivers an empty body as '' (text): it is the empty byte string, signed or not."""
    assert _kind(body) == "not_json"


def test_a_text_body_is_verified_as_the_bytes_of_its_content_encoding() -> None:
    out = _out()
    text = out.body.decode()
    assert _decode(text).event_id == out.event_id
    assert body_bytes(text, "utf-8") == out.body
    with pytest.raises(BadInput) as caught:
        body_bytes("é", "ascii")
    assert caught.value.kind == "content_type"
    with pytest.raises(BadInput) as caught:
        body_bytes("x", "no-such-codec")
    assert caught.value.kind == "content_type"
    assert _kind(12345, headers={HEADER: "v1=k1:" + "0" * 64}) == "content_type"
    with pytest.raises(BadInput) as caught:
        body_bytes("x", 5)  # type: ignore[arg-type]
    assert caught.value.kind == "content_type"


@pytest.mark.parametrize("header", [
    None, "", b"", 42, ["v1=k1:00"], "v1=k1:" + "é" * 64, b"v1=k1:\xff\xfe", "v1=k1:" + "0" * 10_000,
    "v2=k1:" + "0" * 64, "v1=:" + "0" * 64, "v1=k1:", "v1=nokey:" + "0" * 64, "v1=k1:" + "\x00" * 64,
], ids=repr)
def test_any_signature_header_is_a_signature_reason(header: Any) -> None:
    body = _out().body
    with pytest.raises(BadInput) as caught:
        verify(body, header, KEYRING)
    assert caught.value.kind == "signature"
    assert _kind(body, headers={HEADER: header}) == "signature"


@pytest.mark.parametrize("content_type", [None, "", 7, b"application/cloudevents+json", "application/json"],
                         ids=repr)
def test_any_content_type_but_cloudevents_json_is_a_content_type_reason(content_type: Any) -> None:
    assert _kind(_out().body, content_type=content_type) == "content_type"


def test_verify_refuses_a_body_that_is_not_bytes() -> None:
    with pytest.raises(BadInput) as caught:
        verify("text", "v1=k1:" + "0" * 64, KEYRING)
    assert caught.value.kind == "signature"


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    body=st.one_of(st.binary(max_size=300), st.text(max_size=300), _json_values.map(json.dumps)),
    edits=st.dictionaries(
        st.sampled_from(["id", "type", "time", "subject", "source", "specversion", "data", "data__user_id",
                         "data__requested_at", "data__replay", "data__request_id", "dataschema", "extra"]),
        _json_values, max_size=3),
    header=st.one_of(st.none(), st.text(max_size=80), st.binary(max_size=80), st.just("sign")),
    routing_key=st.one_of(st.none(), st.text(max_size=30), st.just("user.deregistered.v1")),
    message_id=st.one_of(st.none(), st.text(max_size=40)),
    amqp_type=st.one_of(st.none(), st.text(max_size=40)),
)
def test_no_input_makes_decoding_raise_anything_but_a_named_reason(  # noqa: PLR0917 (hypothesis draws)
    body: Any, edits: dict[str, Any], header: Any, routing_key: Any, message_id: Any, amqp_type: Any
) -> None:
    if edits:  # a valid event with some attributes replaced by arbitrary JSON
        raw = json.loads(_out().body)
        for path, value in edits.items():
            if path.startswith("data__"):
                if isinstance(raw["data"], dict):
                    raw["data"][path[6:]] = value
            else:
                raw[path] = value
        body = json.dumps(raw).encode()
    headers = {HEADER: header} if header != "sign" else "sign"
    kind = None
    try:
        _decode(body, headers=headers, wire=Wire(routing_key, message_id, amqp_type))
    except BadInput as exc:
        kind = exc.kind
    assert kind is None or (kind in DEAD_LETTER_REASONS and kind != "undecodable"), kind


# ---- A4: routing key, AMQP type and message_id agree with the CloudEvent ---------------------------------
def test_a_deregistration_under_the_purchase_routing_key_is_refused() -> None:
    out = _out()
    assert _kind(out.body, wire=_wire(out, routing_key="purchase.completed.v1")) == "routing_key_mismatch"
    assert _decode(out.body, wire=_wire(out)).data == example_deregistration("u-wire")


@pytest.mark.parametrize(("changes", "kind"), [
    ({"amqp_type": "se.loggamera.purchase.completed.v1"}, "type_mismatch"),
    ({"amqp_type": "x" * 10_000}, "type_mismatch"),
    ({"message_id": None}, "message_id_mismatch"),
    ({"message_id": str(uuid4())}, "message_id_mismatch"),
    ({"routing_key": "user.deregistered.v2"}, "routing_key_mismatch"),
    ({"routing_key": "#"}, "routing_key_mismatch"),
])
def test_amqp_properties_that_disagree_with_the_cloudevent_are_refused(changes: dict[str, Any], kind: str) -> None:
    out = _out()
    with pytest.raises(BadInput) as caught:
        _decode(out.body, wire=_wire(out, **changes))
    assert caught.value.kind == kind
    assert len(str(caught.value)) < 400, "the message quotes wire values cut short"


def test_an_unset_amqp_type_and_an_unknown_routing_key_are_not_compared() -> None:
    out = _out()
    assert _decode(out.body, wire=_wire(out, amqp_type=None, routing_key=None)).event_id == out.event_id


def test_the_routing_key_is_the_deliverys_on_the_events_exchange_and_the_recorded_one_on_the_default() -> None:
    forged = {ORIGINAL_KEY_HEADER: "user.deregistered.v1"}
    assert effective_routing_key("erasure.events", "purchase.completed.v1", forged) == "purchase.completed.v1"
    assert effective_routing_key("", "erasure.payment", forged) == "user.deregistered.v1"
    assert effective_routing_key("", "erasure.payment", {ORIGINAL_KEY_HEADER: b"user.deregistered.v1"}) == \
        "user.deregistered.v1"
    assert effective_routing_key("", "erasure.payment", {}) is None
    assert effective_routing_key(None, "erasure.payment", {ORIGINAL_KEY_HEADER: 5}) is None


# ---- A5: time bounds, subject, and no coercion -----------------------------------------------------------
def test_requested_at_in_the_year_2999_is_refused() -> None:
    out = _out()
    body = _edited(out, data__requested_at="2999-01-01T00:00:00Z")
    assert _kind(body, wire=_wire(out)) == "future_time"


def test_instants_within_the_clock_skew_are_accepted_and_the_bound_is_configurable() -> None:
    now = datetime.now(UTC)
    ahead = (now + timedelta(seconds=120)).isoformat()
    out = _out()
    for field in ("time", "data__requested_at"):
        body = _edited(out, **{field: ahead})
        assert _decode(body, now=now).event_id == out.event_id
        with pytest.raises(BadInput) as caught:
            _decode(body, now=now, skew=60)
        assert caught.value.kind == "future_time"
        assert _decode(body, now=now, skew=None).event_id == out.event_id, "None: the bound is not checked"


@pytest.mark.parametrize("model", ["purchase", "consent"])
def test_every_instant_of_the_data_is_bounded(model: str) -> None:
    data, field = {"purchase": (example_purchase("u-wire"), "purchased_at"),
                   "consent": (example_consent_change("u-wire"), "changed_at")}[model]
    out = _out(data)
    assert _kind(_edited(out, **{f"data__{field}": "2999-01-01T00:00:00Z"})) == "future_time"


def test_a_subject_other_than_the_user_id_is_refused() -> None:
    out = _out()
    assert _kind(_edited(out, subject="u-someone-else")) == "subject_mismatch"
    assert _decode(_edited(out, subject=...)).envelope.subject is None, "the subject is optional"


def test_an_oversize_subject_is_refused_by_the_schema() -> None:
    out = _out()
    assert _kind(_edited(out, subject="u" * 200 * 1024)) == "schema"
    assert _kind(_edited(out, subject="u" * 65)) == "schema"


@pytest.mark.parametrize(("changes", "why"), [
    ({"data__replay": "yes"}, "a string is not a boolean"),
    ({"data__replay": 1}, "a number is not a boolean"),
    ({"data__requested_at": 1767225600}, "a number is not an instant"),
    ({"data__requested_at": "1767225600"}, "a numeric string is not an instant"),
    ({"data__requested_at": "2026-03-02 09:15:00Z"}, "RFC 3339 needs the T"),
    ({"data__requested_at": "2026-03-02T09:15:00"}, "an instant needs its timezone"),
    ({"data__requested_at": "2026-02-30T09:15:00Z"}, "no such day"),
    ({"data__request_id": "6f1c2b9e3d4a4e5f8a7b9c0d1e2f3a4b"}, "a UUID without hyphens"),
    ({"data__request_id": 12345}, "a number is not a UUID"),
    ({"data__user_id": 1001}, "a number is not a user id"),
    ({"data__reason": ["user_request"]}, "a list is not an enum value"),
    ({"id": 7}, "a number is not an event id"),
    ({"time": 1767225600}, "a number is not the event time"),
    ({"data__extra": 1}, "unknown data field"),
    ({"extra": 1}, "unknown envelope attribute"),
])
def test_nothing_on_the_wire_is_coerced(changes: dict[str, Any], why: str) -> None:
    assert _kind(_edited(_out(), **changes)) == "schema", why


@pytest.mark.parametrize(("changes", "why"), [
    ({"data__lines": [{"sku": "A", "description": "d", "quantity": "1", "unit_price": "1.00", "vat_rate": "0.25"}]},
     "a string is not a quantity"),
    ({"data__lines": [{"sku": "A", "description": "d", "quantity": 1.0, "unit_price": "1.00", "vat_rate": "0.25"}]},
     "a float is not a quantity"),
    ({"data__total_excl_vat": 2490}, "a number is not money"),
    ({"data__total_excl_vat": "2490"}, "money has two decimals"),
    ({"data__newsletter_consent": "false"}, "a string is not a boolean"),
])
def test_nothing_in_a_purchase_is_coerced(changes: dict[str, Any], why: str) -> None:
    assert _kind(_edited(_out(example_purchase("u-wire")), **changes)) == "schema", why


def test_python_callers_still_build_events_from_parsed_values() -> None:
    event = UserDeregistered(user_id="u-1", request_id=uuid4(), reason="admin", requested_at=datetime.now(UTC))
    assert _decode(_out(event).body).data == event
