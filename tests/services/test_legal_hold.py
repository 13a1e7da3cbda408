"""A slice under a legal hold (shared/hold.py): deregistrations parked and run on release; states only move on."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.orm import Session

from schemas import ErasureSliceReported
from schemas.examples import example_deregistration, example_hold_change
from services.account import accounts
from services.account.main import build
from shared.db import session_factory
from shared.hold import is_held, parked
from shared.testing.memory import MemoryPipeline, MemoryService


def _session(running: MemoryService) -> Session:
    return session_factory(running.engine, running.service.metadata)()


def _reports(pipeline: MemoryPipeline, user_id: str) -> list[ErasureSliceReported]:
    try:
        return pipeline.wait_events(ErasureSliceReported, where=lambda r: r.user_id == user_id)
    except AssertionError:
        return []


def _register(running: MemoryService, user_id: str) -> None:
    with _session(running) as session, session.begin():
        accounts.register_user(session, user_id=user_id, name="Anna Lindqvist",
                               email="anna.lindqvist@kund.loggamera.se")


def test_a_held_users_deregistration_waits_for_the_release(erasure_memory: MemoryPipeline, db_backend: str) -> None:
    running = erasure_memory.start(build())
    _register(running, "u-held")
    erasure_memory.publish(example_hold_change("u-held", hold_id=1, held=True, changed_at=datetime.now(UTC)))
    first, second = (example_deregistration("u-held", request_id=rid, requested_at=datetime.now(UTC))
                     for rid in ("6f1c2b9e-3d4a-4e5f-8a7b-9c0d1e2f3a4b", "2a7d9c41-5b3e-4f60-9e18-7c2b4d6a8f05"))
    erasure_memory.publish(first, second)

    assert _reports(erasure_memory, "u-held") == [], "nothing erased, nothing reported under the hold"
    with _session(running) as session:
        assert is_held(session, "u-held")
        assert parked(session, "u-held") == [str(first.request_id), str(second.request_id)]
        assert not accounts.is_erased_user(session, "u-held")

    erasure_memory.publish(example_hold_change("u-held", hold_id=1, held=False, changed_at=datetime.now(UTC)))
    reports = _reports(erasure_memory, "u-held")
    assert sorted(str(r.request_id) for r in reports) == sorted([str(first.request_id), str(second.request_id)])
    assert reports[0].outcome == "erased"
    with _session(running) as session:
        assert not is_held(session, "u-held") and parked(session, "u-held") == []
        assert accounts.is_erased_user(session, "u-held")


def test_a_release_that_overtakes_its_hold_is_not_undone(erasure_memory: MemoryPipeline, db_backend: str) -> None:
    running = erasure_memory.start(build())
    now = datetime.now(UTC)
    erasure_memory.publish(example_hold_change("u-late", hold_id=1, held=False, changed_at=now))
    erasure_memory.publish(example_hold_change("u-late", hold_id=1, held=True, changed_at=now))
    with _session(running) as session:
        assert not is_held(session, "u-late"), "hold 1 was released; its late placement changes nothing"
    erasure_memory.publish(example_hold_change("u-late", hold_id=2, held=True, changed_at=now))
    with _session(running) as session:
        assert is_held(session, "u-late"), "a newer hold is in force"

    [sent] = erasure_memory.publish(example_deregistration("u-late", requested_at=now))
    running.wait_handled(sent.event_id)
    assert _reports(erasure_memory, "u-late") == []


def test_access_still_works_for_a_held_user(erasure_memory: MemoryPipeline, db_backend: str) -> None:
    from schemas import AccessSliceAnswered
    from schemas.examples import example_access_request

    running = erasure_memory.start(build())
    _register(running, "u-held-access")
    erasure_memory.publish(example_hold_change("u-held-access", hold_id=1, held=True, changed_at=datetime.now(UTC)))
    erasure_memory.publish(example_access_request("u-held-access", requested_at=datetime.now(UTC)))
    [answer] = erasure_memory.wait_events(AccessSliceAnswered, where=lambda a: a.user_id == "u-held-access")
    [account] = [item for item in answer.items if item.category == "account and contact details"]
    assert account.data["email"] == "anna.lindqvist@kund.loggamera.se"
