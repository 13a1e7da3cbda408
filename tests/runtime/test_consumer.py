"""The consumer runtime on the real broker: exactly-once effects, retries, dead letters, shutdown."""

from __future__ import annotations

import itertools
import signal

import pytest
from sqlalchemy import func, select

from schemas.examples import example_deregistration
from shared.testing import wait_until
from tests.probe_service import Probe, effects, make_service


def _count(running, user_id: str | None = None) -> int:
    query = select(func.count()).select_from(effects)
    if user_id:
        query = query.where(effects.c.user_id == user_id)
    with running.engine.connect() as conn:
        return conn.execute(query).scalar_one()


def test_event_is_handled_and_acked(erasure_pipeline, db_backend) -> None:
    running = erasure_pipeline.start(make_service())
    [sent] = erasure_pipeline.publish(example_deregistration("ok-1"))
    running.wait_handled(sent.event_id)
    assert _count(running, "ok-1") == 1
    wait_until(lambda: erasure_pipeline.depth(f"{erasure_pipeline.namespace}.probe") == 0, what="queue empty")


def test_redelivered_event_has_no_second_effect(erasure_pipeline, db_backend) -> None:
    running = erasure_pipeline.start(make_service())
    message = erasure_pipeline.encode(example_deregistration("ok-dup"))
    for _ in range(3):
        erasure_pipeline.producer.publish(message)
    running.wait_handled(message.event_id)
    wait_until(lambda: erasure_pipeline.depth(f"{erasure_pipeline.namespace}.probe") == 0, what="all 3 settled")
    assert _count(running, "ok-dup") == 1


def test_transient_failure_backs_off_through_the_tiers_then_dead_letters(erasure_pipeline) -> None:
    probe = Probe()
    erasure_pipeline.start(make_service(probe=probe))
    [sent] = erasure_pipeline.publish(example_deregistration("transient-1"))
    dead_queue = f"{erasure_pipeline.namespace}.probe.dead"
    wait_until(lambda: erasure_pipeline.depth(dead_queue) == 1, timeout=30, what="dead letter")
    times = probe.attempts[sent.event_id]
    assert len(times) == 4  # first try + one per tier (0.2 s, 0.4 s, 0.8 s)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert gaps[0] >= 0.2 and gaps[1] >= 0.4 and gaps[2] >= 0.8
    assert gaps[0] < gaps[1] < gaps[2]
    [dead] = erasure_pipeline.take(dead_queue)
    assert dead.headers["x-attempts"] == 4
    assert dead.headers["x-error-kind"] == "retries_exhausted"
    assert "outside system unavailable" in dead.headers["x-error"]
    assert dead.headers["x-original-routing-key"] == "user.deregistered.v1"
    assert dead.properties["message_id"] == sent.event_id
    assert dead.body == sent.body


def test_flaky_handler_succeeds_on_retry_with_one_effect(erasure_pipeline) -> None:
    running = erasure_pipeline.start(make_service())
    [sent] = erasure_pipeline.publish(example_deregistration("flaky2-a"))
    running.wait_handled(sent.event_id, timeout=10)
    assert _count(running, "flaky2-a") == 1
    assert erasure_pipeline.depth(f"{erasure_pipeline.namespace}.probe.dead") == 0


def test_permanent_failure_is_dead_lettered_at_once(erasure_pipeline) -> None:
    probe = Probe()
    erasure_pipeline.start(make_service(probe=probe))
    [sent] = erasure_pipeline.publish(example_deregistration("permanent-1"))
    dead_queue = f"{erasure_pipeline.namespace}.probe.dead"
    wait_until(lambda: erasure_pipeline.depth(dead_queue) == 1, what="dead letter")
    assert len(probe.attempts[sent.event_id]) == 1
    [dead] = erasure_pipeline.take(dead_queue)
    assert dead.headers["x-error-kind"] == "permanent"
    assert dead.headers["x-attempts"] == 1
    assert sent.event_id in dead.headers["x-error"]
    assert "x-failed-at" in dead.headers


def test_good_and_bad_events_in_one_batch_are_settled_each_on_its_own(erasure_pipeline) -> None:
    erasure_pipeline.declare(make_service())
    users = [f"ok-b{i}" if i % 3 else f"permanent-b{i}" for i in range(30)]
    erasure_pipeline.publish(*(example_deregistration(u) for u in users))
    running = erasure_pipeline.start(make_service())
    ns = erasure_pipeline.namespace
    wait_until(lambda: erasure_pipeline.depth(f"{ns}.probe.dead") == 10, what="10 dead letters")
    wait_until(lambda: _count(running) == 20, what="20 effects")


@pytest.mark.slow
def test_crash_between_commit_and_ack_causes_no_second_effect(erasure_pipeline, spawn, tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'crash.db'}"
    ns = erasure_pipeline.namespace
    erasure_pipeline.declare(make_service())
    [sent] = erasure_pipeline.publish(example_deregistration("ok-crash"))
    child = spawn("tests.probe_service", ns, url, env={"ERASURE_FAILPOINTS": "after_commit"})
    assert child.wait(30) == 70, "the failpoint should have killed the process after its commit"
    assert erasure_pipeline.depth(f"{ns}.probe") == 1, "unacked: the broker still holds the event"
    child = spawn("tests.probe_service", ns, url)
    wait_until(lambda: erasure_pipeline.depth(f"{ns}.probe") == 0, what="redelivery acked")
    child.send_signal(signal.SIGTERM)
    assert child.wait(30) == 0
    from sqlalchemy import create_engine

    with create_engine(url).connect() as conn:
        assert conn.execute(select(func.count()).select_from(effects)
                            .where(effects.c.event_id == sent.event_id)).scalar_one() == 1


@pytest.mark.slow
def test_sigterm_finishes_in_flight_work_before_exit(erasure_pipeline, spawn, tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'drain.db'}"
    ns = erasure_pipeline.namespace
    erasure_pipeline.declare(make_service())
    erasure_pipeline.publish(*(example_deregistration(f"slow-{i}") for i in range(5)))
    child = spawn("tests.probe_service", ns, url)
    from sqlalchemy import create_engine

    engine = create_engine(url)

    def started() -> bool:
        try:
            with engine.connect() as conn:
                return conn.execute(select(func.count()).select_from(effects)).scalar_one() >= 1
        except Exception:
            return False

    wait_until(started, what="first slow event handled")
    child.send_signal(signal.SIGTERM)
    assert child.wait(30) == 0
    with engine.connect() as conn:
        handled = conn.execute(select(func.count()).select_from(effects)).scalar_one()
    # Whatever was taken was finished and acked; the rest is still on the queue. Nothing lost or doubled.
    assert handled + erasure_pipeline.depth(f"{ns}.probe") == 5


@pytest.mark.slow
def test_heartbeats_continue_while_a_handler_runs_long(amqp_url, tmp_path) -> None:
    """A handler busy for 4 s with 1 s heartbeats does not cost the connection (kombu #806)."""
    from shared.testing import Pipeline

    pipeline = Pipeline(amqp_url, workdir=tmp_path, heartbeat=1)
    try:
        running = pipeline.start(make_service())
        [sent] = pipeline.publish(example_deregistration("hold-1"))
        running.wait_handled(sent.event_id, timeout=15)
        wait_until(lambda: pipeline.depth(f"{pipeline.namespace}.probe") == 0, what="acked")
        assert running.runner._generation == 1, "the consumer had to reconnect: heartbeats were missed"
    finally:
        pipeline.close()
