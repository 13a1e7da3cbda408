"""The publishing client (pika): signed events, publisher confirms, `mandatory`, many in flight at once.

One I/O thread owns the connection (pika is not thread-safe) and keeps heartbeats and reconnection going;
callers hand it whole batches and wait for every confirm, matched by delivery tag. An unroutable (returned)
or nacked publish, or a connection lost before the confirm, raises PublishError: never silence.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pika
from pika.spec import Basic

from shared.codec import Outbound
from shared.errors import PublishError
from shared.logging import get_logger

log = get_logger(__name__)


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


class _Job:
    def __init__(self, messages: list[RawMessage]) -> None:
        self.messages = messages
        self.next_index = 0
        self.settled = 0
        self.failures: list[str] = []
        self.done = threading.Event()


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
        self._params = pika.URLParameters(amqp_url)
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
        self._next_tag = 0
        self._inflight: dict[int, tuple[_Job, RawMessage]] = {}
        self._returned: dict[str, str] = {}
        self._job: _Job | None = None
        self._last_error = "not connected yet"
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

    def publish(self, message: Outbound, *, exchange: str | None = None) -> None:
        """Publish one event and wait for its confirm."""
        self.publish_many([message], exchange=exchange)

    def publish_many(self, messages: Iterable[Outbound], *, exchange: str | None = None) -> int:
        """Publish events with confirms pipelined; return how many were confirmed or raise PublishError."""
        target = self.exchange if exchange is None else exchange
        return self.publish_raw(
            RawMessage(target, m.routing_key, m.body, m.properties()) for m in messages
        )

    def publish_raw(self, messages: Iterable[RawMessage]) -> int:
        """Publish prepared messages with pipelined confirms; all confirmed, or PublishError."""
        job = _Job(list(messages))
        if not job.messages:
            return 0
        with self._callers:
            if not self._ready.wait(self._timeout):
                raise PublishError(f"broker not connected: {self._last_error}")
            conn = self._conn
            if conn is None:
                raise PublishError("producer is closed")
            conn.ioloop.add_callback_threadsafe(lambda: self._begin(job))
            deadline = self._timeout + len(job.messages) / 2000
            if not job.done.wait(deadline):
                raise PublishError(f"no confirm within {deadline:.0f}s for {len(job.messages)} messages")
        if job.failures:
            shown = "; ".join(job.failures[:5])
            raise PublishError(f"{len(job.failures)} of {len(job.messages)} publishes failed: {shown}")
        return len(job.messages)

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
        backoff = 0.2
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
            time.sleep(backoff)
            backoff = min(backoff * 2, 3.0)
            if self._ready.is_set():
                backoff = 0.2

    def _on_open(self, conn: pika.SelectConnection) -> None:
        conn.channel(on_open_callback=self._on_channel_open)

    def _on_open_error(self, conn: pika.SelectConnection, error: BaseException) -> None:
        self._last_error = repr(error)
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
        self._next_tag = 0
        channel.add_on_return_callback(self._on_return)
        channel.add_on_close_callback(self._on_channel_closed)
        channel.confirm_delivery(ack_nack_callback=self._on_confirm, callback=lambda _f: self._ready.set())

    def _on_channel_closed(self, _channel: Any, reason: BaseException) -> None:
        self._ready.clear()
        self._last_error = repr(reason)
        self._fail_inflight(f"channel closed by the broker ({reason})")
        conn = self._conn
        if conn is not None and conn.is_open and not conn.is_closing and not self._closing:
            conn.channel(on_open_callback=self._on_channel_open)

    def _fail_inflight(self, why: str) -> None:
        jobs = {id(job): job for job, _ in self._inflight.values()}
        if self._job is not None:
            jobs[id(self._job)] = self._job
        self._inflight.clear()
        self._returned.clear()
        self._job = None
        for job in jobs.values():
            job.failures.append(why)
            job.done.set()

    def _begin(self, job: _Job) -> None:
        if self._channel is None or not self._channel.is_open:
            job.failures.append("channel not open")
            job.done.set()
            return
        self._job = job
        self._pump(job)

    def _pump(self, job: _Job) -> None:
        channel = self._channel
        while job.next_index < len(job.messages) and len(self._inflight) < self._window:
            message = job.messages[job.next_index]
            job.next_index += 1
            channel.basic_publish(
                message.exchange,
                message.routing_key,
                message.body,
                properties=pika.BasicProperties(**message.properties),
                mandatory=True,
            )
            self._next_tag += 1
            self._inflight[self._next_tag] = (job, message)
        self.max_in_flight = max(self.max_in_flight, len(self._inflight))

    def _on_return(self, _channel: Any, method: Any, properties: Any, _body: bytes) -> None:
        key = properties.message_id or method.routing_key
        self._returned[key] = f"{method.reply_code} {method.reply_text}"

    def _on_confirm(self, frame: Any) -> None:
        method = frame.method
        acked = isinstance(method, Basic.Ack)
        tag = method.delivery_tag
        tags = [t for t in self._inflight if t <= tag] if method.multiple else [tag]
        touched: set[int] = set()
        for t in tags:
            entry = self._inflight.pop(t, None)
            if entry is None:
                continue
            job, message = entry
            returned = self._returned.pop(message.label, None)
            if not acked:
                job.failures.append(f"{message.label}: nacked by the broker")
            elif returned:
                job.failures.append(f"{message.label}: unroutable ({returned}) via "
                                    f"{message.exchange or '(default)'}/{message.routing_key}")
            job.settled += 1
            touched.add(id(job))
            if job.settled == len(job.messages):
                job.done.set()
                if self._job is job:
                    self._job = None
        if self._job is not None and id(self._job) in touched | {id(self._job)}:
            self._pump(self._job)
