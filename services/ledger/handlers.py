"""Ledger handlers: open a request on deregistration, record slice reports, close it when all five are in.

A report may arrive before its deregistration (the ledger's copy of the event was delayed): it opens the
request "by report" so nothing is lost. The receipt chain starts from the opening record, which needs
the reason and requested_at, so such reports are chained (and the request closed) when the event arrives.

Each delivery reads its request once, after locking its row: the request, its slices and the last link of
its receipt chain in one statement (`locked_request`). The receipt entries themselves are not loaded; new
links are added to the session and written together with the slice and request changes when the runtime
flushes after the handler.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, joinedload

from schemas import (
    SLICE_SERVICES,
    AccessRequested,
    AccessSliceAnswered,
    CorrectionSliceReported,
    ErasureCompleted,
    ErasureSliceReported,
    ErasureSliceRetrying,
    PersonalDataCorrected,
    RetainedCategory,
    UserDeregistered,
)
from services.ledger import access, batch, correction
from services.ledger.access import erase_user_exports, open_access_request, record_access_answer
from services.ledger.correction import open_correction, record_correction_report
from services.ledger.failures import record_slice_failure
from services.ledger.models import (
    BY_DEREGISTRATION,
    BY_REPORT,
    COMPLETE,
    OPEN,
    ErasureRequest,
    ReceiptEntry,
    SliceReport,
)
from services.ledger.receipt import link, opening_hash
from services.ledger.settings import LedgerSettings
from shared.errors import PermanentError
from shared.keys import key_store, user_subject
from shared.service import Context, Handlers


def report_payload(event: ErasureSliceReported) -> dict[str, Any]:
    """The PII-free content of a slice report as kept in the ledger and hashed into the receipt."""
    return event.model_dump(
        mode="json",
        include={"request_id", "service", "outcome", "erased", "retained", "recipients_notified",
                 "reported_at", "replay"},
    )


@dataclass
class Chain:
    """The end of a request's receipt chain: the last link's seq and hash (0 and None while it is empty)."""

    seq: int = 0
    head: str | None = None


def _last_link(column: Any) -> Any:
    """A column of the request's last receipt entry, as a scalar subquery correlated to the request."""
    return select(column).where(ReceiptEntry.request_id == ErasureRequest.request_id) \
        .order_by(ReceiptEntry.seq.desc()).limit(1).scalar_subquery()


_LOCK = select(ErasureRequest.request_id).with_for_update()
LOAD = (
    select(ErasureRequest, _last_link(ReceiptEntry.seq), _last_link(ReceiptEntry.entry_hash))
    .options(joinedload(ErasureRequest.slices))
    # A batch shares one session: take the rows as they are now, not as an earlier delivery left them.
    .execution_options(populate_existing=True)
)


def locked_request(session: Session, request_id: str) -> tuple[ErasureRequest | None, Chain]:
    """The request under its row lock, with its slices and the end of its receipt chain.

    The row lock serialises two replicas handling the same request. It is taken by a statement of its own:
    under READ COMMITTED a locking statement that had to wait still reads every other row as of its start,
    so the slices and the chain are read by the next statement, once the lock is held. SQLite has no row
    locks and needs none (a write transaction holds the whole database), so there it is one statement.
    """
    loaded = batch.prepared(session, request_id)
    if loaded is not None:  # locked and read with the rest of its batch (services/ledger/batch.py)
        return loaded
    row_locks = session.get_bind().dialect.name != "sqlite"
    if row_locks and session.execute(_LOCK.where(ErasureRequest.request_id == request_id)).first() is None:
        return None, Chain()
    row = session.execute(LOAD.where(ErasureRequest.request_id == request_id)).unique().first()
    if row is None:
        return None, Chain()
    request, seq, head = row
    return request, Chain(seq or 0, head)


def _new_request(request_id: str, user_id: str, now: datetime, *, due: datetime, opened_by: str,
                 replay: bool) -> ErasureRequest:
    request = ErasureRequest(
        request_id=request_id, user_id=user_id, opened_at=now, opened_by=opened_by, due_at=due,
        replay=replay, status=OPEN)
    request.slices = [SliceReport(service=name, position=i) for i, name in enumerate(SLICE_SERVICES)]
    return request


def _check_same_user(request: ErasureRequest, user_id: str, event_id: str) -> None:
    if request.user_id != user_id:
        raise PermanentError(
            f"request {request.request_id} belongs to user {request.user_id}, but event {event_id} names "
            f"user {user_id}; check the producer of the event")


def _chain(session: Session, request: ErasureRequest, chain: Chain, pending: list[SliceReport],
           now: datetime) -> None:
    """Append reports to the request's receipt chain in the order the ledger received them; move `chain` on."""
    assert request.reason is not None and request.requested_at is not None
    prev = chain.head if chain.head is not None else opening_hash(
        request.request_id, request.user_id, request.reason, request.requested_at)
    chain.head = prev
    for row in sorted(pending, key=lambda r: (r.recorded_at or now, r.position)):
        append_link(session, request.request_id, chain, row.service, row.report or {}, now=now)


def append_link(session: Session, request_id: str, chain: Chain, service: str, payload: dict[str, Any], *,
                now: datetime) -> None:
    """Add one entry after the end of a started chain (`chain.head` set) and move `chain` on to it."""
    assert chain.head is not None
    made = link(chain.head, chain.seq + 1, service, payload)
    session.add(ReceiptEntry(
        request_id=request_id, seq=made.seq, service=made.service, payload=made.payload,
        prev_hash=made.prev_hash, entry_hash=made.entry_hash, recorded_at=now))
    chain.seq, chain.head = made.seq, made.entry_hash


def _chain_hold_in_force(session: Session, request: ErasureRequest, chain: Chain, now: datetime) -> None:
    """A request opened while its user is under a legal hold starts its receipt with that hold."""
    held = batch.hold_in_force(session, request.user_id)
    if held is None:
        return
    assert request.reason is not None and request.requested_at is not None
    if chain.head is None:
        chain.head = opening_hash(request.request_id, request.user_id, request.reason, request.requested_at)
    append_link(session, request.request_id, chain, f"hold {held.id}", {
        "service": f"hold {held.id}", "reason": held.reason, "placed_at": held.placed_at.isoformat()}, now=now)


def _retained_union(request: ErasureRequest) -> list[RetainedCategory]:
    kept: dict[RetainedCategory, None] = {}
    for row in request.slices:
        for item in (row.report or {}).get("retained", []):
            kept[RetainedCategory.model_validate(item)] = None
    return list(kept)


def _complete_if_all_reported(
    request: ErasureRequest, chain: Chain, ctx: Context[LedgerSettings], now: datetime
) -> None:
    """Close the request and emit ErasureCompleted once every slice has reported and the chain is whole."""
    if request.status != OPEN or request.reason is None:
        return
    if any(row.outcome is None for row in request.slices) or chain.head is None:
        return
    shred_user_keys(ctx.session, request, chain, now)
    request.status = COMPLETE
    # The ledger's clock, not the slices': a backup replay selects by this time and must not miss a request
    # because a slice's clock ran behind.
    request.completed_at = now
    request.receipt_hash = chain.head
    ctx.emit(ErasureCompleted(
        request_id=request.request_id, user_id=request.user_id, completed_at=request.completed_at,
        receipt_hash=request.receipt_hash, retained=_retained_union(request), replay=request.replay))
    ctx.log.info("erasure request complete", request_id=request.request_id, receipt_hash=request.receipt_hash)


KEYS_LINK = "keys"


def shred_user_keys(session: Session, request: ErasureRequest, chain: Chain, now: datetime) -> None:
    """Destroy the user's data keys once every slice has read what it needed, and record it in the receipt.

    From then on every sealed copy of the user's data (journals, dead tuples, backups, dead letters) is
    unreadable. Destroying is idempotent, so a redelivery after a failed commit records it again, harmlessly.
    """
    store, subject = key_store(), user_subject(request.user_id)
    store.destroy(subject)
    if batch.may_have_open_rights(session, request.user_id):  # their answers and corrections no longer open
        access.close_for_erased_user(session, request.user_id, now)
        correction.close_for_erased_user(session, request.user_id, now)
    # Counted after destroying, so that a redelivery after a failed commit records the same number.
    destroyed = store.destroyed_keys(subject)
    append_link(session, request.request_id, chain, KEYS_LINK,
                {"service": KEYS_LINK, "step": "data keys destroyed", "keys_destroyed": destroyed,
                 "destroyed_at": now.isoformat()},
                now=now)


def open_erasure_request(event: UserDeregistered, ctx: Context[LedgerSettings]) -> None:
    """Open a request expecting the five slices; fill in a request that an early report already opened."""
    settings: LedgerSettings = ctx.deps
    session, now = ctx.session, datetime.now(UTC)
    request_id = str(event.request_id)
    due = settings.due_at(event.requested_at)
    request, chain = locked_request(session, request_id)
    if request is None:
        request = _new_request(request_id, event.user_id, now, due=due, opened_by=BY_DEREGISTRATION,
                               replay=event.replay)
        session.add(request)
        batch.remember(session, request, chain)
    else:
        _check_same_user(request, event.user_id, ctx.event_id)
        if request.reason is not None:
            ctx.log.info("erasure request already known; deregistration ignored", request_id=request_id,
                         status=request.status)
            return
    request.reason = event.reason
    request.requested_at = event.requested_at
    request.due_at = due
    request.replay = event.replay
    request.original_request_id = str(event.original_request_id) if event.original_request_id else None
    _chain_hold_in_force(session, request, chain, now)
    if batch.may_hold_exports(session, event.user_id):  # an access export holds the user's data: it goes too
        erase_user_exports(session, event.user_id, now)
    early = [row for row in request.slices if row.outcome is not None]
    if early:
        _chain(session, request, chain, early, now)
    ctx.log.info("erasure request opened", request_id=request_id, reason=event.reason,
                 opened_by=request.opened_by, due_at=due.isoformat(), replay=event.replay,
                 already_reported=len(early))
    _complete_if_all_reported(request, chain, ctx, now)


def record_slice_report(event: ErasureSliceReported, ctx: Context[LedgerSettings]) -> None:
    """Record a slice's report (first report wins) and close the request when it was the last one."""
    settings: LedgerSettings = ctx.deps
    session, now = ctx.session, datetime.now(UTC)
    request_id = str(event.request_id)
    request, chain = locked_request(session, request_id)
    if request is None:
        # Its deregistration has not reached us yet; the provisional deadline keeps it from being forgotten.
        request = _new_request(request_id, event.user_id, now, due=settings.due_at(now),
                               opened_by=BY_REPORT, replay=event.replay)
        session.add(request)
        batch.remember(session, request, chain)
        ctx.log.info("erasure request opened by an early slice report", request_id=request_id,
                     service=event.service)
    _check_same_user(request, event.user_id, ctx.event_id)
    row = next(r for r in request.slices if r.service == event.service)
    payload = report_payload(event)
    if row.outcome is not None:
        same = {**(row.report or {}), "reported_at": None} == {**payload, "reported_at": None}
        if same:
            ctx.log.info("duplicate slice report ignored", request_id=request_id, service=event.service)
        else:
            ctx.log.warning("a different report for an already reported slice; the first one stands",
                            request_id=request_id, service=event.service, first_outcome=row.outcome,
                            ignored_outcome=event.outcome)
        return
    row.outcome, row.reported_at, row.recorded_at, row.report = event.outcome, event.reported_at, now, payload
    ctx.log.info("slice reported", request_id=request_id, service=event.service, outcome=event.outcome)
    if request.reason is not None:
        _chain(session, request, chain, [row], now)
    _complete_if_all_reported(request, chain, ctx, now)


HANDLERS: Handlers[LedgerSettings] = {
    UserDeregistered: open_erasure_request,
    ErasureSliceReported: record_slice_report,
    ErasureSliceRetrying: record_slice_failure,
    AccessRequested: open_access_request,
    AccessSliceAnswered: record_access_answer,
    PersonalDataCorrected: open_correction,
    CorrectionSliceReported: record_correction_report,
}
