"""The publishing client (pika): signed events, publisher confirms, `mandatory`, many in flight at once.

One I/O thread owns the connection (pika is not thread-safe) and keeps heartbeats and reconnection going.
A call hands it an iterable of messages; the I/O thread takes them from it lazily, a burst per turn of its
loop and never more than `window` unconfirmed, so a caller's generator encodes the next messages while the
broker confirms the previous ones. Every confirm is matched by delivery tag. An unroutable (returned) or
nacked publish, or a connection lost before the confirm, raises PublishError: never silence. The error
names which of the call's messages were confirmed, so a caller can mark exactly those as sent.
"""

from __future__ import annotations

import struct
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import chain
from typing import Any

import pika
from pika import data as amqp_data
from pika.spec import Basic, BasicProperties

from shared.backoff import Backoff
from shared.broker import failover_parameters
from shared.codec import Outbound
from shared.errors import PublishError
from shared.logging import get_logger
from shared.pika_frames import FrameWriter

log = get_logger(__name__)

# At most this many messages are taken and written per turn of the I/O loop; between turns the loop writes
# them to the socket and reads confirms. Bigger bursts delay the first bytes of a call and the confirms.
BURST = 100


class _EncodedProperties:
    """AMQP basic properties already encoded; pika's frame.Header takes them as it takes BasicProperties."""

    __slots__ = ("encoded", "message_id")
    INDEX = BasicProperties.INDEX

    def __init__(self, encoded: bytes, message_id: str) -> None:
        self.encoded = encoded
        self.message_id = message_id

    def encode(self) -> list[bytes]:
        return [self.encoded]


# The properties an event carries (shared.codec.Outbound.properties) and their flags, in AMQP's order.
_EVENT_PROPERTIES = frozenset(("content_type", "headers", "delivery_mode", "message_id", "timestamp", "type", "app_id"))
_EVENT_FLAGS = struct.pack(">H", BasicProperties.FLAG_CONTENT_TYPE | BasicProperties.FLAG_HEADERS
                           | BasicProperties.FLAG_DELIVERY_MODE | BasicProperties.FLAG_MESSAGE_ID
                           | BasicProperties.FLAG_TIMESTAMP | BasicProperties.FLAG_TYPE | BasicProperties.FLAG_APP_ID)
_short_strings: dict[str, bytes] = {}


def _short_string(value: str) -> bytes:
    encoded = value.encode()
    if len(encoded) > 255:
        raise ValueError("longer than an AMQP short string")
    return bytes((len(encoded),)) + encoded


def _repeated_short_string(value: str) -> bytes:
    """A short string that recurs (content type, event type, source), encoded once."""
    encoded = _short_strings.get(value)
    if encoded is None:
        if len(_short_strings) >= 1024:
            _short_strings.clear()
        encoded = _short_strings[value] = _short_string(value)
    return encoded


def properties_for(properties: dict[str, Any]) -> BasicProperties | _EncodedProperties:
    """AMQP basic properties from a dict, encoded as BasicProperties.encode() would encode them.

    An event's properties are encoded here directly, for less than half of what building and encoding a
    BasicProperties costs; any other set of properties, or a value that does not fit, goes through
    BasicProperties (whose encode() then raises what pika raises).
    """
    if properties.keys() == _EVENT_PROPERTIES:
        try:
            message_id = properties["message_id"]
            pieces = [_EVENT_FLAGS, _repeated_short_string(properties["content_type"])]
            amqp_data.encode_table(pieces, properties["headers"])
            pieces += (bytes((properties["delivery_mode"],)), _short_string(message_id),
                       struct.pack(">Q", properties["timestamp"]), _repeated_short_string(properties["type"]),
                       _repeated_short_string(properties["app_id"]))
            return _EncodedProperties(b"".join(pieces), message_id)
        except (AttributeError, TypeError, ValueError, struct.error):
            pass
    return BasicProperties(**properties)


# What the I/O thread sends: exchange, routing key, body and properties of one message.
Prepared = tuple[str, str, bytes, BasicProperties | _EncodedProperties]


@dataclass(frozen=True)
class RawMessage:
    """Anything to publish: where to, the exact bytes, and the AMQP properties."""

    exchange: str
    routing_key: str
    body: bytes
    properties: dict[str, Any]

    @property
    def label(self) -> str:
        return str(self.properties.get("message_id") or self.routing_key)


def _prepare_raw(message: RawMessage) -> Prepared:
    return message.exchange, message.routing_key, message.body, properties_for(message.properties)


class _Job:
    """One call: the source of its messages and what became of every message taken from it.

    Only the I/O thread touches a job once it has begun, apart from `abandoned`, which the caller sets when
    it stops waiting, and the final read of the outcome after `done`.
    """

    __slots__ = ("abandoned", "confirmed", "done", "error", "failures", "progress", "settled", "source", "taken")

    def __init__(self, source: Iterator[Prepared]) -> None:
        self.source: Iterator[Prepared] | None = source  # None once exhausted, failed or abandoned
        self.taken = 0  # messages taken from the source and written, in order: message i is position i
        self.settled = 0  # of those, how many the broker answered (or that are written off)
        self.confirmed: list[list[int]] = []  # [start, end) runs of positions acked and not returned
        self.failures: list[str] = []
        self.error: BaseException | None = None  # what the source raised
        self.abandoned: str | None = None
        self.progress = time.monotonic()  # last time a message was taken or confirmed
        self.done = threading.Event()

    @property
    def finished(self) -> bool:
        return self.source is None and self.settled >= self.taken

    def confirmed_positions(self) -> list[int]:
        return [position for start, end in list(self.confirmed) for position in range(start, end)]


class Producer:
    """Confirmed, mandatory publishing of whole batches with a window of unconfirmed messages."""

    def __init__(
        self,
        amqp_url: str,
        *,
        exchange: str,
        window: int = 2000,
        timeout: float = 30.0,
        heartbeat: int = 30,
        name: str = "erasure-producer",
        ssl_options: pika.SSLOptions | None = None,
    ) -> None:
        self._params = failover_parameters(amqp_url)  # a list of cluster nodes: advance() after each failure
        if ssl_options is not None:  # shared.tls.pika_ssl_options: the CA, client certificate and host to verify
            self._params.ssl_options = ssl_options
        self._params.heartbeat = heartbeat
        self._params.blocked_connection_timeout = 60
        # Bound every connection attempt: a handshake that hangs (a half-open link) must not stall recovery.
        self._params.socket_timeout = 5
        self._params.stack_timeout = 8
        self._params.client_properties = {"connection_name": name}
        self.exchange = exchange
        self._window = window
        self._timeout = timeout
        self._callers = threading.Lock()
        self._ready = threading.Event()
        self._closing = False
        self._thread: threading.Thread | None = None
        self._conn: pika.SelectConnection | None = None
        self._channel: Any = None
        self._writer: FrameWriter | None = None
        # Unconfirmed messages in delivery-tag order, from `_first_tag` on: (job, position, exchange, routing
        # key, message id), or None where a confirm arrived out of order.
        self._inflight: deque[tuple[_Job, int, str, str, str | None] | None] = deque()
        self._first_tag = 1
        self._returned: dict[str, str] = {}
        self._job: _Job | None = None
        self._pump_pending = False
        self._last_error = "not connected yet"
        self._backoff = Backoff()
        self.max_in_flight = 0

    # ---- caller side -------------------------------------------------------------------------------
    def start(self) -> Producer:
        """Connect in the background; raise PublishError if the broker is not reachable in time."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="producer-io", daemon=True)
            self._thread.start()
        if not self._ready.wait(self._timeout):
            raise PublishError(f"cannot reach the broker at {self._params.host}:{self._params.port}: "
                               f"{self._last_error}")
        return self

    @property
    def connected(self) -> bool:
        """Whether the connection is open and its channel in confirm mode (the broker answered Confirm.Select)."""
        return self._ready.is_set()

    def publish(self, message: Outbound, *, exchange: str | None = None) -> None:
        """Publish one event and wait for its confirm."""
        self.publish_many([message], exchange=exchange)

    def publish_many(self, messages: Iterable[Outbound], *, exchange: str | None = None) -> int:
        """Publish events with confirms pipelined; return how many were confirmed or raise PublishError.

        `messages` may be a generator: it is consumed lazily on the producer's I/O thread (see publish_raw).
        """
        target = self.exchange if exchange is None else exchange

        def prepare(m: Outbound) -> Prepared:
            return target, m.routing_key, m.body, properties_for(m.properties())

        return self._publish(map(prepare, messages))

    def publish_raw(self, messages: Iterable[RawMessage]) -> int:
        """Publish prepared messages with pipelined confirms; return how many, all confirmed, or PublishError.

        The messages are taken from the iterable as the window allows, on the producer's I/O thread (the
        first one on the caller's), so a generator must not depend on the calling thread (a thread-bound
        database connection, say) and should yield promptly. If it raises, what was already sent is still
        confirmed, and PublishError is raised from its exception; on any failure, `PublishError.confirmed`
        gives the positions of the messages that the broker accepted.
        """
        return self._publish(map(_prepare_raw, messages))

    def _publish(self, prepared: Iterator[Prepared]) -> int:
        try:
            first = next(prepared, None)
        except Exception as exc:
            raise PublishError(f"the messages to publish could not be produced: {exc!r}") from exc
        if first is None:
            return 0
        job = _Job(chain((first,), prepared))
        with self._callers:
            if not self._ready.wait(self._timeout):
                raise PublishError(f"broker not connected: {self._last_error}")
            conn = self._conn
            if conn is None:
                raise PublishError("producer is closed")
            conn.ioloop.add_callback_threadsafe(lambda: self._begin(job))
            while not job.done.wait(max(0.0, job.progress + self._timeout - time.monotonic())):
                if time.monotonic() - job.progress >= self._timeout:
                    job.abandoned = f"no confirm within {self._timeout:.0f}s"
                    break
        return self._outcome(job)

    @staticmethod
    def _outcome(job: _Job) -> int:
        confirmed = job.confirmed_positions()
        failures = list(job.failures)
        if job.abandoned is not None:
            failures.append(job.abandoned)
        error = job.error
        if error is not None and not isinstance(error, Exception):
            raise error
        if failures:
            shown = "; ".join(failures[:5])
            raise PublishError(f"{job.taken - len(confirmed)} of {job.taken} publishes not confirmed: {shown}",
                               confirmed=confirmed) from error
        if error is not None:
            raise PublishError(f"the messages to publish could not be produced after {job.taken} were sent "
                               f"(all confirmed): {error!r}", confirmed=confirmed) from error
        return job.taken

    def close(self) -> None:
        """Close the connection and stop the I/O thread."""
        self._closing = True
        conn = self._conn
        if conn is not None and conn.is_open:
            conn.ioloop.add_callback_threadsafe(conn.close)
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> Producer:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # ---- I/O thread --------------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._closing:
            try:
                self._conn = pika.SelectConnection(
                    self._params,
                    on_open_callback=self._on_open,
                    on_open_error_callback=self._on_open_error,
                    on_close_callback=self._on_closed,
                )
                self._conn.ioloop.start()
            except Exception as exc:  # the I/O thread must outlive any one connection's failure
                self._ready.clear()
                self._last_error = repr(exc)
                self._fail_inflight(f"connection failed ({exc!r})")
                log.warning("producer connection failed; reconnecting", error=repr(exc))
            if self._closing:
                break
            self._params.advance()
            time.sleep(self._backoff.next())

    def _on_open(self, conn: pika.SelectConnection) -> None:
        conn.channel(on_open_callback=self._on_channel_open)

    def _on_open_error(self, conn: pika.SelectConnection, error: BaseException) -> None:
        reason = repr(error)
        if reason != self._last_error:  # once per reason (a lost connection sets another), not once per attempt
            log.warning("producer cannot connect; retrying", error=reason)
        self._last_error = reason
        conn.ioloop.stop()

    def _on_closed(self, conn: pika.SelectConnection, reason: BaseException) -> None:
        self._ready.clear()
        self._last_error = repr(reason)
        self._fail_inflight(f"connection lost before confirm ({reason!r})")
        if not self._closing:
            log.warning("producer connection lost; reconnecting", reason=repr(reason))
        conn.ioloop.stop()

    def _on_channel_open(self, channel: Any) -> None:
        self._channel = channel
        self._inflight.clear()
        self._first_tag = 1
        self._pump_pending = False
        conn = self._conn
        self._writer = FrameWriter(conn, channel.channel_number) if FrameWriter.usable(conn) else None
        channel.add_on_return_callback(self._on_return)
        channel.add_on_close_callback(self._on_channel_closed)
        channel.confirm_delivery(ack_nack_callback=self._on_confirm, callback=self._on_confirm_mode)

    def _on_confirm_mode(self, _frame: Any) -> None:
        self._backoff.reset()
        self._ready.set()
        log.info("producer connected", connection=self._params.client_properties.get("connection_name"))

    def _on_channel_closed(self, _channel: Any, reason: BaseException) -> None:
        self._ready.clear()
        self._last_error = repr(reason)
        self._fail_inflight(f"channel closed by the broker ({reason})")
        conn = self._conn
        if conn is not None and conn.is_open and not conn.is_closing and not self._closing:
            conn.channel(on_open_callback=self._on_channel_open)

    def _fail_inflight(self, why: str) -> None:
        jobs = {id(entry[0]): entry[0] for entry in self._inflight if entry is not None}
        if self._job is not None:
            jobs[id(self._job)] = self._job
        self._inflight.clear()
        self._first_tag = 1
        self._returned.clear()
        self._job = None
        for job in jobs.values():
            job.failures.append(why)
            job.source = None
            job.done.set()

    def _begin(self, job: _Job) -> None:
        if self._channel is None or not self._channel.is_open:
            job.failures.append("channel not open")
            job.source = None
            job.done.set()
            return
        self._job = job  # a job still here was abandoned by its caller
        if not self._pump_pending:
            self._pump()

    def _resume(self) -> None:
        self._pump_pending = False
        self._pump()

    def _pump(self) -> None:
        """Take and write up to one burst of the current job's messages, as far as the window allows."""
        job = self._job
        if job is None:
            return
        source = job.source
        if source is not None and job.abandoned is not None:
            job.source = source = None
        if source is None:
            if job.finished:
                self._finish(job)
            return
        if not self._channel.is_open:  # closing: its close callback fails the job
            return
        inflight = self._inflight
        room = self._window - len(inflight)
        if room <= 0:
            return
        burst = min(room, BURST)
        writer = self._writer
        send = writer.add if writer is not None else self._basic_publish
        append = inflight.append
        position = job.taken
        try:
            for _ in range(burst):
                try:
                    exchange, routing_key, body, properties = next(source)
                except StopIteration:
                    job.source = None
                    break
                except BaseException as exc:  # the caller's generator: raised to the caller, not to pika
                    job.error = exc
                    job.source = None
                    break
                if job.abandoned is not None:  # the caller gave up while the source was producing this one
                    job.source = None
                    break
                try:
                    send(exchange, routing_key, body, properties)
                except Exception as exc:
                    job.failures.append(f"{properties.message_id or routing_key}: not sent ({exc!r})")
                    job.source = None
                    break
                append((job, position, exchange, routing_key, properties.message_id))
                position += 1
            else:
                if burst < room and not self._pump_pending:  # more room: go on after a turn of the loop
                    self._pump_pending = True
                    self._conn.ioloop.call_later(0, self._resume)
        finally:
            if writer is not None:
                writer.flush()
            if position != job.taken:
                job.taken = position
                job.progress = time.monotonic()
            self.max_in_flight = max(self.max_in_flight, len(inflight))
        if job.finished:
            self._finish(job)

    def _basic_publish(self, exchange: str, routing_key: str, body: bytes, properties: Any) -> None:
        self._channel.basic_publish(exchange, routing_key, body, properties=properties, mandatory=True)

    def _finish(self, job: _Job) -> None:
        job.done.set()
        if self._job is job:
            self._job = None

    def _on_return(self, _channel: Any, method: Any, properties: Any, _body: bytes) -> None:
        key = properties.message_id or method.routing_key
        self._returned[key] = f"{method.reply_code} {method.reply_text}"

    def _on_confirm(self, frame: Any) -> None:
        method = frame.method
        acked = isinstance(method, Basic.Ack)
        tag = method.delivery_tag
        inflight = self._inflight
        if method.multiple or tag == self._first_tag:
            count = min(tag - self._first_tag + 1, len(inflight))
            for _ in range(count):
                entry = inflight.popleft()
                if entry is not None:
                    self._settle(entry, acked)
            self._first_tag += max(count, 0)
        else:  # a single confirm ahead of older unconfirmed ones
            index = tag - self._first_tag
            if 0 < index < len(inflight) and (entry := inflight[index]) is not None:
                inflight[index] = None
                self._settle(entry, acked)
        while inflight and inflight[0] is None:
            inflight.popleft()
            self._first_tag += 1
        job = self._job
        if job is not None:
            job.progress = time.monotonic()
            if job.finished:
                self._finish(job)
            elif not self._pump_pending:
                self._pump()

    def _settle(self, entry: tuple[_Job, int, str, str, str | None], acked: bool) -> None:
        job, position, exchange, routing_key, message_id = entry
        returned = self._returned.pop(message_id or routing_key, None) if self._returned else None
        label = message_id or routing_key
        if not acked:
            job.failures.append(f"{label}: nacked by the broker")
        elif returned:
            job.failures.append(f"{label}: unroutable ({returned}) via {exchange or '(default)'}/{routing_key}")
        else:
            runs = job.confirmed
            if runs and runs[-1][1] == position:
                runs[-1][1] = position + 1
            else:
                runs.append([position, position + 1])
        job.settled += 1
