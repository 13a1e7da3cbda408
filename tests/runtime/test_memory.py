"""The in-memory transport (shared/testing/memory.py): the runtime's stages, retries and outbox without a broker."""

from __future__ import annotations

from uuid import UUID

from sqlalchemy import func, select

from schemas import ErasureSliceReported
from schemas.examples import example_deregistration
from shared.runtime import headers as h
from shared.runtime.outcome import Action
from shared.testing.memory import MemoryPipeline, MemoryService, outcomes_by_event
from tests.probe_service import Act, Probe, effects, make_service


def _effects(running: MemoryService) -> dict[str, int]:
    with running.engine.connect() as conn:
        return dict(conn.execute(select(effects.c.user_id, func.count()).group_by(effects.c.user_id)).all())


def test_retries_walk_the_delay_tiers_then_dead_letter_and_a_flaky_event_succeeds_once(
    erasure_memory: MemoryPipeline, db_backend: str
) -> None:
    probe = Probe({"u-down": Act(fail="transient"), "u-flaky": Act(fail_first=2), "u-ok": Act()})
    running = erasure_memory.start(make_service(probe=probe))
    down, flaky, ok = erasure_memory.publish(*(example_deregistration(u) for u in ("u-down", "u-flaky", "u-ok")))
    assert running.handled(ok.event_id) and not running.handled(flaky.event_id)
    tiers = [f"{erasure_memory.namespace}.probe.retry.{label}" for label in ("200ms", "400ms", "800ms")]
    assert [erasure_memory.depth(t) for t in tiers] == [2, 0, 0]

    erasure_memory.retry()
    assert [erasure_memory.depth(t) for t in tiers] == [0, 2, 0]
    erasure_memory.retry()
    assert running.handled(flaky.event_id)
    assert [erasure_memory.depth(t) for t in tiers] == [0, 0, 1]
    erasure_memory.retry()
    [dead] = erasure_memory.dead("probe")
    assert dead.properties["message_id"] == down.event_id
    assert (dead.headers[h.ERROR_KIND], dead.headers[h.ATTEMPTS]) == ("retries_exhausted", 4)
    assert _effects(running) == {"u-flaky": 1, "u-ok": 1}
    assert [o.action for o in outcomes_by_event(running)[flaky.event_id]] == [Action.RETRY, Action.RETRY, Action.ACK]


def test_waiting_lets_a_delay_tier_expire_by_its_ttl(erasure_memory: MemoryPipeline) -> None:
    running = erasure_memory.start(make_service(probe=Probe({"u-once": Act(fail_first=1)})))
    [sent] = erasure_memory.publish(example_deregistration("u-once"))
    assert not running.handled(sent.event_id)
    running.wait_handled(sent.event_id, timeout=5)
    assert _effects(running) == {"u-once": 1}


def test_duplicates_are_acked_without_effect_and_a_conflict_is_dead_lettered(
    erasure_memory: MemoryPipeline, db_backend: str
) -> None:
    running = erasure_memory.start(make_service(probe=Probe()))
    first = erasure_memory.encode(example_deregistration("u-dup"))
    conflict = erasure_memory.encode(example_deregistration("u-dup", reason="admin"), event_id=UUID(first.event_id))
    erasure_memory.publish(first, first)
    erasure_memory.publish(first, conflict)
    assert _effects(running) == {"u-dup": 1}
    [dead] = erasure_memory.dead("probe")
    assert dead.headers[h.ERROR_KIND] == "conflicting_duplicate"
    assert erasure_memory.depth(f"{erasure_memory.namespace}.probe") == 0


def test_emitted_events_are_relayed_from_the_outbox_to_the_queues_bound_to_them(
    erasure_memory: MemoryPipeline, db_backend: str
) -> None:
    running = erasure_memory.start(make_service(probe=Probe({"u-rep": Act(emit=True)})))
    [sent] = erasure_memory.publish(example_deregistration("u-rep"))
    [report] = erasure_memory.wait_events(ErasureSliceReported)
    assert (report.user_id, report.outcome) == ("u-rep", "erased")
    with running.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(running.outbox)).scalar_one() == 0, "relayed"
    assert running.handled(sent.event_id)


def test_the_database_only_fast_path_settles_a_mixed_batch_as_on_the_broker(erasure_memory: MemoryPipeline) -> None:
    """Its twin on the broker: test_fast_path_on_the_broker_settles_each_delivery_of_a_mixed_backlog."""
    probe = Probe({"transient-m5": Act(fail="transient"), "permanent-m15": Act(fail="permanent"),
                   "permanent-m25": Act(fail="permanent")})
    running = erasure_memory.start(make_service(probe=probe, database_only=True))
    users = [f"ok-m{i}" if i % 10 != 5 else f"{'transient' if i == 5 else 'permanent'}-m{i}" for i in range(30)]
    messages = [erasure_memory.encode(example_deregistration(u)) for u in users]
    conflict = erasure_memory.encode(example_deregistration("ok-m1", reason="admin"),
                                     event_id=UUID(messages[1].event_id))
    erasure_memory.publish(*messages[:20], messages[3], conflict, *messages[20:], messages[3])
    for _ in range(3):
        erasure_memory.retry()
    kinds = sorted(dead.headers[h.ERROR_KIND] for dead in erasure_memory.dead("probe"))
    assert kinds == ["conflicting_duplicate", "permanent", "permanent", "retries_exhausted"]
    counts = _effects(running)
    assert sorted(counts) == sorted(u for u in users if u.startswith("ok-")) and set(counts.values()) == {1}
