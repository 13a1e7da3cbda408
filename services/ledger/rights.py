"""What access and correction requests share in the ledger: opening once, and a request read under its row lock
with its parts."""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from shared.errors import PermanentError, TransientError

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
