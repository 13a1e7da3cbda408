"""Events emitted by handlers go through the transactional outbox: delivered even after a crash."""

from __future__ import annotations

import json
import signal

import pytest
from sqlalchemy import create_engine, func, select, update

from schemas import ErasureSliceReported
from schemas.examples import example_deregistration
from shared.db import make_engine, runtime_metadata, session_factory
from shared.errors import PublishError
from shared.outbox import OutboxRelay, stage_many
from shared.producer import Producer
from shared.testing import wait_until
from tests.probe_service import Act, Probe, make_service

SLICE_REPORTED = "se.loggamera.erasure.slice_reported.v1"


def _reports(pipeline) -> list[dict]:
    taken = pipeline.take(f"{pipeline.namespace}.ledger")
    return [json.loads(m.body) for m in taken if m.properties.get("type") == SLICE_REPORTED]


def test_handler_emitted_event_is_published_after_commit(erasure_pipeline, db_backend) -> None:
    running = erasure_pipeline.start(make_service(probe=Probe({"emit-1": Act(emit=True)})))
    [sent] = erasure_pipeline.publish(example_deregistration("emit-1"))
    running.wait_handled(sent.event_id)
    [report, *again] = erasure_pipeline.wait_events(ErasureSliceReported, where=lambda r: r.user_id == "emit-1")
    assert report.outcome == "erased" and report.request_id == example_deregistration("emit-1").request_id
    assert all(r == report for r in again), "a re-published report (at-least-once) is the same report"


def test_failed_handler_emits_nothing(erasure_pipeline) -> None:
    erasure_pipeline.start(make_service(probe=Probe({"permanent-emit": Act(fail="permanent", emit=True)})))
    erasure_pipeline.publish(example_deregistration("permanent-emit"))
    wait_until(lambda: erasure_pipeline.depth(f"{erasure_pipeline.namespace}.probe.dead") == 1, what="dead")
    assert _reports(erasure_pipeline) == []


@pytest.mark.slow
def test_emitted_event_is_delivered_when_the_process_dies_right_after_commit(erasure_pipeline, spawn,
                                                                             tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'outbox.db'}"
    ns = erasure_pipeline.namespace
    erasure_pipeline.declare(make_service())
    [sent] = erasure_pipeline.publish(example_deregistration("emit-crash"))
    child = spawn("tests.probe_service", ns, url, erasure_pipeline.settings.amqp_url,
                  env={"ERASURE_FAILPOINTS": "before_relay"})
    assert child.wait(30) == 70, "the failpoint should have killed the process before the relay published"
    with create_engine(url).connect() as conn:
        from tests.probe_service import metadata

        outbox = metadata.tables["outbox"]
        assert conn.execute(select(func.count()).select_from(outbox)).scalar_one() == 1
    erasure_pipeline.take(f"{ns}.ledger")  # drop the deregistration itself; only the report matters now
    child = spawn("tests.probe_service", ns, url, erasure_pipeline.settings.amqp_url)
    wait_until(lambda: erasure_pipeline.depth(f"{ns}.ledger") >= 1, what="the report after restart")
    child.send_signal(signal.SIGTERM)
    assert child.wait(30) == 0
    reports = _reports(erasure_pipeline)
    assert [r["data"]["user_id"] for r in reports] == ["emit-crash"]
    assert sent.event_id  # the original event was handled once: one report, not two


def test_relay_forgets_exactly_the_rows_the_broker_confirmed_when_a_publish_fails(erasure_pipeline,
                                                                                 tmp_path) -> None:
    """Two rows whose publish comes back unroutable stay in the outbox; the four confirmed ones are gone."""
    erasure_pipeline.declare()
    settings = erasure_pipeline.settings
    engine = make_engine(f"sqlite:///{tmp_path / 'relay.db'}")
    metadata = runtime_metadata()
    metadata.create_all(engine)
    outbox = metadata.tables["outbox"]
    with session_factory(engine)() as session, session.begin():
        staged = stage_many(session, outbox, [example_deregistration(f"relay-{i}") for i in range(6)],
                            source="urn:loggamera:test", keyring=settings.keyring, key_id=settings.signing_key_id)
    unroutable = {staged[1].event_id, staged[4].event_id}
    with engine.begin() as conn:
        conn.execute(update(outbox).where(outbox.c.event_id.in_(unroutable)).values(routing_key="nobody.listens.v1"))
    with Producer(settings.amqp_url, exchange=f"{erasure_pipeline.namespace}.events") as producer:
        relay = OutboxRelay(engine, outbox, producer)
        with pytest.raises(PublishError, match="unroutable"):
            relay.relay_once()
    with engine.connect() as conn:
        assert set(conn.execute(select(outbox.c.event_id)).scalars()) == unroutable
    assert relay.published == 4
    wait_until(lambda: erasure_pipeline.depth(f"{erasure_pipeline.namespace}.ledger") == 4, what="4 events")
