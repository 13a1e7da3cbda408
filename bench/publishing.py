"""Section 3: confirmed, signed publishing with Producer.publish_many against plain unconfirmed pika."""

from __future__ import annotations

import time
from typing import Any

import pika
from pika.spec import Basic

from bench import events as ev
from bench.drain import Drain
from shared.codec import Outbound
from shared.producer import Producer


def _encode(drain: Drain, count: int) -> tuple[list[Outbound], float]:
    started = time.perf_counter()
    events = ev.deregistrations(drain.settings, count, prefix="pub")
    return events, time.perf_counter() - started


def confirmed(drain: Drain, count: int, *, window: int, chunk: int | None = None) -> dict[str, Any]:
    """Encode + sign `count` events, publish them with confirms through our Producer; events/s end to end."""
    events, encode_s = _encode(drain, count)
    producer = Producer(drain.env.amqp_url, exchange=drain.exchange, window=window).start()
    try:
        started = time.perf_counter()
        step = chunk or count
        for at in range(0, count, step):
            producer.publish_many(events[at:at + step])
        publish_s = time.perf_counter() - started
        in_flight = producer.max_in_flight
    finally:
        producer.close()
    drain.purge()
    return {
        "window": window, "chunk": step, "events": count,
        "encode_us_per_event": round(1e6 * encode_s / count, 1),
        "publish_seconds": round(publish_s, 3),
        "events_per_s_publish_only": round(count / publish_s, 1),
        "events_per_s": round(count / (encode_s + publish_s), 1),
        "max_in_flight": in_flight,
    }


def unconfirmed(drain: Drain, count: int) -> dict[str, Any]:
    """Plain pika, no confirms, the same persistent pre-signed events to the same queues."""
    events, _ = _encode(drain, count)
    seconds = ev.publish_unconfirmed(drain.env.amqp_url, events, drain.exchange)
    landed = _wait_for_depth(drain, count * drain.queues, timeout=60)
    drain.purge()
    return {"events": count, "seconds": round(seconds, 3), "events_per_s": round(count / seconds, 1),
            "all_arrived": landed}


def bare_confirmed(drain: Drain, count: int, *, window: int = 2000) -> dict[str, Any]:
    """The least a confirmed publisher can do: pika SelectConnection, `window` unconfirmed, pre-signed bodies."""
    events, _ = _encode(drain, count)
    state = {"sent": 0, "acked": 0, "nacked": 0, "started": 0.0, "finished": 0.0}
    params = pika.URLParameters(drain.env.amqp_url)

    def pump(channel: Any) -> None:
        while state["sent"] < count and state["sent"] - state["acked"] - state["nacked"] < window:
            event = events[state["sent"]]
            channel.basic_publish(drain.exchange, event.routing_key, event.body,
                                  properties=pika.BasicProperties(**event.properties()), mandatory=True)
            state["sent"] += 1

    def on_open(conn: pika.SelectConnection) -> None:
        conn.channel(on_open_callback=lambda ch: ch.confirm_delivery(
            ack_nack_callback=lambda frame: on_confirm(conn, ch, frame),
            callback=lambda _f: start(ch)))

    def start(channel: Any) -> None:
        state["started"] = time.perf_counter()
        pump(channel)

    def on_confirm(conn: pika.SelectConnection, channel: Any, frame: Any) -> None:
        method = frame.method
        settled = method.delivery_tag - state["acked"] - state["nacked"] if method.multiple else 1
        state["acked" if isinstance(method, Basic.Ack) else "nacked"] += settled
        if state["acked"] + state["nacked"] >= count:
            state["finished"] = time.perf_counter()
            conn.close()
            return
        pump(channel)

    conn = pika.SelectConnection(params, on_open_callback=on_open,
                                 on_close_callback=lambda c, _r: c.ioloop.stop())
    conn.ioloop.start()
    drain.purge()
    seconds = state["finished"] - state["started"]
    return {"window": window, "events": count, "seconds": round(seconds, 3),
            "events_per_s": round(count / seconds, 1) if seconds > 0 else 0.0, "nacked": state["nacked"]}


def _wait_for_depth(drain: Drain, expected: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if drain.depth() >= expected:
            return True
        time.sleep(0.1)
    return False


def run(drain: Drain, count: int, windows: tuple[int, ...]) -> dict[str, Any]:
    """The unconfirmed baseline, our Producer at each window (one call, and outbox-sized calls of 500)."""
    baseline = unconfirmed(drain, count)
    bare = bare_confirmed(drain, count)
    runs = [confirmed(drain, count, window=w) for w in windows]
    runs.append(confirmed(drain, count, window=2000, chunk=500))
    default = next(r for r in runs if r["window"] == 2000 and r["chunk"] == count) if 2000 in windows else runs[0]
    best = max(runs, key=lambda r: r["events_per_s"])
    return {
        "events": count, "fanout_queues": drain.queues,
        "unconfirmed_pika": baseline,
        "bare_confirmed_pika": bare,
        "runs": runs,
        "default": default,
        "best": best,
        "events_per_s": default["events_per_s"],
        "ratio_to_unconfirmed": round(default["events_per_s"] / baseline["events_per_s"], 3),
        "ratio_publish_only": round(default["events_per_s_publish_only"] / baseline["events_per_s"], 3),
    }
