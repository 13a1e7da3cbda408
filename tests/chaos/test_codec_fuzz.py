"""Property-based fuzzing of shared.codec.decode, the door every message comes through: whatever the bytes,
headers and content type, it returns a verified event or raises BadInput — never anything else — and it never
accepts a body that is unsigned or signed wrongly."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.examples import example_consent_change, example_deregistration, example_purchase
from shared.codec import CONTENT_TYPE, decode, encode
from shared.errors import BadInput
from shared.signing import sign
from tests.chaos.harness import record_results

KEYRING = {"current": b"fuzz-current-key", "previous": b"fuzz-previous-key"}
MAX_BYTES = 256 * 1024
SEEDS = [encode(event, source="urn:loggamera:fuzz", keyring=KEYRING, key_id="current").body
         for event in (example_deregistration("fuzz-1"), example_purchase("fuzz-2"), example_consent_change("fuzz-3"))]
FUZZ = settings(max_examples=1500, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
# What a signature header may be: missing, junk, well-formed with a wrong digest or unknown key.
FORGED_HEADERS = st.one_of(
    st.none(),
    st.text(max_size=80),
    st.binary(max_size=80),
    st.integers(),
    st.builds(lambda key, digest: f"v1={key}:{digest}", st.sampled_from(["current", "previous", "rogue", ""]),
              st.text(alphabet="0123456789abcdef", min_size=0, max_size=64)),
)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
DEEP_ARRAY = b"[" * 5_000  # deeper than the JSON decoder recurses
OUT_OF_RANGE_TIME = json.dumps({
    "specversion": "1.0", "id": "0b4f6a52-8d0e-4c4b-9a57-2f1c3e8d9a10", "source": "urn:x",
    "type": "se.loggamera.user.deregistered.v1", "time": "9999-12-31T23:59:59-01:00", "data": {},
}).encode()


DECODED: Counter[str] = Counter()


@pytest.fixture(scope="module", autouse=True)
def _count_bodies() -> Iterator[None]:
    """Record how many bodies went through decode, and how they came out."""
    yield
    record_results("codec_fuzz", {"bodies_decoded": sum(DECODED.values()), "outcomes": dict(DECODED)})


def _decode(body: bytes, header: Any, content_type: str | None = CONTENT_TYPE) -> Any:
    headers = {} if header is None else {"x-signature": header}
    return decode(body, content_type=content_type, headers=headers, keyring=KEYRING, max_bytes=MAX_BYTES)


def _signed(body: bytes, key_id: str = "current") -> str:
    return sign(body, key_id, KEYRING)


def _only_bad_input(body: bytes, header: Any, content_type: str | None = CONTENT_TYPE) -> Any:
    try:
        accepted = _decode(body, header, content_type)
    except BadInput as exc:
        refused = exc
    except Exception as exc:
        DECODED[type(exc).__name__] += 1
        raise
    else:
        DECODED["accepted"] += 1
        return accepted
    DECODED[f"BadInput({refused.kind})"] += 1
    assert refused.kind and str(refused), "a BadInput must say what kind of bad, and why"
    return refused


def _mutate(seed: bytes, data: st.DataObject) -> bytes:
    """A seed event with one part of its JSON replaced, dropped or added."""
    raw = json.loads(seed)
    target: Any = raw
    path = data.draw(st.lists(st.sampled_from(["data", "customer", "address", "payment", "paypal", "lines"]),
                              max_size=3))
    for key in path:
        if isinstance(target, dict) and isinstance(target.get(key), dict):
            target = target[key]
    if isinstance(target, dict) and target:
        key = data.draw(st.sampled_from(sorted(target)) | st.text(max_size=8))
        action = data.draw(st.sampled_from(["replace", "drop", "add"]))
        if action == "drop":
            target.pop(key, None)
        else:
            target[key] = data.draw(JSON_VALUES)
    return json.dumps(raw).encode()


@pytest.mark.chaos
@FUZZ
@given(body=st.binary(max_size=2048), header=FORGED_HEADERS,
       content_type=st.sampled_from([CONTENT_TYPE, "application/json", None, "", "application/cloudevents+json; x=1"]))
def test_arbitrary_bytes_with_a_forged_or_missing_signature_are_refused(body: bytes, header: Any,
                                                                         content_type: str | None) -> None:
    outcome = _only_bad_input(body, header, content_type)
    assert isinstance(outcome, BadInput), "an unsigned or wrongly signed body was accepted"


@pytest.mark.chaos
@FUZZ
@given(seed=st.sampled_from(SEEDS), data=st.data(), key=st.sampled_from(["current", "previous"]))
def test_validly_signed_events_altered_after_signing_are_refused_as_forgeries(seed: bytes, data: st.DataObject,
                                                                              key: str) -> None:
    altered = _mutate(seed, data)
    outcome = _only_bad_input(altered, _signed(seed, key))
    if altered != seed:
        assert isinstance(outcome, BadInput) and outcome.kind == "signature"


@pytest.mark.chaos
@FUZZ
@given(body=st.binary(max_size=4096), key=st.sampled_from(["current", "previous"]))
def test_signed_arbitrary_bytes_decode_or_raise_bad_input_only(body: bytes, key: str) -> None:
    _only_bad_input(body, _signed(body, key))


@pytest.mark.chaos
@FUZZ
@given(seed=st.sampled_from(SEEDS), data=st.data())
def test_signed_mutated_events_decode_or_raise_bad_input_only(seed: bytes, data: st.DataObject) -> None:
    body = _mutate(seed, data)
    outcome = _only_bad_input(body, _signed(body))
    if not isinstance(outcome, BadInput):
        assert outcome.body_sha256 == hashlib.sha256(body).hexdigest()


@pytest.mark.chaos
@FUZZ
@given(envelope=st.fixed_dictionaries(
    {"specversion": st.sampled_from(["1.0", "0.3", 1]), "id": st.uuids().map(str) | st.text(max_size=40),
     "source": st.text(max_size=20), "type": st.sampled_from([
         "se.loggamera.user.deregistered.v1", "se.loggamera.purchase.completed.v1", "se.loggamera.user.x.v9"]),
     "time": st.datetimes(timezones=st.timezones()).map(lambda t: t.isoformat()) | st.text(max_size=30),
     "data": st.dictionaries(st.sampled_from(["user_id", "request_id", "reason", "requested_at", "email"]),
                             JSON_VALUES, max_size=5)},
    optional={"subject": JSON_VALUES, "datacontenttype": st.text(max_size=20), "dataschema": JSON_VALUES}))
def test_signed_envelopes_of_any_shape_decode_or_raise_bad_input_only(envelope: dict[str, Any]) -> None:
    body = json.dumps(envelope).encode()
    _only_bad_input(body, _signed(body))


@pytest.mark.chaos
@settings(max_examples=300, deadline=None, database=None)
@given(seed=st.sampled_from(SEEDS), secret=st.binary(min_size=1, max_size=32))
def test_a_signature_made_with_any_other_secret_under_a_known_key_id_is_refused(seed: bytes, secret: bytes) -> None:
    if secret in KEYRING.values():
        return
    forged = "v1=current:" + hmac.new(secret, seed, hashlib.sha256).hexdigest()
    outcome = _only_bad_input(seed, forged)
    assert isinstance(outcome, BadInput) and outcome.kind == "signature"


@pytest.mark.chaos
@pytest.mark.parametrize("body", [DEEP_ARRAY, OUT_OF_RANGE_TIME], ids=["deeply_nested_json", "time_beyond_utc"])
def test_signed_bodies_that_break_the_parser_are_bad_input_not_a_crash(body: bytes) -> None:
    """Found by this suite: json.loads raises RecursionError, the UTC normalisation OverflowError."""
    outcome = _only_bad_input(body, _signed(body))
    assert isinstance(outcome, BadInput)
