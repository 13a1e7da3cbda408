"""The ledger's batch path: a batch's requests locked and loaded in two statements, for its handlers to share.

The runtime calls `prepare` with a batch's fresh events before their handlers run (shared/service.py,
`prepare_batch`). It locks every request row the batch names in one statement (in request-id order, so two
replicas lock in the same order), then reads those requests with their slices and the end of each receipt
chain in one more, and keeps them in the session for `locked_request` to hand out: the handlers then issue no
read of their own, and with `flush_per_handler=False` their slice, chain and request writes go in one flush
per batch. Without `prepare` (the savepoint path, operators' commands) the handlers read per delivery as before.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from schemas import AccessRequested, EventData, PersonalDataCorrected, UserDeregistered
from services.ledger.models import OPEN, AccessRequest, CorrectionRequest, ErasureRequest, LegalHold

BATCH = "ledger.batch"  # session.info key: request id -> (request or None, its Chain)
USERS = "ledger.batch.users"
"""session.info key: (user id -> hold in force, users who may hold an export, users with open rights requests)."""


def prepare(session: Session, events: Sequence[EventData]) -> None:
    """Lock and load the batch's requests; remember each (None for requests not opened yet)."""
    from services.ledger.handlers import LOAD, Chain

    ids = sorted({str(getattr(event, "request_id")) for event in events})  # noqa: B009 - every ledger event has one
    if session.get_bind().dialect.name != "sqlite":  # see handlers.locked_request: lock first, then read
        session.execute(select(ErasureRequest.request_id).where(ErasureRequest.request_id.in_(ids))
                        .order_by(ErasureRequest.request_id).with_for_update()).all()
    found: dict[str, tuple[ErasureRequest | None, Any]] = dict.fromkeys(ids, (None, None))
    for request, seq, head in session.execute(LOAD.where(ErasureRequest.request_id.in_(ids))).unique():
        found[request.request_id] = (request, Chain(seq or 0, head))
    session.info[BATCH] = {rid: (req, chain if req is not None else Chain()) for rid, (req, chain) in found.items()}
    erased = sorted({event.user_id for event in events if isinstance(event, UserDeregistered)})
    holds: dict[str, LegalHold] = {}
    exports: set[str] = set()
    if erased:  # what opening an erasure checks per user: a hold in force, an access export to erase
        for hold in session.scalars(select(LegalHold).where(LegalHold.user_id.in_(erased),
                                                            LegalHold.released_at.is_(None)).order_by(LegalHold.id)):
            holds[hold.user_id] = hold  # the newest hold in force wins
        exports = set(session.scalars(select(AccessRequest.user_id).where(
            AccessRequest.user_id.in_(erased), AccessRequest.export_erased_at.is_(None))))
        exports |= {event.user_id for event in events if isinstance(event, AccessRequested)}  # opened in this batch
    # Whose open access or correction requests an erasure completed in this batch would close.
    users = sorted({user for event in events if isinstance(user := getattr(event, "user_id", None), str)})
    rights = set(session.scalars(
        select(AccessRequest.user_id).where(AccessRequest.user_id.in_(users), AccessRequest.status == OPEN)
        .union(select(CorrectionRequest.user_id).where(CorrectionRequest.user_id.in_(users),
                                                       CorrectionRequest.status == OPEN)))) if users else set()
    rights |= {event.user_id for event in events if isinstance(event, AccessRequested | PersonalDataCorrected)}
    session.info[USERS] = (holds, exports, rights)


def prepared(session: Session, request_id: str) -> tuple[ErasureRequest | None, Any] | None:
    """What `prepare` loaded for this request (request or None, Chain); None when the batch was not prepared."""
    loaded = session.info.get(BATCH)
    return None if loaded is None else loaded.get(request_id)


def remember(session: Session, request: ErasureRequest, chain: Any) -> None:
    """A request a handler opened in a prepared batch, for the batch's later deliveries of it."""
    loaded = session.info.get(BATCH)
    if loaded is not None:
        loaded[request.request_id] = (request, chain)


def hold_in_force(session: Session, user_id: str) -> LegalHold | None:
    """The user's newest legal hold in force: from the prepared batch, else read now."""
    loaded = session.info.get(USERS)
    if loaded is not None:
        return loaded[0].get(user_id)
    return session.scalars(select(LegalHold).where(LegalHold.user_id == user_id, LegalHold.released_at.is_(None))
                           .order_by(LegalHold.id.desc())).first()


def may_hold_exports(session: Session, user_id: str) -> bool:
    """False only when the prepared batch knows the user has no access export left to erase."""
    loaded = session.info.get(USERS)
    return loaded is None or user_id in loaded[1]


def may_have_open_rights(session: Session, user_id: str) -> bool:
    """False only when the prepared batch knows the user has no open access or correction request."""
    loaded = session.info.get(USERS)
    return loaded is None or user_id in loaded[2]
