"""On the real broker: an event whose routing key or AMQP type disagrees with its type executes nowhere."""

from __future__ import annotations

from typing import Any

import pika
import pytest

from schemas import PurchaseCompleted, UserDeregistered
from schemas.catalog import SUBSCRIPTIONS
from schemas.examples import example_deregistration
from shared.codec import Outbound
from shared.testing import wait_until
from tests.contract.conftest import Stack


def _publish(stack: Stack, out: Outbound, *, routing_key: str, **properties: Any) -> None:
    """Publish a correctly signed event with a chosen routing key and properties, as a confused producer."""
    props = {**out.properties(), **properties}
    conn = pika.BlockingConnection(pika.URLParameters(stack.pipeline.settings.amqp_url))
    try:
        channel = conn.channel()
        channel.confirm_delivery()
        channel.basic_publish(f"{stack.pipeline.namespace}.events", routing_key, out.body,
                              pika.BasicProperties(**props), mandatory=True)
    finally:
        conn.close()


def _dead_letters(stack: Stack, service: str) -> list[Any]:
    return stack.pipeline.take(f"{stack.pipeline.namespace}.{service}.dead")


def _subscribers(model: type) -> list[str]:
    return sorted(name for name, models in SUBSCRIPTIONS.items() if model in models)


@pytest.mark.slow
@pytest.mark.parametrize(("routing_key", "amqp_type", "kind", "hearing"), [
    ("purchase.completed.v1", None, "routing_key_mismatch", PurchaseCompleted),
    ("user.deregistered.v1", PurchaseCompleted.event_type, "type_mismatch", UserDeregistered),
], ids=["routing_key", "amqp_type"])
def test_a_deregistration_sent_as_a_purchase_is_dead_lettered_everywhere_and_executes_nowhere(
    stack: Stack, routing_key: str, amqp_type: str | None, kind: str, hearing: type
) -> None:
    out = stack.pipeline.encode(example_deregistration("u-misrouted"))
    _publish(stack, out, routing_key=routing_key, type=amqp_type)
    subscribers = _subscribers(hearing)
    assert len(subscribers) >= 4
    letters: dict[str, list[Any]] = {name: [] for name in subscribers}

    def every_subscriber_dead_lettered_it() -> bool:
        for name in subscribers:
            letters[name] += _dead_letters(stack, name)
        return all(letters.values())

    wait_until(every_subscriber_dead_lettered_it, timeout=30, what=f"{subscribers} to dead-letter the event")
    for name, [letter] in letters.items():
        assert letter.headers["x-error-kind"] == kind, name
        assert letter.body == out.body, "the dead letter keeps the exact bytes"
        assert out.event_id in letter.headers["x-error"]

    # A correct event published afterwards is handled by every subscriber of deregistrations; by then the
    # misrouted one would have been too, had it been executed anywhere.
    [good] = stack.pipeline.publish(example_deregistration("u-after-misrouted"))
    for name in _subscribers(UserDeregistered):
        stack.services[name].wait_handled(good.event_id)
    for name, running in stack.services.items():
        assert not running.handled(out.event_id), f"{name} executed the misrouted event"
    assert not [e for e in stack.sandbox.effects() if "u-misrouted" in str(e)], "no outside effect"
