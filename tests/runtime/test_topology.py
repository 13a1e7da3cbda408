"""The broker topology: names, arguments read back from the broker, and routing by event type."""

from __future__ import annotations

import json
import subprocess

import kombu
import pytest
from amqp.exceptions import PreconditionFailed

from schemas import SUBSCRIPTIONS
from schemas.examples import example_deregistration, example_purchase
from services.registry import SERVICES, load
from shared.consumer import full_topology
from shared.testing.infra import rabbitmqctl_argv
from shared.topology import Names, declare, delay_label


def test_delay_labels_are_short_and_stable() -> None:
    assert [delay_label(s) for s in (0.5, 1, 10, 60, 600, 3600, 90)] == [
        "500ms", "1s", "10s", "1m", "10m", "1h", "90s"]


def test_names_follow_the_design_card() -> None:
    names = Names("erasure")
    assert names.events_exchange == "erasure.events"
    assert names.dead_exchange == "erasure.dead"
    assert names.queue("payment") == "erasure.payment"
    assert names.retry_queue("payment", 60) == "erasure.payment.retry.1m"
    assert names.dead_queue("payment") == "erasure.payment.dead"


def _broker_queues(rabbitmqctl: list[str], namespace: str) -> dict[str, dict]:
    out = subprocess.run([*rabbitmqctl, "list_queues", "-q", "--formatter", "json", "name", "type", "arguments",
                          "durable"], capture_output=True, text=True, check=True, timeout=60).stdout
    queues = {q["name"]: q for q in json.loads(out) if q["name"].startswith(namespace + ".")}
    for q in queues.values():  # rabbitmqctl prints arguments as [key, type, value] triples
        q["arguments"] = {a[0]: a[-1] for a in q["arguments"]} if isinstance(q["arguments"], list) else q["arguments"]
    return queues


def test_declared_queues_carry_the_design_arguments(erasure_pipeline) -> None:
    rabbitmqctl = rabbitmqctl_argv(erasure_pipeline.settings.amqp_url)
    if rabbitmqctl is None:
        pytest.skip("reads queue arguments with rabbitmqctl: on this machine or in the broker's container")
    erasure_pipeline.declare()
    erasure_pipeline.declare()  # declaring twice is a no-op
    ns = erasure_pipeline.namespace
    queues = _broker_queues(rabbitmqctl, ns)
    expected = full_topology(erasure_pipeline.settings)
    assert {q.name for q in expected.queues} <= set(queues)
    for service in SUBSCRIPTIONS:
        main = queues[f"{ns}.{service}"]
        assert main["type"] == "quorum" and main["durable"] is True
        assert main["arguments"] == {
            "x-queue-type": "quorum", "x-delivery-limit": 5, "x-dead-letter-exchange": f"{ns}.dead",
            "x-dead-letter-routing-key": service, "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish"}
        dead = queues[f"{ns}.{service}.dead"]
        assert dead["arguments"]["x-message-ttl"] == 90 * 24 * 3600 * 1000
        retry = queues[f"{ns}.{service}.retry.200ms"]
        assert retry["arguments"]["x-message-ttl"] == 200
        assert retry["arguments"]["x-dead-letter-exchange"] == ""
        assert retry["arguments"]["x-dead-letter-routing-key"] == f"{ns}.{service}"


def test_redeclaring_with_other_arguments_is_refused(erasure_pipeline) -> None:
    """The broker, not our code, guards the contract: a queue cannot silently change its arguments."""
    erasure_pipeline.declare()
    with kombu.Connection(erasure_pipeline.settings.amqp_url) as conn, pytest.raises(PreconditionFailed):
        conn.channel().queue_declare(f"{erasure_pipeline.namespace}.payment", durable=True,
                                     arguments={"x-queue-type": "quorum", "x-delivery-limit": 99})


def test_event_reaches_exactly_the_queues_bound_to_its_type(erasure_pipeline) -> None:
    erasure_pipeline.declare()
    erasure_pipeline.publish(example_deregistration("u-route"), example_purchase("u-route"))
    ns = erasure_pipeline.namespace
    depths = {svc: erasure_pipeline.depth(f"{ns}.{svc}") for svc in SUBSCRIPTIONS}
    assert depths == {
        "account": 1, "ledger": 1,  # deregistration only
        "installer_sharing": 2, "payment": 2, "bookkeeping": 2, "newsletter": 2,  # both
    }


def test_topology_declare_is_idempotent_on_a_raw_channel(amqp_url: str, tmp_path) -> None:
    from shared.testing import Pipeline

    pipeline = Pipeline(amqp_url, workdir=tmp_path)  # production-shaped queues (default tiers and limits)
    try:
        topology = full_topology(pipeline.settings)
        with kombu.Connection(amqp_url) as conn:
            channel = conn.channel()
            declare(channel, topology)
            declare(channel, topology)
            for q in topology.queues:
                assert channel.queue_declare(q.name, passive=True).message_count == 0
    finally:
        pipeline.close()


def test_retry_tiers_are_read_in_the_documented_comma_form(monkeypatch) -> None:
    from shared.settings import RuntimeSettings

    monkeypatch.setenv("ERASURE_RETRY_DELAYS", "1,10,60")
    assert RuntimeSettings().retry_delays == (1.0, 10.0, 60.0)
    monkeypatch.setenv("ERASURE_RETRY_DELAYS", "[0.5, 2]")
    assert RuntimeSettings().retry_delays == (0.5, 2.0)


def test_the_catalogs_subscriptions_are_exactly_each_services_handlers() -> None:
    """SUBSCRIPTIONS binds the queues, HANDLERS decides what a service can handle: neither may drift.

    An event bound but not handled would be dead-lettered as unknown_type on every delivery; one handled but
    not bound would never arrive.
    """
    assert set(SUBSCRIPTIONS) == set(SERVICES)
    for name in SERVICES:
        handled = {model.event_type for model in load(name).handlers}
        bound = {model.event_type for model in SUBSCRIPTIONS[name]}
        assert handled == bound, f"{name}: handled, not bound {handled - bound}; bound, not handled {bound - handled}"
