"""One consumer process of a drain: bare pika, our runtime, FastStream or Celery on one queue.

`python -m bench.worker KIND --queue Q --expect N [...]` sets everything up, prints `ready`, waits for a
line on stdin, consumes until N events are committed (acked, for bare pika), prints `result {json}`
with the wall-clock time of the first delivery handled and the last one committed, and exits.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import psutil

from bench import onerow
from shared.codec import decode
from shared.settings import RuntimeSettings


def _gate() -> float:
    """Announce readiness, block until the bench says go, and return the process CPU seconds so far."""
    print("ready", flush=True)
    sys.stdin.readline()
    return _cpu()


def _cpu() -> float:
    times = psutil.Process().cpu_times()
    return times.user + times.system


def _report(clock: onerow.Clock, cpu_at_go: float, last: float | None = None) -> None:
    result = {
        "first": clock.first, "last": last if last is not None else clock.last, "count": clock.count,
        "cpu_s": round(_cpu() - cpu_at_go, 3),
        "maxrss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    print("result " + json.dumps(result), flush=True)


def _when_all_committed(clock: onerow.Clock, expect: int, engine: Any, done: Callable[[float], None]) -> None:
    """Wait until the handlers have seen `expect` events, then until all are committed; call done(time)."""

    def watch() -> None:
        clock.reached.wait()
        while onerow.committed(engine) < expect:
            time.sleep(0.005)
        done(time.time())

    threading.Thread(target=watch, name="bench-watch", daemon=True).start()


def run_raw(args: argparse.Namespace, settings: RuntimeSettings) -> None:
    """Bare pika: decode (verify, validate) and ack each delivery."""
    import pika

    conn = pika.BlockingConnection(pika.URLParameters(settings.amqp_url))
    channel = conn.channel()
    channel.basic_qos(prefetch_count=args.prefetch)
    clock = onerow.Clock(args.expect)

    def on_message(ch: Any, method: Any, props: Any, body: bytes) -> None:
        decode(body, content_type=props.content_type, headers=props.headers, keyring=settings.keyring,
               max_bytes=settings.max_body_bytes, message_id=props.message_id)
        ch.basic_ack(method.delivery_tag)
        clock.tick()
        if clock.count >= args.expect:
            ch.stop_consuming()

    cpu = _gate()
    channel.basic_consume(args.queue, on_message)
    channel.start_consuming()
    _report(clock, cpu, time.time())
    conn.close()


def run_runtime(args: argparse.Namespace, settings: RuntimeSettings) -> None:
    """Our ServiceRunner with the one-row handler."""
    from shared.consumer import ServiceRunner
    from shared.db import ensure_schema

    clock = onerow.Clock(args.expect)
    name = args.queue.removeprefix(f"{settings.namespace}.")
    runner = ServiceRunner(onerow.service(name, clock, append=args.kind == "runtime-append"), settings, args.db)
    ensure_schema(runner.engine, onerow.metadata)
    cpu = _gate()

    def done(at: float) -> None:
        _report(clock, cpu, at)
        runner.stop()

    _when_all_committed(clock, args.expect, runner.engine, done)
    runner.run()


def run_faststream(args: argparse.Namespace, settings: RuntimeSettings) -> None:
    """A FastStream (aio-pika) subscriber, acking after the handler's transaction commits."""
    import asyncio

    from faststream import AckPolicy
    from faststream.rabbit import Channel, QueueType, RabbitBroker, RabbitMessage, RabbitQueue

    from shared.db import make_engine

    engine = make_engine(args.db)
    onerow.metadata.create_all(engine)
    clock = onerow.Clock(args.expect)
    broker = RabbitBroker(settings.amqp_url, logger=None)

    @broker.subscriber(RabbitQueue(args.queue, queue_type=QueueType.QUORUM, declare=False),
                       channel=Channel(prefetch_count=args.prefetch), ack_policy=AckPolicy.REJECT_ON_ERROR)
    async def handle(body: bytes, message: RabbitMessage) -> None:
        onerow.handle_in_one_transaction(engine, message.body, message.headers, settings.keyring,
                                         settings.max_body_bytes)
        clock.tick()

    async def main() -> None:
        cpu = _gate()
        await broker.start()
        while not clock.reached.is_set():
            await asyncio.sleep(0.01)
        last = clock.last
        await broker.stop()
        _report(clock, cpu, last)

    asyncio.run(main())


def run_celery(args: argparse.Namespace, settings: RuntimeSettings) -> None:
    """A Celery worker (solo pool, acks_late, quorum queue detection) running the one-row task."""
    from celery import Celery
    from kombu import Queue

    from bench.events import CELERY_TASK
    from shared.db import make_engine

    engine = make_engine(args.db)
    onerow.metadata.create_all(engine)
    clock = onerow.Clock(args.expect)
    app = Celery("bench", broker=settings.amqp_url.replace("amqp://", "pyamqp://", 1))
    app.conf.update(
        task_queues=[Queue(args.queue, queue_arguments={"x-queue-type": "quorum"}, no_declare=True)],
        task_acks_late=True, worker_detect_quorum_queues=True, worker_prefetch_multiplier=args.prefetch,
        worker_enable_remote_control=False, worker_send_task_events=False, task_ignore_result=True,
        worker_hijack_root_logger=False, worker_redirect_stdouts=False, broker_connection_retry_on_startup=True,
    )

    @app.task(name=CELERY_TASK, acks_late=True)
    def handle(body: str, signature: str) -> None:
        onerow.handle_in_one_transaction(engine, body.encode(), {"x-signature": signature}, settings.keyring,
                                         settings.max_body_bytes)
        clock.tick()

    worker = app.Worker(pool_cls="solo", concurrency=1, queues=[args.queue], loglevel="WARNING",
                        without_gossip=True, without_mingle=True, without_heartbeat=True, quiet=True)
    cpu = _gate()

    def watch() -> None:
        clock.reached.wait()
        _report(clock, cpu)

    threading.Thread(target=watch, daemon=True).start()
    worker.start()


KINDS: dict[str, Callable[[argparse.Namespace, RuntimeSettings], None]] = {
    "raw": run_raw, "runtime": run_runtime, "runtime-append": run_runtime, "faststream": run_faststream,
    "celery": run_celery,
}


def main(argv: list[str] | None = None) -> None:
    """Parse the arguments and run one worker."""
    from shared.logging import configure

    parser = argparse.ArgumentParser(prog="bench.worker")
    parser.add_argument("kind", choices=sorted(KINDS))
    parser.add_argument("--amqp-url", required=True)
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--queue", required=True)
    parser.add_argument("--expect", type=int, required=True)
    parser.add_argument("--db", default="")
    parser.add_argument("--prefetch", type=int, default=200)
    parser.add_argument("--batch", type=int, default=100)
    args = parser.parse_args(argv)
    configure("WARNING")
    settings = RuntimeSettings(amqp_url=args.amqp_url, namespace=args.namespace, retry_delays=(1.0,),
                               prefetch=args.prefetch, batch_size=args.batch)
    KINDS[args.kind](args, settings)


if __name__ == "__main__":
    main()
