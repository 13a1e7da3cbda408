"""What access and correction requests share in the ledger: opening once, a request read under its row lock with
its parts, and their states (overdue, stuck, due soon) for `status --overdue`, `--due-soon` and the gauge."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from shared.errors import PermanentError, TransientError

if TYPE_CHECKING:
    from services.ledger.queries import OverdueRequest

R = TypeVar("R")


def known(session: Session, model: type[Any], request_id: str, user_id: str, event_id: str) -> bool:
    """Whether the request is open already (the command that staged its event opened it); PermanentError when
    it belongs to another user than the event names."""
    found: Any = session.get(model, request_id)
    if found is not None and found.user_id != user_id:
        raise PermanentError(f"request {request_id} belongs to another user than event {event_id} names; check "
                             "the producer of the event")
    return found is not None


def locked_with_parts(session: Session, model: type[R], request_id: str, user_id: str, event_id: str) -> R:
    """The request with its parts, locked; TransientError while the ledger has not opened it, PermanentError
    when the event names another user than the request's."""
    table: Any = model
    request: Any = session.scalars(select(model).where(table.request_id == request_id)
                              .options(selectinload(table.parts)).with_for_update()
                              .execution_options(populate_existing=True)).first()
    if request is None:
        raise TransientError(f"request {request_id} is not open in the ledger yet")
    if request.user_id != user_id:
        raise PermanentError(f"request {request_id} belongs to another user than event {event_id} names; check "
                             "the producer of the event")
    found: R = request
    return found


KINDS = ("access", "correction")


def _models() -> dict[str, Any]:
    from services.ledger.models import AccessRequest, CorrectionRequest

    return {"access": AccessRequest, "correction": CorrectionRequest}


def _progress_times(request: Any) -> list[datetime]:
    times = [request.opened_at]
    for part in request.parts:
        at = getattr(part, "answered_at", None) or getattr(part, "reported_at", None)
        if at is not None:
            times.append(at)
    return times


def missing_slices(request: Any) -> tuple[str, ...]:
    """The slices an access or correction request still waits for."""
    return tuple(p.service for p in request.parts
                 if (getattr(p, "answered_at", None) or getattr(p, "reported_at", None)) is None)


def rights_state(request: Any, now: datetime, stuck_after: timedelta, internal_due: timedelta | None) -> str:
    """An access or correction request's state as erasures count theirs (a legal hold does not apply):
    completed, overdue, stuck, due_soon or open."""
    from services.ledger.queries import COMPLETED, DUE_SOON, OVERDUE, STILL_OPEN, STUCK

    if request.status != "open":
        return COMPLETED
    if request.due_at < now:
        return OVERDUE
    if max(_progress_times(request)) < now - stuck_after:
        return STUCK
    if internal_due is not None and request.requested_at < now - internal_due:
        return DUE_SOON
    return STILL_OPEN


def open_rights_requests(session: Session) -> list[tuple[str, Any]]:
    """Every open access and correction request with its parts, by kind, in due order."""
    found = []
    for kind, model in _models().items():
        rows = session.scalars(select(model).where(model.status == "open").options(selectinload(model.parts))
                               .order_by(model.due_at, model.request_id)).all()
        found += [(kind, row) for row in rows]
    return found


def rights_listed(session: Session, now: datetime, stuck_after: timedelta, internal_due: timedelta | None,
                  states: frozenset[str]) -> list[OverdueRequest]:
    """Open access and correction requests in one of `states`, as `status --overdue`/`--due-soon` list them."""
    from services.ledger.queries import DUE_SOON, OVERDUE, STUCK, OverdueRequest

    why = {OVERDUE: "past_due", STUCK: "stuck", DUE_SOON: "due_soon"}
    listed = []
    for kind, request in open_rights_requests(session):
        state = rights_state(request, now, stuck_after, internal_due)
        if state in states:
            listed.append(OverdueRequest(request.request_id, request.user_id, why[state], request.due_at,
                                         request.opened_at, missing_slices(request), False, kind=kind))
    return listed


def rights_counts(session: Session, now: datetime, stuck_after: timedelta,
                  internal_due: timedelta) -> dict[str, dict[str, int]]:
    """How many access and correction requests are in each state, by kind."""
    from services.ledger.queries import COMPLETED, DUE_SOON, OVERDUE, STILL_OPEN, STUCK

    counts = {kind: dict.fromkeys((STILL_OPEN, DUE_SOON, OVERDUE, STUCK, COMPLETED), 0) for kind in KINDS}
    for kind, model in _models().items():
        counts[kind][COMPLETED] = session.scalar(
            select(func.count()).select_from(model).where(model.status != "open")) or 0
    for kind, request in open_rights_requests(session):
        counts[kind][rights_state(request, now, stuck_after, internal_due)] += 1
    return counts
