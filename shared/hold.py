"""Legal holds in a slice service: a held user's deregistrations are parked, and erased when the hold is released.

The ledger announces each hold and release as `LegalHoldChanged`. A slice keeps the newest state per user in
`hold_states`; while a hold is in force, a `UserDeregistered` for that user is acknowledged without effect and
its envelope kept in `parked_erasures` (it names only the opaque user id and the request). The release runs the
parked deregistrations through the slice's own erasure handler, in the release's transaction, so their slice
reports reach the ledger then. Everything else (purchases, consent, access) goes on as usual.

A slice whose erasure calls a vendor in an outside step (`Service.outside`, shared.runtime.reach) wraps its
steps too (`outside_with_legal_hold`): the erasure's step does nothing while the user is held, and a release's
step runs the erasure step of each parked deregistration, whose results the resumed handlers get. The runtime
commits a batch up to each `LegalHoldChanged` before it runs the steps after it, so a step never acts on a hold
state older than its handler's.

Hold states only move forward: hold n placed, then hold n released, then hold n+1 placed. A release that
overtakes its placement (a delay tier, a redelivery) is therefore not undone by the placement arriving later.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import Table, delete, insert, select, update
from sqlalchemy.orm import Session

from schemas import CloudEvent, EventData, LegalHoldChanged, UserDeregistered
from shared.service import Context, Handler, Outside, OutsideStep

D = TypeVar("D")


def _table(session: Session, name: str) -> Table:
    tables = session.info.get("tables")
    if tables is None or name not in tables:
        raise RuntimeError("the session is not a service session (no runtime tables in session.info)")
    return tables[name]


def is_held(session: Session, user_id: str) -> bool:
    """Whether a legal hold is in force on the user's erasure, as the ledger last told this service."""
    row = _state(session, user_id)
    return bool(row is not None and row.held)


def parked(session: Session, user_id: str) -> list[str]:
    """Request ids of the user's deregistrations deferred under a hold, oldest first."""
    table = _table(session, "parked_erasures")
    return list(session.scalars(select(table.c.request_id).where(table.c.user_id == user_id)
                                .order_by(table.c.parked_at, table.c.event_id)))


def _park(event: UserDeregistered, ctx: Context[Any]) -> None:
    table = _table(ctx.session, "parked_erasures")
    ctx.session.execute(insert(table).values(
        event_id=ctx.event_id, user_id=event.user_id, request_id=str(event.request_id),
        envelope=ctx.envelope.model_dump_json(), parked_at=datetime.now(UTC)))
    ctx.log.info("erasure deferred: the user is under a legal hold", request_id=str(event.request_id))


def _moves_forward(event: LegalHoldChanged, hold_id: int, held: bool) -> bool:
    """Whether the event is a later state than the one recorded (placed < released, per hold number)."""
    return (event.hold_id, not event.held) > (hold_id, not held)


def _state(session: Session, user_id: str, *, lock: bool = False) -> Any:
    """The user's recorded hold state (hold_id, held), or None; `lock` takes the row for an update."""
    states = _table(session, "hold_states")
    query = select(states.c.hold_id, states.c.held).where(states.c.user_id == user_id)
    return session.execute(query.with_for_update() if lock else query).first()


def _record(event: LegalHoldChanged, session: Session) -> bool:
    """Record the new hold state; False when it is not newer than the one recorded (nothing changes)."""
    states = _table(session, "hold_states")
    row = _state(session, event.user_id, lock=True)
    values = {"hold_id": event.hold_id, "held": event.held, "changed_at": event.changed_at}
    if row is None:
        session.execute(insert(states).values(user_id=event.user_id, **values))
        return True
    if not _moves_forward(event, row.hold_id, row.held):
        return False
    session.execute(update(states).where(states.c.user_id == event.user_id).values(**values))
    return True


def _parked_rows(session: Session, user_id: str) -> list[Any]:
    table = _table(session, "parked_erasures")
    return list(session.execute(select(table.c.event_id, table.c.envelope).where(table.c.user_id == user_id)
                                .order_by(table.c.parked_at, table.c.event_id)).all())


def _resume(event: LegalHoldChanged, ctx: Context[D], erase: Handler[D]) -> int:
    """Run the user's parked deregistrations through the erasure handler; how many ran.

    Each gets what the release's outside step did for it (a dict by parked event id), when the slice has one.
    """
    table = _table(ctx.session, "parked_erasures")
    rows = _parked_rows(ctx.session, event.user_id)
    done = ctx.outside if isinstance(ctx.outside, dict) else {}
    for row in rows:
        envelope = CloudEvent.model_validate_json(row.envelope)
        erase(UserDeregistered.model_validate(envelope.data),
              dataclasses.replace(ctx, envelope=envelope, outside=done.get(row.event_id)))
    if rows:
        ctx.session.execute(delete(table).where(table.c.event_id.in_([r.event_id for r in rows])))
    return len(rows)


def with_legal_hold(handlers: Mapping[type[EventData], Handler[D]]) -> dict[type[EventData], Handler[D]]:
    """A slice's handlers with its erasure deferred under a legal hold and `LegalHoldChanged` handled."""
    erase = handlers[UserDeregistered]

    def erase_unless_held(event: UserDeregistered, ctx: Context[D]) -> None:
        if is_held(ctx.session, event.user_id):
            _park(event, ctx)
        else:
            erase(event, ctx)

    def hold_changed(event: LegalHoldChanged, ctx: Context[D]) -> None:
        if not _record(event, ctx.session):
            ctx.log.info("legal hold change already superseded; ignored", hold_id=event.hold_id, held=event.held)
        elif event.held:
            ctx.log.info("legal hold in force: erasure of the user deferred", hold_id=event.hold_id)
        else:
            resumed = _resume(event, ctx, erase)
            ctx.log.info("legal hold released", hold_id=event.hold_id, erasures_resumed=resumed)

    erase_unless_held.__doc__ = f"{erase.__doc__ or ''} Deferred while the user is under a legal hold.".strip()
    return {**handlers, UserDeregistered: erase_unless_held, LegalHoldChanged: hold_changed}


def outside_with_legal_hold(steps: Mapping[type[EventData], OutsideStep[D]]) -> dict[type[EventData], OutsideStep[D]]:
    """A slice's outside steps with its erasure's step skipped under a legal hold, and a release's step running
    the erasure step of every deregistration parked for the user (its result: a dict by parked event id)."""
    erase = steps[UserDeregistered]

    def reach_unless_held(event: UserDeregistered, out: Outside[D]) -> Any:
        with out.read() as session:
            if is_held(session, event.user_id):
                return None
        return erase(event, out)

    def reach_for_parked(event: LegalHoldChanged, out: Outside[D]) -> dict[str, Any] | None:
        if event.held:
            return None
        with out.read() as session:
            state = _state(session, event.user_id)
            if state is not None and not _moves_forward(event, state.hold_id, state.held):
                return None  # superseded: the handler ignores it, and nothing may be erased
            rows = _parked_rows(session, event.user_id)
        done = {}
        for row in rows:
            envelope = CloudEvent.model_validate_json(row.envelope)
            done[row.event_id] = erase(UserDeregistered.model_validate(envelope.data),
                                       dataclasses.replace(out, envelope=envelope))
        return done

    return {**steps, UserDeregistered: reach_unless_held, LegalHoldChanged: reach_for_parked}
