"""Scaling out: two replicas of a service share its queue and one PostgreSQL database, and every event still
has exactly one effect — also when each event is delivered twice and the copies land on different replicas."""

from __future__ import annotations

import uuid
from collections.abc import Mapping

import pytest
from sqlalchemy import func, select

from schemas import ErasureSliceReported
from schemas.examples import example_deregistration
from shared.testing import wait_until
from shared.testing.pipeline import Pipeline, RunningService
from tests.probe_service import Act, Probe, effects, make_service

EVENTS = 300


def _replicas(pipeline: Pipeline, url: str, acts: Mapping[str, Act]) -> list[tuple[RunningService, Probe]]:
    """Two runners of the probe service on one database, each doing `acts`; small prefetch so both get a share."""
    pipeline.declare(make_service("probe"))
    settings = pipeline.settings.model_copy(update={"prefetch": 20, "batch_size": 10})
    started = []
    for _ in range(2):
        probe = Probe(acts)
        started.append((RunningService(make_service("probe", probe), settings, url).start(), probe))
    return started


def _effects(running: RunningService) -> tuple[int, int]:
    with running.engine.connect() as conn:
        total = conn.execute(select(func.count()).select_from(effects)).scalar_one()
        distinct = conn.execute(select(func.count(func.distinct(effects.c.event_id)))).scalar_one()
    return int(total), int(distinct)


def _users(prefix: str) -> list[str]:
    return [f"{prefix}-{i}" for i in range(EVENTS)]


def _publish_twice(pipeline: Pipeline, prefix: str) -> list[str]:
    messages = [pipeline.encode(example_deregistration(user, request_id=str(uuid.uuid4())))
                for user in _users(prefix)]
    pipeline.producer.publish_many(messages)
    pipeline.producer.publish_many(messages)  # every event delivered twice: a redelivery, as the broker may
    return [m.event_id for m in messages]


@pytest.mark.postgres
@pytest.mark.parametrize("db_backend", ["postgresql"])
def test_two_replicas_on_one_database_have_one_effect_per_event(erasure_pipeline: Pipeline, db_backend: str) -> None:
    url = erasure_pipeline.database_url("probe")
    assert url.startswith("postgresql")
    replicas = _replicas(erasure_pipeline, url, {})  # the default act: one effect row each
    (first, first_probe), (_second, second_probe) = replicas
    try:
        _publish_twice(erasure_pipeline, "ok")
        wait_until(lambda: _effects(first) == (EVENTS, EVENTS), timeout=60, what=f"{EVENTS} effects")
        wait_until(lambda: erasure_pipeline.depth(f"{erasure_pipeline.namespace}.probe") == 0,
                   what="both copies of every event taken")
    finally:
        for running, _probe in replicas:
            running.stop()
    assert _effects(first) == (EVENTS, EVENTS)
    assert first_probe.attempts and second_probe.attempts, "both replicas consumed from the shared queue"
    assert erasure_pipeline.depth(f"{erasure_pipeline.namespace}.probe") == 0, "every delivery was acked"
    assert erasure_pipeline.depth(f"{erasure_pipeline.namespace}.probe.dead") == 0


@pytest.mark.postgres
@pytest.mark.parametrize("db_backend", ["postgresql"])
def test_two_replicas_emit_one_report_per_event_whichever_relays_it(
    erasure_pipeline: Pipeline, db_backend: str
) -> None:
    url = erasure_pipeline.database_url("probe")
    replicas = _replicas(erasure_pipeline, url, dict.fromkeys(_users("emit"), Act(emit=True)))
    first = replicas[0][0]
    ledger_queue = f"{erasure_pipeline.namespace}.ledger"
    reports: list[str] = []
    try:
        sent = _publish_twice(erasure_pipeline, "emit")
        wait_until(lambda: _effects(first) == (EVENTS, EVENTS), timeout=60, what=f"{EVENTS} effects")

        def reported() -> bool:
            reports.extend(m.properties["message_id"] for m in erasure_pipeline.take(ledger_queue)
                           if m.properties.get("type") == ErasureSliceReported.event_type)
            return len(set(reports)) >= EVENTS

        wait_until(reported, timeout=60, what=f"{EVENTS} slice reports relayed from the shared outbox")
    finally:
        for running, _probe in replicas:
            running.stop()
    assert len(set(reports)) == EVENTS == len(set(sent))
    outbox = first.runner.outbox
    with first.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(outbox)).scalar_one() == 0, "the outbox drained"
