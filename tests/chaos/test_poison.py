"""Poison sent to a real newsletter process while good traffic flows: each kind is dead-lettered once, with
its reason and its exact bytes, never retried; the process never falls over; every good event is handled."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from schemas import SEALED_FIELDS, NewsletterConsentChanged
from schemas.examples import example_consent_change
from shared.keys.jwe import is_compact_jwe
from shared.signing import sign
from tests.chaos.harness import poll, record_results
from tests.chaos.load import Upstream
from tests.chaos.stack import Stack

GOOD_EVENTS = 600
KEY = NewsletterConsentChanged.routing_key()  # bound to the newsletter queue only
TEN_MB = 10 * 1024 * 1024


def _valid(upstream: Upstream, user_id: str = "poison-ok") -> bytes:
    return upstream.encode(example_consent_change(user_id)).body


def _mutated(upstream: Upstream, **changes: Any) -> bytes:
    raw = json.loads(_valid(upstream))
    for path, value in changes.items():
        target = raw
        *parents, leaf = path.split("__")
        for part in parents:
            target = target[part]
        if value is None:
            del target[leaf]
        else:
            target[leaf] = value
    return json.dumps(raw).encode()


Case = Callable[[Upstream], tuple[bytes, dict[str, Any]]]
CASES: dict[str, tuple[Case, str]] = {
    "not_json": (lambda u: (b"{this is not json, ring 070-174 06 12", {}), "not_json"),
    "truncated": (lambda u: (_valid(u)[:57], {}), "not_json"),
    "ten_megabytes": (lambda u: (b'{"pad": "' + b"x" * TEN_MB + b'"}', {}), "oversized"),
    "wrong_content_type": (lambda u: (_valid(u), {"content_type": "application/json"}), "content_type"),
    "no_content_type": (lambda u: (_valid(u), {"content_type": None}), "content_type"),
    "schema_bad_value": (lambda u: (_mutated(u, data__consented="maybe"), {}), "schema"),
    "schema_missing_field": (lambda u: (_mutated(u, data__email=None), {}), "schema"),
    "schema_extra_attribute": (lambda u: (_mutated(u, sneaky="x"), {}), "schema"),
    "unknown_type": (lambda u: (_mutated(u, type="se.loggamera.newsletter.exploded.v1"), {}), "unknown_type"),
    "wrong_specversion": (lambda u: (_mutated(u, specversion="0.3"), {}), "schema"),
    "json_but_not_an_object": (lambda u: (b'["se.loggamera", 1, null]', {}), "schema"),
}


def _publish_case(stack: Stack, case: str, body: bytes, options: dict[str, Any]) -> None:
    try:
        message_id = json.loads(body)["id"]
    except (ValueError, KeyError, TypeError, RecursionError):
        message_id = str(uuid.uuid4())
    stack.upstream.publish_raw(
        body, routing_key=KEY, message_id=message_id,
        content_type=options.get("content_type", "application/cloudevents+json"),
        headers={"x-signature": sign(body, "chaos", stack.upstream.settings.keyring), "x-chaos-case": case})


@pytest.mark.chaos
@pytest.mark.timeout(300)
def test_every_kind_of_poison_is_dead_lettered_with_its_reason_while_good_traffic_flows(make_stack) -> None:
    stack: Stack = make_stack()
    newsletter = stack.fleet.children["newsletter"]
    pid = newsletter.process.pid if newsletter.process else None
    first = stack.upstream.encode(example_consent_change("poison-dup"))
    stack.upstream.publish_raw(first.body, routing_key=KEY, message_id=first.event_id,
                               headers={"x-signature": first.signature})
    conflicting = first.body.replace(b'"consented":true', b'"consented":false')
    assert conflicting != first.body
    bodies = {case: make(stack.upstream) for case, (make, _kind) in CASES.items()}
    good = [example_consent_change(f"poison-good-{i:04d}") for i in range(GOOD_EVENTS)]
    chunk = GOOD_EVENTS // (len(CASES) + 1)
    # Poison between chunks of good events, so both are in the queue together.
    for index, (case, (body, options)) in enumerate(bodies.items()):
        stack.upstream.publish(good[index * chunk:(index + 1) * chunk])
        _publish_case(stack, case, body, options)
    stack.upstream.publish_raw(conflicting, routing_key=KEY, message_id=first.event_id,
                               headers={"x-signature": sign(conflicting, "chaos", stack.upstream.settings.keyring),
                                        "x-chaos-case": "duplicate_id_other_body"})
    stack.upstream.publish(good[len(CASES) * chunk:])

    expected = {case: kind for case, (_make, kind) in CASES.items()} | {
        "duplicate_id_other_body": "conflicting_duplicate"}
    poll(lambda: stack.observer.inbox_counts()["newsletter"] >= GOOD_EVENTS + 1, timeout=120, interval=1,
         what="every good consent event to be handled")
    poll(lambda: int(stack.queues()[f"{stack.namespace}.newsletter.dead"]["messages"]) >= len(expected),
         timeout=60, interval=1, what=f"{len(expected)} dead letters")
    letters = stack.dead_letters("newsletter")
    by_case = {str(m.headers.get("x-chaos-case")): m for m in letters}
    kinds = {case: by_case[case].headers.get("x-error-kind") for case in by_case}
    subscribed = [e for e in stack.sandbox.control.effects("mailchimp") if e["effect"] == "member_subscribed"]
    record_results("poison", {
        "good_events_sent": GOOD_EVENTS + 1,
        "good_events_handled": stack.observer.inbox_counts()["newsletter"],
        "poison_sent": len(expected),
        "dead_lettered": len(letters),
        "kinds": kinds,
        "newsletter_restarts": 0 if newsletter.alive and newsletter.process and newsletter.process.pid == pid else 1,
    })
    assert len(letters) == len(expected), sorted(by_case)
    assert kinds == expected
    for case, message in by_case.items():
        sent = conflicting if case == "duplicate_id_other_body" else bodies[case][0]
        assert _kept_as_sent(message.body, sent), f"{case}: bytes changed beyond sealing the contact field"
        assert message.headers["x-attempts"] == 1, f"{case} was retried"
        assert message.headers["x-error"], f"{case} carries no reason"
    assert newsletter.alive and newsletter.process is not None and newsletter.process.pid == pid, \
        "the newsletter process fell over"
    assert len(subscribed) == GOOD_EVENTS + 1, "good traffic was lost or doubled"


def _kept_as_sent(parked: bytes, sent: bytes) -> bool:
    """A parked dead letter is the body as sent, byte for byte, except that a contact field sent in clear is
    sealed (dead letters we park keep personal data only encrypted)."""
    if hashlib.sha256(parked).digest() == hashlib.sha256(sent).digest():
        return True
    try:
        kept, original = json.loads(parked), json.loads(sent)
        field = SEALED_FIELDS[original["type"]]
        clear = original["data"][field]
    except (ValueError, KeyError, TypeError):
        return False
    sealed = kept.get("data", {}).pop(field, None)
    original["data"].pop(field)
    return is_compact_jwe(sealed) and kept == original and str(clear).encode() not in parked


def _beyond_utc(upstream: Upstream) -> bytes:
    raw = json.loads(_valid(upstream, "poison-time"))
    raw["time"] = "9999-12-31T23:59:59-01:00"  # a valid RFC 3339 instant that has no UTC representation
    return json.dumps(raw).encode()


PARSER_BREAKERS: dict[str, tuple[Callable[[Upstream], bytes], str]] = {
    "deeply_nested_json": (lambda u: b"[" * 5_000, "not_json"),
    "time_beyond_the_utc_range": (_beyond_utc, "schema"),
}


@pytest.mark.chaos
@pytest.mark.timeout(180)
def test_signed_messages_that_break_the_parser_are_dead_lettered_and_the_service_keeps_going(make_stack) -> None:
    """json.loads raises RecursionError on deep nesting and the UTC normalisation raises OverflowError: neither
    is BadInput, so today they escape the worker thread, which dies — the service then holds its deliveries
    for ever while /readyz still says ready."""
    stack: Stack = make_stack()
    for case, (make, _kind) in PARSER_BREAKERS.items():
        _publish_case(stack, case, make(stack.upstream), {})
    good = stack.upstream.publish(example_consent_change(f"after-breaker-{i}") for i in range(50))
    try:
        poll(lambda: stack.observer.inbox_counts()["newsletter"] >= len(good), timeout=20, interval=1,
             what="the good events published after the parser breakers")
    finally:
        handled = stack.observer.inbox_counts()["newsletter"]
        letters = stack.dead_letters("newsletter")
        record_results("parser_breakers", {"good_events_sent": len(good), "good_events_handled": handled,
                                           "dead_letters": {str(m.headers.get("x-chaos-case")):
                                                            m.headers.get("x-error-kind") for m in letters}})
        if handled < len(good):
            # A stalled worker never settles its batch, so SIGTERM would only wait out its grace period.
            stack.fleet.children["newsletter"].kill9()
    kinds = {str(m.headers.get("x-chaos-case")): m.headers.get("x-error-kind") for m in letters}
    assert kinds == {case: kind for case, (_make, kind) in PARSER_BREAKERS.items()}
