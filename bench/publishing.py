"""Section 3: confirmed, signed publishing with Producer.publish_many against plain unconfirmed pika."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pika
from pika.spec import Basic

from bench import events as ev
from bench.drain import Drain
from shared.codec import Outbound
from shared.producer import Producer

SETTLE_S = 2.0


def _encode(drain: Drain, count: int) -> tuple[list[Outbound], float]:
    started = time.perf_counter()
    events = ev.deregistrations(drain.settings, count, prefix="pub")
    return events, time.perf_counter() - started


def _publish(drain: Drain, window: int, calls: Iterable[Iterable[Outbound]]) -> tuple[float, float, int]:
    """Publish call by call through one Producer; wall seconds, CPU seconds of this process, max in flight."""
    producer = Producer(drain.env.amqp_url, exchange=drain.exchange, window=window).start()
    try:
        cpu, started = time.process_time(), time.perf_counter()
        for messages in calls:
            producer.publish_many(messages)
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        in_flight = producer.max_in_flight
    finally:
        producer.close()
    drain.purge()
    return seconds, cpu, in_flight


def confirmed(drain: Drain, count: int, *, window: int, chunk: int | None = None) -> dict[str, Any]:
    """Confirmed publishing of `count` events through our Producer, in calls of `chunk`, two ways.

    Incl. encode: each call gets a generator that encodes and signs as the producer takes the events, so
    encoding overlaps with the broker confirming; timed from the first encode to the last confirm. Publish
    only: the same number of events signed beforehand (encode timed on its own), then published.
    """
    step = chunk or count
    settings = drain.settings

    def encoding(at: int) -> Iterator[Outbound]:
        for i in range(at, min(at + step, count)):
            yield ev.signed(settings, ev.deregistration(f"pub-{i}"))

    lazy_s, lazy_cpu, lazy_in_flight = _publish(drain, window, (encoding(at) for at in range(0, count, step)))
    time.sleep(SETTLE_S)  # let the purge settle before the second half
    events, encode_s = _encode(drain, count)
    publish_s, publish_cpu, in_flight = _publish(drain, window, (events[at:at + step] for at in range(0, count, step)))
    return {
        "window": window, "chunk": step, "events": count,
        "encode_us_per_event": round(1e6 * encode_s / count, 1),
        "publish_seconds": round(publish_s, 3),
        "events_per_s_publish_only": round(count / publish_s, 1),
        "cpu_us_per_event_publish_only": round(1e6 * publish_cpu / count, 1),
        "events_per_s_encode_first": round(count / (encode_s + publish_s), 1),
        "seconds_incl_encode": round(lazy_s, 3),
        "events_per_s": round(count / lazy_s, 1),
        "cpu_us_per_event": round(1e6 * lazy_cpu / count, 1),
        "max_in_flight": max(in_flight, lazy_in_flight),
    }


def unconfirmed(drain: Drain, count: int) -> dict[str, Any]:
    """Plain pika, no confirms, the same persistent pre-signed events to the same queues."""
    events, _ = _encode(drain, count)
    seconds = ev.publish_unconfirmed(drain.env.amqp_url, events, drain.exchange)
    started = time.perf_counter()
    landed = _wait_for_depth(drain, count * drain.queues, timeout=60)
    stored = seconds + time.perf_counter() - started
    drain.purge()
    # events_per_s: the client's rate (the usual figure); until_stored: until every copy sat in its queue.
    return {"events": count, "seconds": round(seconds, 3), "events_per_s": round(count / seconds, 1),
            "all_arrived": landed, "events_per_s_until_stored": round(count / stored, 1)}


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
        time.sleep(0.02)
    return False


def run(drain: Drain, count: int, windows: tuple[int, ...], rounds: int = 2) -> dict[str, Any]:
    """Every publisher `rounds` times, in alternating order with a pause between runs; the best run counts.

    A purge of quorum queues keeps the broker busy for a moment, which would otherwise always penalise
    whichever run comes next.
    """
    plans: list[tuple[str, Callable[[], dict[str, Any]]]] = [
        ("unconfirmed", lambda: unconfirmed(drain, count)),
        ("bare", lambda: bare_confirmed(drain, count)),
        *((f"w{w}", lambda w=w: confirmed(drain, count, window=w)) for w in windows),
        ("outbox-sized", lambda: confirmed(drain, count, window=2000, chunk=500)),
    ]
    attempts: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in plans}
    for round_no in range(rounds):
        for name, measure in plans if round_no % 2 == 0 else reversed(plans):
            attempts[name].append(measure())
            if rounds > 1:
                time.sleep(SETTLE_S)
    best = {name: max(runs, key=lambda r: r["events_per_s"]) for name, runs in attempts.items()}
    baseline = best["unconfirmed"]
    confirmed_runs = [best[name] for name, _ in plans if name not in ("unconfirmed", "bare")]
    default = best["w2000"] if "w2000" in best else confirmed_runs[0]
    return {
        "events": count, "fanout_queues": drain.queues, "rounds": rounds,
        "unconfirmed_pika": baseline,
        "bare_confirmed_pika": best["bare"],
        "runs": confirmed_runs,
        "all_attempts_events_per_s": {name: [r["events_per_s"] for r in runs] for name, runs in attempts.items()},
        "default": default,
        "best": max(confirmed_runs, key=lambda r: r["events_per_s"]),
        "events_per_s": default["events_per_s"],
        "ratio_to_unconfirmed": round(default["events_per_s"] / baseline["events_per_s"], 3),
        "ratio_publish_only": round(default["events_per_s_publish_only"] / baseline["events_per_s"], 3),
    }
