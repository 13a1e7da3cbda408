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
from typing import Any

import kombu
import pytest

from schemas.examples import example_deregistration
from shared.errors import PublishError
from shared.producer import Producer, RawMessage
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
