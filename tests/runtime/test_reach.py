"""Stage 2, reach out (shared/runtime/reach.py): a batch's outside steps run at once, before its transaction."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

from sqlalchemy import Engine, insert, select

from schemas import LegalHoldChanged, UserDeregistered
from schemas.examples import example_deregistration, example_hold_change
from shared.db import session_factory
from shared.errors import OutsideOutdated, PermanentError, TransientError
from shared.hold import outside_with_legal_hold, with_legal_hold
from shared.runtime.outcome import ACK, Action
from shared.runtime.pipeline import RUN_AGAIN, BatchPipeline
from shared.service import Context, Outside, Service
from shared.settings import RuntimeSettings
from tests.probe_service import effects, metadata
from tests.runtime.test_stages import _delivery, _signed

CONCURRENCY = 4


class Vendor:
    """An outside system that counts its calls, how many ran at once, and fails for the users told to."""

    def __init__(self, *, meet: int = 0) -> None:
        self.calls: Counter[str] = Counter()
        self.at_once = 0
        self.most_at_once = 0
        self._lock = threading.Lock()
        # With `meet`, every call waits until that many are in flight: a pool running fewer at once times out.
        self._meet = threading.Barrier(meet, timeout=10) if meet else None

    def call(self, event: UserDeregistered, out: Outside[Any]) -> str:
        with self._lock:
            self.calls[event.user_id] += 1
            self.at_once += 1
            self.most_at_once = max(self.most_at_once, self.at_once)
        try:
            if self._meet is not None:
                self._meet.wait()
            if event.user_id.startswith("transient"):
                raise TransientError("the vendor is busy")
            if event.user_id.startswith("permanent"):
                raise PermanentError("the vendor refuses")
            with out.read() as session:  # a step may read its service's database
                seen = len(session.execute(select(effects.c.id)).all())
            return f"done for {event.user_id} (saw {seen} effects)"
        finally:
            with self._lock:
                self.at_once -= 1


def _write_effect(event: UserDeregistered, ctx: Context[Any]) -> None:
    if event.user_id.startswith("fails-in-handler"):
        raise PermanentError("the handler refuses")
    if event.user_id.startswith("outdated-always") or (event.user_id.startswith("outdated") and not ctx.tried_before):
        raise OutsideOutdated("an earlier delivery of the batch changed what the step saw")
    assert isinstance(ctx.outside, str) and ctx.outside.startswith(f"done for {event.user_id}")
    ctx.session.execute(insert(effects).values(event_id=ctx.event_id, user_id=event.user_id))


def _service(vendor: Vendor, *, hold: bool = False) -> Service[None]:
    handlers: dict[Any, Any] = {UserDeregistered: _write_effect}
    steps: dict[Any, Any] = {UserDeregistered: vendor.call}
    if hold:
        handlers, steps = with_legal_hold(handlers), outside_with_legal_hold(steps)
    return Service(name="probe", handlers=handlers, outside=steps, metadata=metadata, database_only=True)




def _pipeline(engine: Engine, service: Service[None]) -> BatchPipeline:
    settings = RuntimeSettings(namespace="reach", outside_concurrency=CONCURRENCY)
    return BatchPipeline(service, settings, session_factory(engine, metadata), [])


def _batch(*events: Any) -> list[Any]:
    return [_delivery(_signed(event), tag=i + 1) for i, event in enumerate(events)]


def _effects(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return sorted(conn.execute(select(effects.c.user_id)).scalars())


def test_a_batchs_steps_run_at_once_and_each_handler_gets_its_own_result(engine: Engine) -> None:
    vendor = Vendor(meet=CONCURRENCY)  # each call waits until four are in flight: one at a time would time out
    pipeline = _pipeline(engine, _service(vendor))
    users = [f"u-{n}" for n in range(2 * CONCURRENCY)]
    try:
        outcomes = pipeline.process(_batch(*(example_deregistration(user) for user in users)))
    finally:
        pipeline.close()
    assert outcomes == [ACK] * len(users)
    assert vendor.most_at_once == CONCURRENCY
    assert _effects(engine) == sorted(users)  # _write_effect checked that each got its own user's result


def test_a_failing_step_fails_only_its_delivery_classified_like_a_handler(engine: Engine) -> None:
    vendor = Vendor()
    pipeline = _pipeline(engine, _service(vendor))
    try:
        outcomes = pipeline.process(_batch(*(example_deregistration(user)
                                             for user in ("ok-1", "transient-1", "permanent-1", "ok-2"))))
    finally:
        pipeline.close()
    assert outcomes[0] == ACK and outcomes[3] == ACK
    assert (outcomes[1].action, outcomes[1].kind) == (Action.RETRY, "transient")
    assert (outcomes[2].action, outcomes[2].kind) == (Action.DEAD, "permanent")
    assert _effects(engine) == ["ok-1", "ok-2"]  # a failed step's handler never ran


def test_steps_run_once_per_new_event_neither_for_duplicates_nor_again_when_the_fast_path_gives_up(
        engine: Engine) -> None:
    vendor = Vendor()
    pipeline = _pipeline(engine, _service(vendor))
    batch = _batch(*(example_deregistration(user) for user in ("ok-1", "fails-in-handler-1", "ok-2")))
    try:
        first = pipeline.process(batch)  # the handler's failure sends the batch to the savepoint path
        again = pipeline.process(batch)  # redelivered: the inbox holds the two that succeeded
    finally:
        pipeline.close()
    assert first[0] == ACK and first[2] == ACK and first[1].action is Action.DEAD
    assert again[0] == ACK and again[2] == ACK
    # ok-1 and ok-2: one call each, though the batch ran twice in the first attempt and was delivered twice.
    assert vendor.calls == Counter({"ok-1": 1, "ok-2": 1, "fails-in-handler-1": 2})
    assert _effects(engine) == ["ok-1", "ok-2"]


def test_a_hold_placed_earlier_in_the_batch_stops_the_erasures_step_and_its_release_runs_it(
        engine: Engine) -> None:
    vendor = Vendor()
    pipeline = _pipeline(engine, _service(vendor, hold=True))
    placed = example_hold_change("u-held", hold_id=1, held=True)
    released = example_hold_change("u-held", hold_id=1, held=False)
    try:
        # The hold and the erasure in one batch: the step reads the database, so the hold must commit first.
        assert pipeline.process(_batch(placed, example_deregistration("u-held"),
                                       example_deregistration("u-free"))) == [ACK] * 3
        assert vendor.calls == Counter({"u-free": 1})
        assert _effects(engine) == ["u-free"]
        assert pipeline.process(_batch(released)) == [ACK]  # its step erases the parked one at the vendor
    finally:
        pipeline.close()
    assert vendor.calls == Counter({"u-free": 1, "u-held": 1})
    assert _effects(engine) == ["u-free", "u-held"]
    assert isinstance(placed, LegalHoldChanged)


def test_a_delivery_whose_step_an_earlier_one_outdated_runs_again_at_once_as_one_tried_before(
        engine: Engine) -> None:
    vendor = Vendor()
    pipeline = _pipeline(engine, _service(vendor))
    try:
        outcomes = pipeline.process(_batch(*(example_deregistration(user)
                                             for user in ("ok-1", "outdated-1", "outdated-always-1"))))
    finally:
        pipeline.close()
    assert outcomes[:2] == [ACK, ACK]  # outdated-1: its step and handler ran again after ok-1 committed
    assert (outcomes[2].action, outcomes[2].kind) == (Action.RETRY, "outdated")  # then the delay tiers
    assert vendor.calls == Counter({"ok-1": 1, "outdated-1": 2, "outdated-always-1": 1 + RUN_AGAIN})
    assert _effects(engine) == ["ok-1", "outdated-1"]
