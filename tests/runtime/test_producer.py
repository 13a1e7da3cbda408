"""The producer: confirms pipelined, unroutable and refused publishes raise."""

from __future__ import annotations

import pytest

from schemas.examples import example_deregistration
from shared.errors import PublishError
from shared.producer import Producer, RawMessage


def test_unroutable_publish_raises(erasure_pipeline) -> None:
    erasure_pipeline.declare()
    message = erasure_pipeline.encode(example_deregistration("u-1"))
    with Producer(erasure_pipeline.settings.amqp_url, exchange=f"{erasure_pipeline.namespace}.events") as p:
        with pytest.raises(PublishError, match="unroutable"):
            p.publish_raw([RawMessage(f"{erasure_pipeline.namespace}.events", "nobody.listens.v1",
                                      message.body, message.properties())])
        p.publish(message)  # the producer is still usable afterwards


def test_publish_to_a_missing_exchange_raises_and_recovers(erasure_pipeline) -> None:
    erasure_pipeline.declare()
    message = erasure_pipeline.encode(example_deregistration("u-2"))
    with Producer(erasure_pipeline.settings.amqp_url, exchange="no.such.exchange", timeout=5) as p:
        with pytest.raises(PublishError):
            p.publish(message)
        p.publish(message, exchange=f"{erasure_pipeline.namespace}.events")


def test_confirmed_publishing_is_pipelined(erasure_pipeline) -> None:
    """Many publishes are in flight at once rather than one confirm per round trip."""
    erasure_pipeline.declare()
    messages = [erasure_pipeline.encode(example_deregistration(f"u-{i}")) for i in range(3000)]
    with Producer(erasure_pipeline.settings.amqp_url, exchange=f"{erasure_pipeline.namespace}.events") as p:
        assert p.publish_many(messages) == 3000
        assert p.max_in_flight >= 500
    assert erasure_pipeline.depth(f"{erasure_pipeline.namespace}.ledger") == 3000
