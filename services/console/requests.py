"""The request list: filters and keyset paging over the ledger, in (due_at, request_id) order.

Keyset paging reads one index range per page (`ix_erasure_requests_due_at_request_id`, or the one led by
status), so page 2,000 of 100,000 requests costs what page 1 does; OFFSET would scan everything before it.
The cursor is opaque to people (base64 of the last row's due_at and id) and carries no personal data.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import and_, select, tuple_
from sqlalchemy.orm import Session

from services.ledger.models import COMPLETE, OPEN, ErasureRequest, SliceReport
from services.ledger.queries import RequestStatus, SliceFailure, held_users, request_status, requests_for_user
from services.ledger.rights import missing_slices, open_rights_requests, rights_state

STATES = ("open", "complete", "all")
FLAGS = ("", "overdue", "due_soon", "stuck")


class BadFilter(ValueError):
    """A filter or cursor that cannot be read; the message says which."""


@dataclass(frozen=True)
class Filters:
    """What the list shows: a state, an optional flag, and where the page starts."""

    state: str = "open"
    flag: str = ""
    after: str = ""

    @classmethod
    def parse(cls, state: str | None, flag: str | None, after: str | None) -> Filters:
        state, flag = state or "open", flag or ""
        if state not in STATES:
            raise BadFilter(f"state must be one of {', '.join(STATES)}")
        if flag not in FLAGS:
            raise BadFilter("flag must be overdue, due_soon or stuck")
        if flag and state == "complete":
            raise BadFilter("overdue, due soon and stuck apply to open requests only")
        return cls(state, flag, after or "")


@dataclass(frozen=True)
class Row:
    """One line of the list."""

    request_id: str
    status: str
    reason: str | None
    opened_at: datetime
    due_at: datetime
    completed_at: datetime | None
    missing: tuple[str, ...]
    overdue: bool
    stuck: bool
    held: bool = False
    """Its user is under a legal hold: shown as held, not as overdue or stuck."""
    extended: bool = False
    failures: tuple[tuple[str, SliceFailure], ...] = ()
    """The last failure of each missing slice that failed: the outside system, the attempt, the next retry."""

    def waiting_for(self) -> list[str]:
        """Each missing slice, with its failure when it has failed."""
        failed = dict(self.failures)
        return [f"{name} ({failed[name].summary()})" if name in failed else name for name in self.missing]

    def days_left(self, now: datetime) -> float:
        return (self.due_at - now).total_seconds() / 86400


@dataclass(frozen=True)
class Page:
    rows: list[Row]
    next_cursor: str | None


def encode_cursor(due_at: datetime, request_id: str) -> str:
    return base64.urlsafe_b64encode(f"{due_at.astimezone(UTC).isoformat()}|{request_id}".encode()).decode()


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        due, _, request_id = base64.urlsafe_b64decode(cursor.encode()).decode().partition("|")
        when = datetime.fromisoformat(due)
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise BadFilter("the page cursor is not one this console made; start from the first page") from exc
    if when.tzinfo is None or not request_id:
        raise BadFilter("the page cursor is not one this console made; start from the first page")
    return when, request_id


LIST_COLUMNS = (ErasureRequest.request_id, ErasureRequest.status, ErasureRequest.reason, ErasureRequest.opened_at,
                ErasureRequest.due_at, ErasureRequest.completed_at, ErasureRequest.user_id,
                ErasureRequest.extension_months)


def _missing(session: Session, request_ids: list[str]
             ) -> tuple[dict[str, tuple[str, ...]], dict[str, tuple[tuple[str, SliceFailure], ...]]]:
    """The slices each of these requests still waits for, and the last failure of those that failed (no report
    is read)."""
    found: dict[str, list[str]] = {}
    failed: dict[str, list[tuple[str, SliceFailure]]] = {}
    if request_ids:
        rows = session.execute(select(SliceReport.request_id, SliceReport.service, SliceReport.attempts,
                                      SliceReport.failing_system, SliceReport.last_error, SliceReport.last_failed_at,
                                      SliceReport.next_retry_at)
                               .where(SliceReport.request_id.in_(request_ids), SliceReport.outcome.is_(None))
                               .order_by(SliceReport.request_id, SliceReport.position))
        for request_id, service, attempts, system, error, failed_at, next_retry_at in rows:
            found.setdefault(request_id, []).append(service)
            if failed_at is not None:
                failed.setdefault(request_id, []).append(
                    (service, SliceFailure(attempts or 0, system, error or "", failed_at, next_retry_at)))
    return {k: tuple(v) for k, v in found.items()}, {k: tuple(v) for k, v in failed.items()}


def page(session: Session, filters: Filters, *, now: datetime, size: int, stuck_after: timedelta,
         due_soon: timedelta) -> Page:
    """One page of requests in due order, starting after the cursor."""
    query = select(*LIST_COLUMNS)
    if filters.state != "all":
        query = query.where(ErasureRequest.status == (OPEN if filters.state == "open" else COMPLETE))
    if filters.flag == "overdue":
        query = query.where(ErasureRequest.due_at < now)
    elif filters.flag == "due_soon":
        query = query.where(and_(ErasureRequest.due_at >= now, ErasureRequest.due_at < now + due_soon))
    elif filters.flag == "stuck":
        query = query.where(ErasureRequest.opened_at < now - stuck_after)
    if filters.after:
        due, request_id = decode_cursor(filters.after)
        query = query.where(tuple_(ErasureRequest.due_at, ErasureRequest.request_id) > tuple_(due, request_id))
    found = session.execute(query.order_by(ErasureRequest.due_at, ErasureRequest.request_id).limit(size + 1)).all()
    shown = found[:size]
    missing, failures = _missing(session, [r.request_id for r in shown if r.status == OPEN])
    held = held_users(session)
    rows = []
    for r in shown:
        is_held = r.status == OPEN and r.user_id in held
        rows.append(Row(r.request_id, r.status, r.reason, r.opened_at, r.due_at, r.completed_at,
                        missing.get(r.request_id, ()), overdue=r.status == OPEN and not is_held and r.due_at < now,
                        stuck=r.status == OPEN and not is_held and r.opened_at < now - stuck_after, held=is_held,
                        extended=bool(r.extension_months), failures=failures.get(r.request_id, ())))
    more = len(found) > size
    return Page(rows, encode_cursor(rows[-1].due_at, rows[-1].request_id) if more and rows else None)


@dataclass(frozen=True)
class RightsRow:
    """One open access or correction request: its kind, state and the slices it still waits for."""

    kind: str
    request_id: str
    state: str
    opened_at: datetime
    due_at: datetime
    missing: tuple[str, ...]


def open_rights(session: Session, *, now: datetime, stuck_after: timedelta, due_soon: timedelta) -> list[RightsRow]:
    """The open access and correction requests in due order, each with its state (as `status --overdue` counts)."""
    rows = [RightsRow(kind, r.request_id, rights_state(r, now, stuck_after, due_soon), r.opened_at, r.due_at,
                      missing_slices(r))
            for kind, r in open_rights_requests(session)]
    return sorted(rows, key=lambda row: (row.due_at, row.request_id))


def for_user(session: Session, user_id: str) -> list[RequestStatus]:
    """Every request of one user (a handful): found by a POSTed id, so it never appears in a URL."""
    return requests_for_user(session, user_id.strip())


def one(session: Session, request_id: str) -> RequestStatus | None:
    return request_status(session, request_id.strip())
