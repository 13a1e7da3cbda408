"""The producer: confirms pipelined, unroutable and refused publishes raise."""

from __future__ import annotations

import io
import json
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import kombu
import pika
import pytest
from pika import frame as amqp_frame
from pika.spec import Basic

from schemas.examples import example_deregistration
from shared.codec import encode
from shared.errors import PublishError
from shared.producer import Producer, RawMessage, _FrameWriter, properties_for
from shared.testing import wait_until
from shared.testing.ports import free_port


def test_unroutable_publish_raises(erasure_pipeline) -> None:
    erasure_pipeline.declare()
    message = erasure_pipeline.encode(example_deregistration("u-1"))
    with Producer(erasure_pipeline.settings.amqp_url, exchange=f"{erasure_pipeline.namespace}.events") as p:
        with pytest.raises(PublishError, match="unroutable"):
            p.publish_raw([RawMessage(f"{erasure_pipeline.namespace}.events", "nobody.listens.v1",
                                      message.body, message.properties())])
        p.publish(message)  # the producer is still usable afterwards


def test_publish_to_a_missing_exchange_raises_and_recovers(erasure_pipeline) -> None:
    erasure_pipeline.declare()
    message = erasure_pipeline.encode(example_deregistration("u-2"))
    with Producer(erasure_pipeline.settings.amqp_url, exchange="no.such.exchange", timeout=5) as p:
        with pytest.raises(PublishError):
            p.publish(message)
        p.publish(message, exchange=f"{erasure_pipeline.namespace}.events")


def test_confirmed_publishing_is_pipelined(erasure_pipeline) -> None:
    """Many publishes are in flight at once rather than one confirm per round trip."""
    erasure_pipeline.declare()
    messages = [erasure_pipeline.encode(example_deregistration(f"u-{i}")) for i in range(3000)]
    with Producer(erasure_pipeline.settings.amqp_url, exchange=f"{erasure_pipeline.namespace}.events") as p:
        assert p.publish_many(messages) == 3000
        assert p.max_in_flight >= 500
    assert erasure_pipeline.depth(f"{erasure_pipeline.namespace}.ledger") == 3000


# --- lazily taken messages -----------------------------------------------------------------------------


@contextmanager
def scratch_queue(amqp_url: str, **arguments: Any) -> Iterator[str]:
    """A queue of this test's own on the default exchange, deleted afterwards."""
    name = f"test-producer-{uuid.uuid4().hex[:10]}"
    with kombu.Connection(amqp_url) as conn:
        conn.default_channel.queue_declare(name, durable=False, auto_delete=False, arguments=arguments or None)
    try:
        yield name
    finally:
        with kombu.Connection(amqp_url) as conn:
            conn.default_channel.queue_delete(name)


def depth(amqp_url: str, queue: str) -> int:
    with kombu.Connection(amqp_url) as conn:
        return conn.default_channel.queue_declare(queue, passive=True).message_count


def raw(queue: str, i: int, *, exchange: str = "") -> RawMessage:
    return RawMessage(exchange, queue, f"message {i}".encode(), {"delivery_mode": 2, "message_id": f"m-{i}"})


def test_a_generator_longer_than_the_window_is_taken_lazily(amqp_url: str) -> None:
    window, count = 50, 400
    taken: list[int] = []
    callers: set[int] = set()

    def messages() -> Iterator[RawMessage]:
        for i in range(count):
            callers.add(threading.get_ident())
            taken.append(i)
            yield raw(queue, i)

    with scratch_queue(amqp_url) as queue, Producer(amqp_url, exchange="", window=window) as p:
        assert p.publish_raw(messages()) == count
        assert p.max_in_flight <= window
        assert p.max_in_flight >= window // 2, "the window should fill up"
        wait_until(lambda: depth(amqp_url, queue) == count, what=f"{count} messages in the queue")
        assert taken == list(range(count))
        assert threading.get_ident() in callers and len(callers) == 2, "taken on the I/O thread after the first"


def test_publish_many_takes_a_generator_of_events(erasure_pipeline) -> None:
    erasure_pipeline.declare()
    with Producer(erasure_pipeline.settings.amqp_url, exchange=f"{erasure_pipeline.namespace}.events",
                  window=20) as p:
        assert p.publish_many(erasure_pipeline.encode(example_deregistration(f"g-{i}")) for i in range(70)) == 70
        assert p.max_in_flight <= 20
        assert p.publish_many(iter([])) == 0
    wait_until(lambda: erasure_pipeline.depth(f"{erasure_pipeline.namespace}.ledger") == 70, what="70 events")


def test_a_generator_that_raises_midway_reports_what_was_confirmed(amqp_url: str) -> None:
    window, good = 10, 35

    def messages() -> Iterator[RawMessage]:
        for i in range(good):
            yield raw(queue, i)
        raise ValueError("cannot encode the next one")

    with scratch_queue(amqp_url) as queue, Producer(amqp_url, exchange="", window=window, timeout=10) as p:
        started = time.monotonic()
        with pytest.raises(PublishError, match="could not be produced after 35") as failed:
            p.publish_raw(messages())
        assert time.monotonic() - started < 5, "the call must not wait for a timeout"
        assert isinstance(failed.value.__cause__, ValueError)
        assert failed.value.confirmed == tuple(range(good)), "everything sent before the error is confirmed"
        assert p.max_in_flight <= window
        assert p.publish_raw([raw(queue, 99)]) == 1, "the producer is still usable"
        wait_until(lambda: depth(amqp_url, queue) == good + 1, what="the confirmed messages and one more")


def test_a_generator_that_raises_at_once_sends_nothing(amqp_url: str) -> None:
    def messages() -> Iterator[RawMessage]:
        raise ValueError("nothing to give")
        yield  # pragma: no cover

    with Producer(amqp_url, exchange="") as p:
        with pytest.raises(PublishError, match="could not be produced") as failed:
            p.publish_raw(messages())
        assert failed.value.confirmed == ()


def test_an_unroutable_message_in_a_generator_raises_and_the_rest_are_reported(amqp_url: str) -> None:
    def messages() -> Iterator[RawMessage]:
        for i in range(30):
            yield raw("no-such-queue-anywhere" if i in (7, 19) else queue, i)

    with scratch_queue(amqp_url) as queue, Producer(amqp_url, exchange="", window=8) as p:
        with pytest.raises(PublishError, match=r"2 of 30 publishes not confirmed: m-7: unroutable.*m-19: unroutable"
                           ) as failed:
            p.publish_raw(messages())
        assert failed.value.confirmed == tuple(i for i in range(30) if i not in (7, 19))
        wait_until(lambda: depth(amqp_url, queue) == 28, what="the 28 routable messages")


def test_nacked_messages_raise_and_the_accepted_ones_are_reported(amqp_url: str) -> None:
    """A full queue that rejects publishes makes the broker nack them."""
    with scratch_queue(amqp_url, **{"x-max-length": 3, "x-overflow": "reject-publish"}) as queue, \
            Producer(amqp_url, exchange="", window=4) as p:
        with pytest.raises(PublishError, match="nacked by the broker") as failed:
            p.publish_raw(raw(queue, i) for i in range(10))
        assert failed.value.confirmed == (0, 1, 2)
        assert depth(amqp_url, queue) == 3


def test_a_channel_closed_midway_fails_the_rest_and_reports_only_confirmed_ones(amqp_url: str) -> None:
    """A publish to a missing exchange makes the broker close the channel; nothing after it is confirmed."""
    with scratch_queue(amqp_url) as queue, Producer(amqp_url, exchange="", window=5, timeout=10) as p:
        with pytest.raises(PublishError, match="channel closed by the broker") as failed:
            p.publish_raw(raw(queue, i, exchange="no.such.exchange" if i == 12 else "") for i in range(40))
        assert set(failed.value.confirmed) <= set(range(12))
        assert depth(amqp_url, queue) >= len(failed.value.confirmed)
        assert p.publish_raw([raw(queue, 99)]) == 1, "the producer reopened its channel"


def test_a_stalled_generator_times_out_and_is_not_taken_from_afterwards(amqp_url: str) -> None:
    taken: list[int] = []

    def messages() -> Iterator[RawMessage]:
        for i in range(20):
            if i == 5:
                time.sleep(2.5)  # on the I/O thread: nothing moves meanwhile
            taken.append(i)
            yield raw(queue, i)

    with scratch_queue(amqp_url) as queue, Producer(amqp_url, exchange="", timeout=1) as p:
        started = time.monotonic()
        with pytest.raises(PublishError, match="no confirm within 1s") as failed:
            p.publish_raw(messages())
        assert time.monotonic() - started < 2.4, "the caller stops waiting after `timeout` without progress"
        assert set(failed.value.confirmed) <= set(range(5))
        time.sleep(2)
        assert taken == [0, 1, 2, 3, 4, 5], "after the caller gave up, the source is left alone"
        wait_until(lambda: depth(amqp_url, queue) == 5, what="the five sent before the stall")
        assert p.publish_raw([raw(queue, 99)]) == 1


# --- the bytes on the wire -------------------------------------------------------------------------------


class _Connection:
    """What _FrameWriter needs of a pika connection, recording what it would send."""

    def __init__(self, max_body: int) -> None:
        self._body_max_length = max_body
        self.bytes_sent = self.frames_sent = 0
        self.written: list[bytes] = []

    def _adapter_emit_data(self, data: bytes) -> None:
        self.written.append(data)


def _event_properties() -> list[dict[str, Any]]:
    event = encode(example_deregistration("u-wire"), source="urn:loggamera:tëst", keyring={"k": b"s"}, key_id="k")
    with_headers = replace(event, headers={"x-attempts": 3, "x-flag": True, "x-text": "å", "x-nested": {"a": [1]}})
    return [event.properties(), with_headers.properties()]


@pytest.mark.parametrize("properties", [
    *_event_properties(),
    {**_event_properties()[0], "message_id": "m" * 256},  # too long for a short string: pika's way, pika's error
    {"delivery_mode": 2, "message_id": "m-1"},
    {"content_type": "application/json", "correlation_id": "c", "priority": 0, "headers": {"task": "t", "n": None}},
    {},
], ids=["event", "event-with-headers", "long-message-id", "raw", "celery-like", "none"])
def test_properties_are_encoded_as_pika_encodes_them(properties: dict[str, Any]) -> None:
    reference = pika.BasicProperties(**properties)
    prepared = properties_for(properties)
    assert prepared.message_id == reference.message_id
    try:
        expected = b"".join(reference.encode())
    except Exception as exc:
        with pytest.raises(type(exc)):
            prepared.encode()
        return
    assert b"".join(prepared.encode()) == expected
    assert amqp_frame.Header(1, 10, prepared).marshal() == amqp_frame.Header(1, 10, reference).marshal()


@pytest.mark.parametrize("size", [0, 1, 999, 1000, 1001, 2500])
def test_frames_are_the_bytes_basic_publish_would_write(size: int) -> None:
    conn = _Connection(max_body=1000)
    writer = _FrameWriter(conn, channel_number=3)
    body = bytes(range(256)) * (size // 256) + bytes(size % 256)
    messages = [("ex", "rk.a", body, properties_for(_event_properties()[0])),
                ("", "queue", body, pika.BasicProperties(delivery_mode=2))]
    for message in messages:
        writer.add(*message)
    writer.flush()
    expected = []
    for exchange, routing_key, payload, properties in messages:
        expected.append(amqp_frame.Method(3, Basic.Publish(exchange=exchange, routing_key=routing_key,
                                                           mandatory=True)).marshal())
        expected.append(amqp_frame.Header(3, len(payload), properties).marshal())
        expected += [amqp_frame.Body(3, payload[at:at + 1000]).marshal() for at in range(0, len(payload), 1000)]
    assert conn.written == [b"".join(expected)], "one write for the burst, byte for byte pika's frames"
    assert conn.frames_sent == len(expected) and conn.bytes_sent == len(conn.written[0])


def test_an_unreachable_broker_is_reported_once_per_reason_not_once_per_attempt() -> None:
    from shared.logging import PIKA_CONNECTION_LOGGERS, configure

    out = io.StringIO()
    configure("INFO", stream=out)
    producer = Producer(f"amqp://guest:guest@127.0.0.1:{free_port()}/%2F", exchange="x", timeout=2.5)
    with pytest.raises(PublishError, match="cannot reach the broker"):
        producer.start()
    producer.close()
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line["event"] for line in lines] == ["producer cannot connect; retrying"], lines
    assert "Connection refused" in lines[0]["error"]
    assert all(logging.getLogger(name).level == logging.CRITICAL for name in PIKA_CONNECTION_LOGGERS)
