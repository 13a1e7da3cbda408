"""Section 7, masking: `mask_text` and `erasure dlq show` on pathological bodies of 40 KiB, 256 KiB and 1 MiB."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pika

from bench.env import BenchEnv
from shared.logging import mask_text

SIZES = {"40 KiB": 40 << 10, "256 KiB": 256 << 10, "1 MiB": 1 << 20}
# The inputs on which a backtracking scan of the e-mail pattern was quadratic, and real addresses back to back.
PATTERNS = {"digits": "1", "letters": "a", "at signs": "@", "letter-at pairs": "a@", "dotted labels": "a.",
            "addresses": "anna.lindqvist+u-1001@example.com, "}
SHOW_TARGET_S = 1.0
SERVICE = "bench"


def _text(pattern: str, size: int) -> str:
    return (pattern * (size // len(pattern) + 1))[:size]


def _best_of(repeats: int, fn: Any) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def _dead_letter(env: BenchEnv, namespace: str, body: bytes) -> str:
    """Put one dead letter with this body in the namespace's `bench` dead-letter queue; return its id."""
    queue = f"{namespace}.{SERVICE}.dead"
    env.remember(queues=[queue])
    event_id = str(uuid.uuid4())
    conn = pika.BlockingConnection(pika.URLParameters(env.amqp_url))
    try:
        channel = conn.channel()
        channel.confirm_delivery()
        channel.queue_declare(queue, durable=True, arguments={"x-queue-type": "quorum"})
        channel.queue_purge(queue)
        channel.basic_publish("", queue, body, pika.BasicProperties(
            content_type="application/cloudevents+json", delivery_mode=2, message_id=event_id,
            headers={"x-error-kind": "oversized", "x-error": "body too large", "x-attempts": 1}))
    finally:
        conn.close()
    return event_id


def _show_seconds(env: BenchEnv, namespace: str, event_id: str) -> float:
    from click.testing import CliRunner

    from services.cli.main import cli

    environment = {"ERASURE_AMQP_URL": env.amqp_url, "ERASURE_NAMESPACE": namespace, "ERASURE_LOG_LEVEL": "WARNING"}
    started = time.perf_counter()
    result = CliRunner().invoke(cli, ["dlq", "show", event_id, "--service", SERVICE], env=environment)
    elapsed = time.perf_counter() - started
    if result.exit_code != 0:
        raise RuntimeError(f"erasure dlq show exited {result.exit_code}: {result.output[-300:]}")
    return elapsed


def masking(env: BenchEnv, repeats: int = 3) -> dict[str, Any]:
    """Milliseconds to mask each pattern at each size, and to show a dead letter of that size (with the broker)."""
    namespace = env.namespace("mask")
    out: dict[str, Any] = {"mask_text_ms": {}, "dlq_show_ms": {}, "show_target_ms": SHOW_TARGET_S * 1000}
    for label, size in SIZES.items():
        texts = {name: _text(pattern, size) for name, pattern in PATTERNS.items()}
        out["mask_text_ms"][label] = {name: round(_best_of(repeats, lambda t=text: mask_text(t)) * 1000, 1)
                                      for name, text in texts.items()}
        note = _text("0701740605 anna@example.com 1212121212 ", size - 200)
        body = json.dumps({"specversion": "1.0", "type": "se.loggamera.user.deregistered.v1",
                           "data": {"user_id": "u-1001", "note": note}}).encode()
        event_id = _dead_letter(env, namespace, body)
        out["dlq_show_ms"][label] = round(min(_show_seconds(env, namespace, event_id) for _ in range(repeats)) * 1000,
                                          1)
    out["worst_mask_text_ms_1mib"] = max(out["mask_text_ms"]["1 MiB"].values())
    return out
