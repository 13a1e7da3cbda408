"""Correction requests (GDPR Art. 16, 19) in the ledger: opened, each slice's report kept, closed with a receipt.

The receipt hash chains the opening record and every slice's report (outcome, fields updated, recipients told),
as an erasure's receipt does; it names every recipient notified. Only field names are kept, never values.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from schemas import SLICE_SERVICES, CorrectionSliceReported, PersonalDataCorrected
from services.ledger.models import COMPLETE, OPEN, CorrectionPart, CorrectionRequest
from services.ledger.receipt import link, opening_hash
from services.ledger.rights import known, locked_with_parts
from services.ledger.settings import LedgerSettings
from shared.service import Context

REASON = "correction"


def new_request(event: PersonalDataCorrected, settings: LedgerSettings, now: datetime) -> CorrectionRequest:
    """A new open correction request, due one month (legal time) after its receipt."""
    request = CorrectionRequest(request_id=str(event.request_id), user_id=event.user_id,
                                fields=event.corrected.names(), requested_at=event.requested_at, opened_at=now,
                                due_at=settings.due_at(event.requested_at), status=OPEN)
    request.parts = [CorrectionPart(service=name, position=i) for i, name in enumerate(SLICE_SERVICES)]
    return request


def open_correction(event: PersonalDataCorrected, ctx: Context[LedgerSettings]) -> None:
    """Open the request once (the command that staged the event may have opened it already)."""
    if known(ctx.session, CorrectionRequest, str(event.request_id), event.user_id, ctx.event_id):
        return
    ctx.session.add(new_request(event, ctx.deps, datetime.now(UTC)))
    ctx.log.info("correction request opened", request_id=str(event.request_id), fields=event.corrected.names())


def record_correction_report(event: CorrectionSliceReported, ctx: Context[LedgerSettings]) -> None:
    """Keep a slice's report (first wins); close the request with its receipt when every slice has reported."""
    request_id = str(event.request_id)
    request = locked_with_parts(ctx.session, CorrectionRequest, request_id, event.user_id, ctx.event_id)
    part = next(p for p in request.parts if p.service == event.service)
    if part.outcome is not None:
        ctx.log.info("repeated correction report ignored", request_id=request_id, service=event.service)
        return
    part.outcome, part.corrected = event.outcome, list(event.corrected)
    part.recipients, part.reported_at = list(event.recipients_notified), event.reported_at
    ctx.log.info("correction reported", request_id=request_id, service=event.service, outcome=event.outcome)
    if all(p.outcome is not None for p in request.parts):
        request.status, request.completed_at = COMPLETE, datetime.now(UTC)
        request.receipt_hash = receipt_hash(request)
        ctx.log.info("correction request complete", request_id=request_id, receipt_hash=request.receipt_hash)


def close_for_erased_user(session: Session, user_id: str, now: datetime) -> int:
    """Close the user's open correction requests once their data keys are destroyed: a correction still on its
    way to a slice can no longer be opened there, and the user's data is erased. Each slice that has not reported
    counts as `erased` (as a slice reports for an erased user); the request closes with its receipt. How many."""
    requests = list(session.scalars(select(CorrectionRequest).where(
        CorrectionRequest.user_id == user_id, CorrectionRequest.status == OPEN)
        .options(selectinload(CorrectionRequest.parts))))
    for request in requests:
        for part in request.parts:
            if part.outcome is None:
                part.outcome, part.corrected, part.recipients, part.reported_at = "erased", [], [], now
        request.status, request.completed_at = COMPLETE, now
        request.receipt_hash = receipt_hash(request)
    return len(requests)


def receipt_hash(request: CorrectionRequest) -> str:
    """The hash chain over the opening record and each slice's report, in slice order."""
    head = opening_hash(request.request_id, request.user_id, REASON, request.requested_at)
    for seq, part in enumerate(request.parts, start=1):
        head = link(head, seq, part.service, {
            "service": part.service, "outcome": part.outcome, "corrected": part.corrected or [],
            "recipients_notified": part.recipients or [],
            "reported_at": part.reported_at.isoformat() if part.reported_at else None}).entry_hash
    return head


@dataclass(frozen=True)
class CorrectionStatus:
    """A correction request as operators see it: field names, each slice's outcome and recipients, the receipt."""

    request_id: str
    user_id: str
    status: str
    fields: tuple[str, ...]
    requested_at: datetime
    due_at: datetime
    completed_at: datetime | None
    receipt_hash: str | None
    slices: tuple[tuple[str, str | None, tuple[str, ...], tuple[str, ...]], ...]
    """(slice, outcome or None, fields updated, recipients told)."""

    @property
    def recipients(self) -> tuple[str, ...]:
        return tuple(sorted({r for _s, _o, _f, told in self.slices for r in told}))

    @property
    def missing(self) -> tuple[str, ...]:
        return tuple(name for name, outcome, _f, _r in self.slices if outcome is None)


def correction_status(session: Session, request_id: str) -> CorrectionStatus | None:
    """The status of one correction request, or None if the ledger has never heard of it."""
    request = session.get(CorrectionRequest, request_id.strip(), options=[selectinload(CorrectionRequest.parts)])
    if request is None:
        return None
    return CorrectionStatus(
        request.request_id, request.user_id, request.status, tuple(request.fields), request.requested_at,
        request.due_at, request.completed_at, request.receipt_hash,
        tuple((p.service, p.outcome, tuple(p.corrected or ()), tuple(p.recipients or ())) for p in request.parts))


def verify(session: Session, request_id: str) -> bool | None:
    """Whether a complete request's receipt hash matches its reports; None when unknown or still open."""
    request = session.get(CorrectionRequest, request_id.strip(), options=[selectinload(CorrectionRequest.parts)])
    if request is None or request.status != COMPLETE:
        return None
    return receipt_hash(request) == request.receipt_hash
