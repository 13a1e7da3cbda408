"""The adapter onto pika's private surface (shared/pika_frames.py), pinned: the bytes, and what pika offers."""

from __future__ import annotations

import uuid
from dataclasses import replace
from typing import Any

import pika
import pytest
from pika import frame as amqp_frame
from pika.spec import Basic

from schemas.examples import example_deregistration
from shared.codec import encode
from shared.pika_frames import FrameWriter
from shared.producer import properties_for


class _Connection:
    """What FrameWriter needs of a pika connection, recording what it would send."""

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
    writer = FrameWriter(conn, channel_number=3)
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




def test_the_installed_pika_offers_what_the_writer_uses_and_the_broker_takes_its_frames(amqp_url: str) -> None:
    """If a pika release renames what FrameWriter reaches into, this fails (the producer would fall back)."""
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        impl = connection._impl  # the SelectConnection a BlockingConnection drives: what the producer uses
        assert isinstance(impl, pika.SelectConnection)
        assert FrameWriter.usable(impl)
        channel = connection.channel()
        queue = f"pika-frames-{uuid.uuid4().hex[:8]}"
        channel.queue_declare(queue, exclusive=True)
        properties = _event_properties()[1]
        body = b"x" * (impl._body_max_length + 10)  # two body frames
        writer = FrameWriter(impl, channel.channel_number)
        sent_before = impl.bytes_sent
        writer.add("", queue, body, properties_for(properties))
        writer.flush()
        assert impl.bytes_sent > sent_before + len(body)
        method, received, got = None, None, b""
        for _ in range(50):
            method, received, got = channel.basic_get(queue, auto_ack=True)
            if method is not None:
                break
            connection.sleep(0.05)
        assert method is not None, "the broker did not take the frames"
        assert got == body
        assert (received.message_id, received.type, received.headers) == (
            properties["message_id"], properties["type"], properties["headers"])
    finally:
        connection.close()
