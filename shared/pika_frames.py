"""The one adapter onto pika's private surface: publishes written as ready AMQP frames, a socket write per burst.

pika's public `basic_publish` emits the method, header and body frames separately, and the transport sends each
with its own syscall; the method frame is also encoded afresh every time although it depends only on the
exchange and routing key. `FrameWriter` writes exactly the bytes `basic_publish` would, through what pika keeps
private: `Connection._adapter_emit_data` (hand bytes to the transport), `Connection._body_max_length` (the
negotiated frame size) and the public counters `bytes_sent` and `frames_sent`. `FrameWriter.usable` checks that
a connection has them; without them the producer falls back to `basic_publish`.
tests/runtime/test_pika_frames.py pins both: the bytes, and that the installed pika still offers what is used.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any, Protocol

from pika import frame as amqp_frame
from pika.compat import as_bytes
from pika.spec import FRAME_BODY, FRAME_END, FRAME_HEADER, Basic


class EncodedProperties(Protocol):
    """AMQP basic properties as a header frame takes them: pika's BasicProperties, or already encoded ones."""

    INDEX: int

    def encode(self) -> list[bytes]: ...


_END = bytes((FRAME_END,))


class FrameWriter:
    """Writes publishes as ready AMQP frames, one socket write per burst rather than three per message."""

    def __init__(self, conn: Any, channel_number: int) -> None:
        self._conn = conn
        self._emit: Callable[[bytes], None] = conn._adapter_emit_data
        self._max_body: int = conn._body_max_length
        self._channel_number = channel_number
        self._methods: dict[tuple[str, str], bytes] = {}
        self._header_start = struct.pack(">BH", FRAME_HEADER, channel_number)
        self._body_start = struct.pack(">BH", FRAME_BODY, channel_number)
        self._parts: list[bytes] = []
        self._frames = 0

    @classmethod
    def usable(cls, conn: Any) -> bool:
        """Whether this pika exposes what the writer needs; otherwise `basic_publish` is used."""
        return callable(getattr(conn, "_adapter_emit_data", None)) and isinstance(
            getattr(conn, "_body_max_length", None), int)

    def add(self, exchange: str, routing_key: str, body: bytes,
            properties: EncodedProperties) -> None:
        method = self._methods.get((exchange, routing_key))
        if method is None:
            if len(self._methods) >= 1024:
                self._methods.clear()
            method = amqp_frame.Method(self._channel_number, Basic.Publish(
                exchange=exchange, routing_key=routing_key, mandatory=True)).marshal()
            self._methods[(exchange, routing_key)] = method
        if type(body) is not bytes:
            body = as_bytes(body)
        size = len(body)
        header = b"".join(properties.encode())
        parts = self._parts
        parts += (method, self._header_start, struct.pack(">IHxxQ", len(header) + 12, properties.INDEX, size),
                  header, _END)
        limit = self._max_body
        fragments = (body,) if 0 < size <= limit else [body[at:at + limit] for at in range(0, size, limit)]
        for fragment in fragments:
            parts += (self._body_start, struct.pack(">I", len(fragment)), fragment, _END)
        self._frames += 2 + len(fragments)

    def flush(self) -> None:
        if not self._parts:
            return
        data = b"".join(self._parts)
        self._parts.clear()
        self._conn.bytes_sent += len(data)
        self._conn.frames_sent += self._frames
        self._frames = 0
        self._emit(data)
