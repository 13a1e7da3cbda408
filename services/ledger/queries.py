"""Read-only questions about the ledger, as plain functions on a session."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, exists, func, or_, select
from sqlalchemy.orm import Session, selectinload

from services.common.deadline import ErasureDeadline
from services.ledger.models import OPEN, ErasureRequest, LegalHold, SliceReport
from services.ledger.receipt import Entry, VerifyResult, opening_hash, verify_chain
from services.ledger.settings import DEFAULT_STUCK_AFTER


@dataclass(frozen=True)
class SliceFailure:
    """The last failure of a slice that has not reported: where, why, how often, and when it is tried next."""

    attempts: int
    system: str | None
    error: str
    failed_at: datetime
    next_retry_at: datetime | None
    """None: dead-lettered; it waits for an operator (`erasure dlq replay` or `erasure retry --slice`)."""

    @property
    def dead_lettered(self) -> bool:
        return self.next_retry_at is None

    def summary(self) -> str:
        """One line: the system, the attempt, and what happens next."""
        where = self.system or "the slice itself"
        nxt = (f"next retry {self.next_retry_at.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}" if self.next_retry_at
               else "dead-lettered, no automatic retry")
        return f"{where} failed, attempt {self.attempts}, {nxt}"


@dataclass(frozen=True)
class SliceState:
    """One expected slice of a request: its outcome and report, or None while it has not reported."""

    service: str
    outcome: str | None
    reported_at: datetime | None
    report: dict[str, Any] | None
    failure: SliceFailure | None = None
    """The last failure while it has not reported, if any."""

    @property
    def retained(self) -> list[dict[str, Any]]:
        return list((self.report or {}).get("retained", []))

    @property
    def recipients(self) -> list[str]:
        return list((self.report or {}).get("recipients_notified", []))


@dataclass(frozen=True)
class RequestStatus:
    """Everything the ledger knows about one erasure request."""

    request_id: str
    user_id: str
    status: str
    reason: str | None
    requested_at: datetime | None
    opened_at: datetime
    opened_by: str
    due_at: datetime
    replay: bool
    original_request_id: str | None
    completed_at: datetime | None
    receipt_hash: str | None
    slices: tuple[SliceState, ...]
    extension_months: int = 0
    extension_reason: str | None = None
    extended_at: datetime | None = None
    extension_notice: str | None = None
    hold_reason: str | None = None
    """The reason of the user's legal hold in force, None when there is none."""
    internal_due_at: datetime | None = None

    @property
    def missing(self) -> tuple[str, ...]:
        """Slices that have not reported yet."""
        return tuple(s.service for s in self.slices if s.outcome is None)

    @property
    def awaiting_deregistration(self) -> bool:
        """Opened by an early slice report; its UserDeregistered has not reached the ledger yet."""
        return self.reason is None


@dataclass(frozen=True)
class OverdueRequest:
    """An open request past its deadline ("past_due"), with a slice silent too long ("stuck"), past its
    internal due date ("due_soon"), or any of these while its user is under a legal hold ("held")."""

    request_id: str
    user_id: str
    why: str
    due_at: datetime
    opened_at: datetime
    missing: tuple[str, ...]
    awaiting_deregistration: bool
    failures: tuple[tuple[str, SliceFailure], ...] = ()
    """The last failure of each missing slice that has failed, by slice."""
    kind: str = "erasure"
    """erasure, access or correction."""


@dataclass(frozen=True)
class CompletedRequest:
    """A request the ledger closed at `completed_at` (when it recorded the last of its slice reports)."""

    request_id: str
    user_id: str
    completed_at: datetime
    replay: bool


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("pass a timezone-aware instant")
    return value.astimezone(UTC)


def _failure(row: SliceReport) -> SliceFailure | None:
    if row.outcome is not None or row.last_failed_at is None:
        return None
    return SliceFailure(row.attempts or 0, row.failing_system, row.last_error or "", row.last_failed_at,
                        row.next_retry_at)


def _status(request: ErasureRequest, hold: str | None = None) -> RequestStatus:
    return RequestStatus(
        request_id=request.request_id, user_id=request.user_id, status=request.status, reason=request.reason,
        requested_at=request.requested_at, opened_at=request.opened_at, opened_by=request.opened_by,
        due_at=request.due_at, replay=request.replay, original_request_id=request.original_request_id,
        completed_at=request.completed_at, receipt_hash=request.receipt_hash,
        slices=tuple(SliceState(s.service, s.outcome, s.reported_at, s.report, _failure(s)) for s in request.slices),
        extension_months=request.extension_months or 0, extension_reason=request.extension_reason,
        extended_at=request.extended_at, extension_notice=request.extension_notice, hold_reason=hold,
        internal_due_at=ErasureDeadline().internal_due_at(_received(request)),
    )


def _hold_reason(session: Session, user_id: str) -> str | None:
    return session.scalars(select(LegalHold.reason).where(LegalHold.user_id == user_id,
                                                          LegalHold.released_at.is_(None))).first()


def held_users(session: Session) -> set[str]:
    """Users under a legal hold now."""
    return set(session.scalars(select(LegalHold.user_id).where(LegalHold.released_at.is_(None))))


def holds_of(session: Session, user_id: str) -> list[LegalHold]:
    """Every legal hold of a user, placed and released, oldest first."""
    return list(session.scalars(select(LegalHold).where(LegalHold.user_id == user_id).order_by(LegalHold.id)))


def request_status(session: Session, request_id: str) -> RequestStatus | None:
    """The status of one request, or None if the ledger has never heard of it."""
    request = session.get(ErasureRequest, str(request_id), options=[selectinload(ErasureRequest.slices)])
    return _status(request, _hold_reason(session, request.user_id)) if request is not None else None


def requests_for_user(session: Session, user_id: str) -> list[RequestStatus]:
    """Every request for a user, oldest first (a replay after a backup restore is a request of its own)."""
    rows = session.scalars(
        select(ErasureRequest).where(ErasureRequest.user_id == user_id)
        .options(selectinload(ErasureRequest.slices)).order_by(ErasureRequest.opened_at)
    ).all()
    hold = _hold_reason(session, user_id)
    return [_status(r, hold) for r in rows]


# The state of a request for operators and the gauge, one per request: the first that applies, in this order.
COMPLETED, HELD, OVERDUE, STUCK, DUE_SOON, STILL_OPEN = "completed", "held", "overdue", "stuck", "due_soon", "open"
STATES = (STILL_OPEN, DUE_SOON, OVERDUE, STUCK, HELD, COMPLETED)
_WHY = {OVERDUE: "past_due", STUCK: "stuck", DUE_SOON: "due_soon", HELD: "held"}


def _received(request: ErasureRequest) -> datetime:
    """When the request was received: its event's time, or when an early report opened it."""
    return request.requested_at or request.opened_at


def last_progress(request: ErasureRequest) -> datetime:
    """When the request last moved: its opening or its latest slice report, as the ledger recorded them."""
    return max([request.opened_at, *(s.recorded_at for s in request.slices if s.recorded_at is not None)])


def _silent_since(cutoff: datetime) -> Any:
    """SQL: opened before `cutoff` and no slice report recorded since."""
    return and_(ErasureRequest.opened_at < cutoff, ~exists().where(
        SliceReport.request_id == ErasureRequest.request_id, SliceReport.recorded_at >= cutoff))


def request_state(request: ErasureRequest, now: datetime, stuck_after: timedelta,
                  internal_due: timedelta | None, held: set[str] | frozenset[str] = frozenset()) -> str:
    """completed; else held (its user is under a legal hold), overdue (past the legal deadline), stuck,
    due_soon (past the internal due date), open."""
    if request.status != OPEN:
        return COMPLETED
    if request.user_id in held:
        return HELD
    if request.due_at < now:
        return OVERDUE
    if last_progress(request) < now - stuck_after:
        return STUCK
    if internal_due is not None and _received(request) < now - internal_due:
        return DUE_SOON
    return STILL_OPEN


def _listed(session: Session, condition: Any, now: datetime, stuck_after: timedelta,
            internal_due: timedelta | None) -> list[OverdueRequest]:
    rows = session.scalars(
        select(ErasureRequest).where(ErasureRequest.status == OPEN, condition)
        .options(selectinload(ErasureRequest.slices)).order_by(ErasureRequest.due_at, ErasureRequest.request_id)
    ).all()
    found, held = [], held_users(session)
    for request in rows:
        state = _status(request)
        found.append(OverdueRequest(
            request_id=state.request_id, user_id=state.user_id,
            why=_WHY.get(request_state(request, now, stuck_after, internal_due, held), "open"),
            due_at=state.due_at, opened_at=state.opened_at, missing=state.missing,
            awaiting_deregistration=state.awaiting_deregistration,
            failures=tuple((s.service, s.failure) for s in state.slices if s.failure is not None),
        ))
    return found


def overdue(session: Session, now: datetime, stuck_after: timedelta = DEFAULT_STUCK_AFTER) -> list[OverdueRequest]:
    """Open requests past their deadline, or with no progress (opening, slice report) for `stuck_after`."""
    now = _utc(now)
    return _listed(session, or_(ErasureRequest.due_at < now, _silent_since(now - stuck_after)),
                   now, stuck_after, None)


def due_soon(session: Session, now: datetime, internal_due: timedelta,
             stuck_after: timedelta = DEFAULT_STUCK_AFTER) -> list[OverdueRequest]:
    """Open requests past their internal due date (received longer than `internal_due` ago), by deadline.

    `why` says how far each has gone: due_soon, or past_due and stuck for those already listed by `overdue`.
    """
    now = _utc(now)
    received = func.coalesce(ErasureRequest.requested_at, ErasureRequest.opened_at)
    return _listed(session, received < now - internal_due, now, stuck_after, internal_due)


def state_counts(session: Session, now: datetime, stuck_after: timedelta,
                 internal_due: timedelta) -> dict[str, int]:
    """How many requests are in each state; completed ones are counted in the database, open ones read."""
    now = _utc(now)
    counts = dict.fromkeys(STATES, 0)
    counts[COMPLETED] = session.scalar(
        select(func.count()).select_from(ErasureRequest).where(ErasureRequest.status != OPEN)) or 0
    held = held_users(session)
    for request in session.scalars(select(ErasureRequest).where(ErasureRequest.status == OPEN)
                                   .options(selectinload(ErasureRequest.slices))):
        counts[request_state(request, now, stuck_after, internal_due, held)] += 1
    return counts


def receipt_entries(session: Session, request_id: str) -> list[Entry]:
    """The stored receipt chain of a request, in order."""
    request = session.get(ErasureRequest, str(request_id))
    if request is None:
        return []
    return [Entry(e.seq, e.service, e.payload, e.prev_hash, e.entry_hash) for e in request.entries]


def _report_differing_from_chain(request: ErasureRequest, entries: list[Entry]) -> VerifyResult | None:
    """The status table must say what the receipt says: a slice row edited after the fact is caught here."""
    reports = {row.service: row.report for row in request.slices}
    for entry in entries:
        if entry.service in reports and json.loads(entry.payload) != reports[entry.service]:
            return VerifyResult(False, entry.seq, f"the recorded report of {entry.service} differs from its "
                                                  "receipt entry")
    return None


def verify_receipt(session: Session, request_id: str) -> VerifyResult | None:
    """Check a request's receipt chain against its opening record and receipt hash; None if unknown."""
    request = session.get(ErasureRequest, str(request_id))
    if request is None:
        return None
    entries = receipt_entries(session, request.request_id)
    if request.reason is None or request.requested_at is None:
        if entries:
            return VerifyResult(False, entries[0].seq, "entries exist before the request's opening record")
        return VerifyResult(True, None, "no receipt yet: the request awaits its deregistration event")
    opening = opening_hash(request.request_id, request.user_id, request.reason, request.requested_at)
    result = verify_chain(entries, opening=opening, head=request.receipt_hash)
    if not result.ok:
        return result
    mismatch = _report_differing_from_chain(request, entries)
    if mismatch is not None:
        return mismatch
    if request.status == OPEN:
        if request.receipt_hash is not None:
            return VerifyResult(False, None, "an open request carries a receipt hash")
        return VerifyResult(True, None, f"{len(entries)} of {len(request.slices)} entries intact; still open")
    if request.receipt_hash is None:
        return VerifyResult(False, None, "a complete request without a receipt hash")
    slices = {row.service for row in request.slices}
    reported = sum(1 for e in entries if e.service in slices)
    if reported != len(slices):
        return VerifyResult(False, None, f"complete, but the chain holds {reported} of {len(slices)} slice reports")
    return result


def completed_since(session: Session, since: datetime) -> list[CompletedRequest]:
    """Requests completed at or after `since`, oldest first: whose erasure a backup from then predates."""
    rows = session.scalars(
        select(ErasureRequest).where(ErasureRequest.completed_at >= _utc(since))
        .order_by(ErasureRequest.completed_at, ErasureRequest.request_id)
    ).all()
    return [CompletedRequest(r.request_id, r.user_id, r.completed_at, r.replay)
            for r in rows if r.completed_at is not None]
