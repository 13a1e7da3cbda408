"""Events for the bench: signed UserDeregistered in bulk, as our codec, as Celery task messages, and published."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pika

from schemas import UserDeregistered
from shared.codec import Outbound, encode
from shared.producer import Producer, RawMessage
from shared.settings import RuntimeSettings

SOURCE = "urn:loggamera:bench"
CELERY_TASK = "bench.onerow"


def deregistration(user_id: str, request_id: uuid.UUID | None = None) -> UserDeregistered:
    """A user-requested erasure of `user_id`, requested now."""
    return UserDeregistered(user_id=user_id, request_id=request_id or uuid.uuid4(), reason="user_request",
                            requested_at=datetime.now(UTC))


def signed(settings: RuntimeSettings, data: Any) -> Outbound:
    """Sign an event as an upstream producer would."""
    return encode(data, source=SOURCE, keyring=settings.keyring, key_id=settings.signing_key_id)


def deregistrations(settings: RuntimeSettings, count: int, prefix: str = "u") -> list[Outbound]:
    """`count` signed UserDeregistered for users `<prefix>-0` …, each with its own event and request id."""
    return [signed(settings, deregistration(f"{prefix}-{i}")) for i in range(count)]


def celery_messages(events: Sequence[Outbound], exchange: str) -> list[RawMessage]:
    """The same events as Celery task messages (protocol 2, JSON): args = (body text, signature)."""
    messages = []
    for event in events:
        task_id = event.event_id
        headers = {
            "lang": "py", "task": CELERY_TASK, "id": task_id, "shadow": None, "eta": None, "expires": None,
            "group": None, "group_index": None, "retries": 0, "timelimit": [None, None], "root_id": task_id,
            "parent_id": None, "argsrepr": "(...)", "kwargsrepr": "{}", "origin": "bench", "ignore_result": True,
        }
        body = json.dumps([[event.body.decode(), event.signature], {},
                           {"callbacks": None, "errbacks": None, "chain": None, "chord": None}]).encode()
        properties = {"content_type": "application/json", "content_encoding": "utf-8", "delivery_mode": 2,
                      "correlation_id": task_id, "priority": 0, "headers": headers}
        messages.append(RawMessage(exchange, event.routing_key, body, properties))
    return messages


def raw(events: Sequence[Outbound], exchange: str) -> list[RawMessage]:
    """Our events as prepared messages for Producer.publish_raw to another exchange."""
    return [RawMessage(exchange, e.routing_key, e.body, e.properties()) for e in events]


def publish_confirmed(amqp_url: str, messages: Sequence[RawMessage], *, chunk: int = 5000) -> float:
    """Publish prepared messages with confirms (our Producer); return the seconds it took."""
    started = time.perf_counter()
    with Producer(amqp_url, exchange="") as producer:
        for at in range(0, len(messages), chunk):
            producer.publish_raw(messages[at:at + chunk])
    return time.perf_counter() - started


def publish_unconfirmed(amqp_url: str, events: Sequence[Outbound], exchange: str) -> float:
    """Plain pika publishing of the same persistent events without confirms; return the seconds it took."""
    conn = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        channel = conn.channel()
        started = time.perf_counter()
        for event in events:
            channel.basic_publish(exchange, event.routing_key, event.body,
                                  properties=pika.BasicProperties(**event.properties()))
        conn.process_data_events(0)
        return time.perf_counter() - started
    finally:
        conn.close()

