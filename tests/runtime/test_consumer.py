"""The consumer runtime on the real broker: exactly-once effects, retries, dead letters, shutdown."""

from __future__ import annotations

import itertools
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from hashlib import sha256
from typing import Any
from uuid import UUID

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import bindparam, event, false, func, insert, select
from sqlalchemy.exc import OperationalError

from schemas import UserDeregistered
from schemas.examples import example_deregistration
from shared.codec import CONTENT_TYPE, Outbound
from shared.consumer import ServiceRunner
from shared.runtime.delivery import Delivery
from shared.runtime.outcome import ACK
from shared.service import Service
from shared.testing import Pipeline, wait_until
from tests.probe_service import Act, Probe, effects, make_service


def _count(running, user_id: str | None = None) -> int:
    query = select(func.count()).select_from(effects)
    if user_id:
        query = query.where(effects.c.user_id == user_id)
    with running.engine.connect() as conn:
        return conn.execute(query).scalar_one()


def _declare_empty(pipeline: Pipeline, service: Service) -> None:
    """Declare the service's queues and empty them: in a pooled namespace they may hold other runs' events."""
    pipeline.declare(service)
    pipeline.purge()


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
    probe = Probe({"transient-1": Act(fail="transient")})
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
    running = erasure_pipeline.start(make_service(probe=Probe({"flaky2-a": Act(fail_first=2)})))
    [sent] = erasure_pipeline.publish(example_deregistration("flaky2-a"))
    running.wait_handled(sent.event_id, timeout=10)
    assert _count(running, "flaky2-a") == 1
    assert erasure_pipeline.depth(f"{erasure_pipeline.namespace}.probe.dead") == 0


def test_permanent_failure_is_dead_lettered_at_once(erasure_pipeline) -> None:
    probe = Probe({"permanent-1": Act(fail="permanent")})
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
    _declare_empty(erasure_pipeline, make_service())
    users = [f"ok-b{i}" if i % 3 else f"permanent-b{i}" for i in range(30)]
    erasure_pipeline.publish(*(example_deregistration(u) for u in users))
    running = erasure_pipeline.start(make_service(probe=Probe(dict.fromkeys(users[::3], Act(fail="permanent")))))
    ns = erasure_pipeline.namespace
    wait_until(lambda: erasure_pipeline.depth(f"{ns}.probe.dead") == 10, what="10 dead letters")
    wait_until(lambda: _count(running) == 20, what="20 effects")


@pytest.mark.slow
def test_crash_between_commit_and_ack_causes_no_second_effect(erasure_pipeline, spawn, tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'crash.db'}"
    ns = erasure_pipeline.namespace
    _declare_empty(erasure_pipeline, make_service())
    [sent] = erasure_pipeline.publish(example_deregistration("ok-crash"))
    child = spawn("tests.probe_service", ns, url, erasure_pipeline.settings.amqp_url,
                  env={"ERASURE_FAILPOINTS": "after_commit"})
    assert child.wait(30) == 70, "the failpoint should have killed the process after its commit"
    # Unacked, the broker still holds the event: it is ready again once the broker sees the connection gone.
    wait_until(lambda: erasure_pipeline.depth(f"{ns}.probe") == 1, what="the unacked event back on the queue")
    child = spawn("tests.probe_service", ns, url, erasure_pipeline.settings.amqp_url)
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
    _declare_empty(erasure_pipeline, make_service())
    erasure_pipeline.publish(*(example_deregistration(f"slow-{i}") for i in range(5)))
    child = spawn("tests.probe_service", ns, url, erasure_pipeline.settings.amqp_url)
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
        running = pipeline.start(make_service(probe=Probe({"hold-1": Act(sleep=4.0)})))
        [sent] = pipeline.publish(example_deregistration("hold-1"))
        running.wait_handled(sent.event_id, timeout=15)
        wait_until(lambda: pipeline.depth(f"{pipeline.namespace}.probe") == 0, what="acked")
        assert running.runner._generation == 1, "the consumer had to reconnect: heartbeats were missed"
    finally:
        pipeline.close()


# ---- the batch fast path (Service.database_only) -------------------------------------------------------
# A batch is whatever the consumer has buffered, so these tests hand batches to the worker's entry point
# directly (real database, no broker) to control what shares a transaction; the broker tests after them
# check that the outcomes are settled.


@dataclass
class _Message:
    """What the runtime reads of a kombu message."""

    body: bytes
    headers: dict[str, Any]
    properties: dict[str, Any]
    delivery_tag: int
    content_type: str = CONTENT_TYPE
    delivery_info: dict[str, Any] = field(default_factory=dict)


def _batch(*messages: Outbound) -> list[Delivery]:
    return [Delivery(_Message(m.body, m.properties()["headers"], {"message_id": m.event_id, "type": m.event_type},
                              delivery_tag=tag), generation=1)
            for tag, m in enumerate(messages, start=1)]


@pytest.fixture
def batch_runner(erasure_pipeline, db_backend) -> Iterator[Callable[..., ServiceRunner]]:
    """A ServiceRunner on a fresh database of the backend, not consuming: call its batch handling directly."""
    runners: list[ServiceRunner] = []

    def make(*, database_only: bool = True, probe: Probe | None = None) -> ServiceRunner:
        service = make_service(probe=probe or Probe(), database_only=database_only)
        runner = ServiceRunner(service, erasure_pipeline.settings, erasure_pipeline.database_url(service.name))
        runner._wait_for_database()
        runner.pipeline.deps = service.build_deps(runner.engine)
        runners.append(runner)
        return runner

    yield make
    for runner in runners:
        runner.engine.dispose()


def _effects(runner: ServiceRunner) -> dict[str, int]:
    query = select(effects.c.user_id, func.count()).group_by(effects.c.user_id)
    with runner.engine.connect() as conn:
        return dict(conn.execute(query).all())


def _inbox_size(runner: ServiceRunner) -> int:
    with runner.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(runner.inbox)).scalar_one()


def _duplicates_counted() -> float:
    return REGISTRY.get_sample_value("erasure_inbox_duplicates_total", {"service": "probe"}) or 0.0


def test_fast_path_acks_a_duplicate_within_the_batch_without_a_second_effect(erasure_pipeline, batch_runner) -> None:
    probe = Probe()
    runner = batch_runner(probe=probe)
    a, b = (erasure_pipeline.encode(example_deregistration(u)) for u in ("ok-fa", "ok-fb"))
    before = _duplicates_counted()
    assert runner.pipeline.run_once(_batch(a, a, b, a)) == [ACK] * 4
    assert _effects(runner) == {"ok-fa": 1, "ok-fb": 1}
    assert len(probe.attempts[a.event_id]) == 1
    assert _duplicates_counted() - before == 2
    # A later batch finds it in the inbox.
    assert runner.pipeline.run_once(_batch(b)) == [ACK]
    assert _effects(runner) == {"ok-fa": 1, "ok-fb": 1}
    assert len(probe.attempts[b.event_id]) == 1
    assert _duplicates_counted() - before == 3


def test_fast_path_dead_letters_a_conflicting_duplicate_within_the_batch(erasure_pipeline, batch_runner) -> None:
    runner = batch_runner()
    first = erasure_pipeline.encode(example_deregistration("ok-fc"))
    other = erasure_pipeline.encode(example_deregistration("ok-fc", reason="admin"), event_id=UUID(first.event_id))
    assert other.body != first.body
    last = erasure_pipeline.encode(example_deregistration("ok-fd"))
    ack, conflict, ack_last = runner.pipeline.run_once(_batch(first, other, last))
    assert (ack, ack_last) == (ACK, ACK)
    assert (conflict.action, conflict.kind) == ("dead", "conflicting_duplicate")
    assert first.event_id in conflict.error
    assert _effects(runner) == {"ok-fc": 1, "ok-fd": 1}


@pytest.mark.parametrize("failing", ["transient", "permanent"])
def test_fast_path_failure_mid_batch_costs_only_the_failing_delivery(erasure_pipeline, batch_runner, failing) -> None:
    probe = Probe({f"{failing}-fe2": Act(fail=failing)})
    runner = batch_runner(probe=probe)
    users = ["ok-fe0", "ok-fe1", f"{failing}-fe2", "ok-fe3"]
    sent = [erasure_pipeline.encode(example_deregistration(u)) for u in users]
    outcomes = runner.pipeline.run_once(_batch(*sent))
    assert outcomes[:2] == [ACK, ACK] and outcomes[3] == ACK
    expected = ("retry", "transient") if failing == "transient" else ("dead", "permanent")
    assert (outcomes[2].action, outcomes[2].kind) == expected
    assert _effects(runner) == {"ok-fe0": 1, "ok-fe1": 1, "ok-fe3": 1}, "each committed exactly once"
    assert _inbox_size(runner) == 3, "the failed delivery is not in the inbox: its retry will be handled"
    # The batch ran once without savepoints (stopping at the failure), then once with a savepoint each.
    assert [len(probe.attempts[m.event_id]) for m in sent] == [2, 2, 2, 1]


def test_without_database_only_a_failure_re_runs_no_other_handler(erasure_pipeline, batch_runner) -> None:
    probe = Probe({"transient-fg2": Act(fail="transient")})
    runner = batch_runner(probe=probe, database_only=False)
    users = ["ok-fg0", "ok-fg1", "transient-fg2", "ok-fg3"]
    sent = [erasure_pipeline.encode(example_deregistration(u)) for u in users]
    outcomes = runner.pipeline.run_once(_batch(*sent))
    assert [o.action for o in outcomes] == ["ack", "ack", "retry", "ack"]
    assert _effects(runner) == {"ok-fg0": 1, "ok-fg1": 1, "ok-fg3": 1}
    assert [len(probe.attempts[m.event_id]) for m in sent] == [1, 1, 1, 1]


def test_fast_path_writes_the_appended_rows_of_the_batch_together(erasure_pipeline, batch_runner) -> None:
    probe = Probe(dict.fromkeys(["append-fa0", "append-fa2", "append-fa3"], Act(append=True)))
    runner = batch_runner(probe=probe)
    users = ["append-fa0", "ok-fa1", "append-fa2", "append-fa3"]
    sent = [erasure_pipeline.encode(example_deregistration(u)) for u in users]
    statements: list[str] = []
    event.listen(runner.engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    assert runner.pipeline.run_once(_batch(*sent)) == [ACK] * 4
    assert _effects(runner) == dict.fromkeys(users, 1)
    assert [len(probe.attempts[m.event_id]) for m in sent] == [1, 1, 1, 1], "no re-run"
    effect_inserts = [sql for sql in statements if sql.startswith("INSERT INTO effects")]
    assert len(effect_inserts) == 2, "the handler's own INSERT, then one executemany for the three appended rows"


@pytest.mark.parametrize("database_only", [True, False])
def test_an_appended_row_that_fails_costs_only_its_delivery(erasure_pipeline, batch_runner, database_only) -> None:
    probe = Probe({"append-fb0": Act(append=True), "appendbad-fb1": Act(append=True, append_invalid=True),
                   "append-fb2": Act(append=True)})
    runner = batch_runner(probe=probe, database_only=database_only)
    users = ["append-fb0", "appendbad-fb1", "append-fb2"]
    sent = [erasure_pipeline.encode(example_deregistration(u)) for u in users]
    outcomes = runner.pipeline.run_once(_batch(*sent))
    assert outcomes[0] == outcomes[2] == ACK
    assert (outcomes[1].action, outcomes[1].kind) == ("retry", "error")
    assert "IntegrityError" in outcomes[1].error
    assert _effects(runner) == {"append-fb0": 1, "append-fb2": 1}
    assert _inbox_size(runner) == 2
    # Fast path: every handler ran, the batch's insert failed, then each ran again under its savepoint.
    assert [len(probe.attempts[m.event_id]) for m in sent] == ([2, 2, 2] if database_only else [1, 1, 1])


def test_fast_path_settles_undecodable_deliveries_without_leaving_it(erasure_pipeline, batch_runner) -> None:
    probe = Probe()
    runner = batch_runner(probe=probe)
    good = [erasure_pipeline.encode(example_deregistration(u)) for u in ("ok-fh0", "ok-fh1")]
    forged = replace(erasure_pipeline.encode(example_deregistration("ok-fh-forged")), signature="v1=dev:" + "0" * 64)
    outcomes = runner.pipeline.run_once(_batch(good[0], forged, good[1]))
    assert outcomes[0] == outcomes[2] == ACK
    assert (outcomes[1].action, outcomes[1].kind) == ("dead", "signature")
    assert [len(probe.attempts[m.event_id]) for m in good] == [1, 1], "no re-run for a delivery not handled"


def test_fast_path_runs_again_when_a_replica_committed_an_inbox_row_first(erasure_pipeline, batch_runner) -> None:
    probe = Probe()
    runner = batch_runner(probe=probe)
    sent = [erasure_pipeline.encode(example_deregistration(u)) for u in ("ok-fi0", "ok-fi1", "ok-fi2")]
    with runner.engine.begin() as conn:  # the replica's commit, which this runner's inbox read does not see
        conn.execute(insert(runner.inbox).values(event_id=sent[1].event_id, event_type=sent[1].event_type,
                                                 body_sha256=sha256(sent[1].body).hexdigest(),
                                                 handled_at=datetime.now(UTC)))
    inbox = runner.inbox.c
    runner.pipeline.inbox._seen = select(inbox.event_id, inbox.body_sha256).where(
        inbox.event_id.in_(bindparam("ids", expanding=True)), false())
    assert runner.pipeline.run_once(_batch(*sent)) == [ACK] * 3
    assert _effects(runner) == {"ok-fi0": 1, "ok-fi2": 1}
    assert len(probe.attempts[sent[1].event_id]) == 0


def test_fast_path_leaves_a_database_outage_to_the_hold_and_retry_loop(erasure_pipeline, batch_runner) -> None:
    runner = batch_runner()

    def unavailable(_event: Any, _ctx: Any) -> None:
        raise OperationalError("INSERT INTO effects", {}, ConnectionError("server closed the connection"))

    runner.pipeline.service = replace(runner.pipeline.service, handlers={UserDeregistered: unavailable})
    [sent] = [erasure_pipeline.encode(example_deregistration("ok-fj"))]
    with pytest.raises(OperationalError):
        runner.pipeline.run_once(_batch(sent))
    assert _inbox_size(runner) == 0


def test_fast_path_on_the_broker_settles_each_delivery_of_a_mixed_backlog(erasure_pipeline, db_backend) -> None:
    probe = Probe({"transient-fk5": Act(fail="transient"), "permanent-fk15": Act(fail="permanent"),
                   "permanent-fk25": Act(fail="permanent")})
    service = make_service(probe=probe, database_only=True)
    _declare_empty(erasure_pipeline, service)
    ns = erasure_pipeline.namespace
    messages = [erasure_pipeline.encode(example_deregistration(
        f"ok-fk{i}" if i % 10 != 5 else f"{'transient' if i == 5 else 'permanent'}-fk{i}")) for i in range(30)]
    conflict = erasure_pipeline.encode(example_deregistration("ok-fk1", reason="admin"),
                                       event_id=UUID(messages[1].event_id))
    erasure_pipeline.producer.publish_many([*messages[:20], messages[3], conflict, *messages[20:], messages[3]])
    running = erasure_pipeline.start(service)
    wait_until(lambda: erasure_pipeline.depth(f"{ns}.probe.dead") == 4, timeout=30,
               what="transient (exhausted), two permanent and the conflict dead-lettered")
    wait_until(lambda: erasure_pipeline.depth(f"{ns}.probe") == 0, what="the rest acked")
    counts = _effects(running.runner)
    assert sorted(counts) == sorted(f"ok-fk{i}" for i in range(30) if i % 10 != 5)
    assert set(counts.values()) == {1}
    kinds = sorted(dead.headers["x-error-kind"] for dead in erasure_pipeline.take(f"{ns}.probe.dead"))
    assert kinds == ["conflicting_duplicate", "permanent", "permanent", "retries_exhausted"]
