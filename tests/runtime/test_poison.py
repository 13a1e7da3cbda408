"""Every kind of bad input is dead-lettered with its reason, and good traffic keeps flowing."""

from __future__ import annotations

import json

import pika
import pytest

from schemas.examples import example_deregistration
from shared.signing import sign
from shared.testing import wait_until
from tests.probe_service import make_service

DEV_KEYRING = {"dev": b"insecure-development-key-change-me"}


def _raw_publish(pipeline, body: bytes, *, content_type: str = "application/cloudevents+json",
                 signature: str | None = "auto", message_id: str | None = None) -> None:
    headers = {}
    if signature == "auto":
        headers["x-signature"] = sign(body, "dev", pipeline.settings.keyring)
    elif signature is not None:
        headers["x-signature"] = signature
    conn = pika.BlockingConnection(pika.URLParameters(pipeline.settings.amqp_url))
    try:
        channel = conn.channel()
        channel.confirm_delivery()
        channel.basic_publish(f"{pipeline.namespace}.events", "user.deregistered.v1", body,
                              pika.BasicProperties(content_type=content_type, delivery_mode=2,
                                                   message_id=message_id, headers=headers), mandatory=True)
    finally:
        conn.close()


def _valid_body(pipeline, user_id: str = "ok-poison") -> bytes:
    return pipeline.encode(example_deregistration(user_id)).body


def _mutate(body: bytes, **changes) -> bytes:
    raw = json.loads(body)
    for path, value in changes.items():
        target = raw
        *parents, leaf = path.split("__")
        for p in parents:
            target = target[p]
        target[leaf] = value
    return json.dumps(raw).encode()


CASES = {
    "not_json": lambda p: (b"{not json", {}),
    "truncated": lambda p: (_valid_body(p)[:40], {}),
    "content_type": lambda p: (_valid_body(p), {"content_type": "application/json"}),
    "schema": lambda p: (_mutate(_valid_body(p), data__reason="because"), {}),
    "wrong_specversion": lambda p: (_mutate(_valid_body(p), specversion="0.3"), {}),
    "unknown_type": lambda p: (_mutate(_valid_body(p), type="se.loggamera.user.exploded.v1"), {}),
    "oversized": lambda p: (b"x" * (p.settings.max_body_bytes + 1), {}),
    "unsigned": lambda p: (_valid_body(p), {"signature": None}),
    "unknown_key": lambda p: (_valid_body(p), {"signature": "v1=stolen:" + "0" * 64}),
    "altered_body": lambda p: (_valid_body(p).replace(b"ok-poison", b"ok-poisoN"),
                               {"signature": sign(_valid_body(p), "dev", p.settings.keyring)}),
}
EXPECTED_KIND = {
    "not_json": "not_json", "truncated": "not_json", "content_type": "content_type", "schema": "schema",
    "wrong_specversion": "schema", "unknown_type": "unknown_type", "oversized": "oversized",
    "unsigned": "signature", "unknown_key": "signature", "altered_body": "signature",
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_poison_is_dead_lettered_with_its_reason_and_good_traffic_flows(erasure_pipeline, case) -> None:
    running = erasure_pipeline.start(make_service())
    body, options = CASES[case](erasure_pipeline)
    _raw_publish(erasure_pipeline, body, **options)
    [good] = erasure_pipeline.publish(example_deregistration("ok-after"))
    running.wait_handled(good.event_id)
    dead_queue = f"{erasure_pipeline.namespace}.probe.dead"
    wait_until(lambda: erasure_pipeline.depth(dead_queue) == 1, what=f"{case} dead letter")
    [dead] = erasure_pipeline.take(dead_queue)
    assert dead.headers["x-error-kind"] == EXPECTED_KIND[case]
    assert dead.headers["x-error"]
    assert dead.body == body, "the dead letter keeps the exact bytes, so nothing is lost"


def test_same_id_with_a_different_body_is_dead_lettered_as_a_conflict(erasure_pipeline) -> None:
    running = erasure_pipeline.start(make_service())
    first = erasure_pipeline.encode(example_deregistration("ok-conflict"))
    erasure_pipeline.producer.publish(first)
    running.wait_handled(first.event_id)
    body = _mutate(first.body, data__reason="admin")
    _raw_publish(erasure_pipeline, body, message_id=first.event_id)
    dead_queue = f"{erasure_pipeline.namespace}.probe.dead"
    wait_until(lambda: erasure_pipeline.depth(dead_queue) == 1, what="conflict dead letter")
    [dead] = erasure_pipeline.take(dead_queue)
    assert dead.headers["x-error-kind"] == "conflicting_duplicate"
