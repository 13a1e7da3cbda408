"""Operator decisions on legal time, written to the ledger: extending a request (Art. 12(3)) and legal holds.

Each decision is recorded on the request's row (or the holds table) and as a link of the request's receipt
chain, so the receipt shows it and any later change to it breaks the chain. Links are added under the same
row lock the handlers take (`locked_request`), so a decision and a slice report never take the same place in
the chain. Reasons are free text written by an operator: they must name no personal data.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from schemas import LegalHoldChanged
from services.common.deadline import MAX_EXTENSION_MONTHS
from services.ledger.handlers import Chain, append_link, locked_request
from services.ledger.models import OPEN, ErasureRequest, LegalHold, metadata
from services.ledger.receipt import opening_hash
from services.ledger.settings import LedgerSettings
from shared.outbox import stage
from shared.settings import RuntimeSettings

EXTENSION = "extension"
MAILED, NO_ADDRESS, MAIL_FAILED = "mailed", "no_address", "mail_failed"


class Refused(Exception):
    """The decision is not allowed now; the message says why, for the operator."""


@dataclass(frozen=True)
class Extended:
    """An extension as recorded: the request, its user, the new deadline, the further months and why."""

    request_id: str
    user_id: str
    due_at: datetime
    months: int
    reason: str


class OpenRequest(Protocol):
    """What the checks read of a request: an ORM row or a `RequestStatus`."""

    @property
    def status(self) -> str: ...
    @property
    def reason(self) -> str | None: ...
    @property
    def requested_at(self) -> datetime | None: ...


R = TypeVar("R", bound=OpenRequest)


def require_started_and_open(request_id: str, found: R | None) -> R:
    """The request, if it exists, is open and its deregistration event has arrived; Refused otherwise."""
    if found is None:
        raise Refused(f"no erasure request {request_id}")
    if found.status != OPEN:
        raise Refused(f"request {request_id} is complete: every slice has reported")
    if found.reason is None or found.requested_at is None:
        raise Refused(f"request {request_id} awaits its deregistration event: nothing can be done to it yet")
    return found


def _reason(reason: str) -> str:
    reason = reason.strip()
    if not reason:
        raise Refused("give a reason (--reason): it is recorded in the receipt and told to the data subject")
    return reason


def _chain_of(request: ErasureRequest, chain: Chain) -> Chain:
    """The chain to extend: from the opening record when no slice has been chained yet."""
    if chain.head is None:
        assert request.reason is not None and request.requested_at is not None
        return Chain(0, opening_hash(request.request_id, request.user_id, request.reason, request.requested_at))
    return chain


def extend(session: Session, request_id: str, months: int, reason: str, *, now: datetime,
           settings: LedgerSettings) -> Extended:
    """Extend an open request by `months` further months, once, while its first month runs; Refused if not."""
    reason = _reason(reason)
    if not 1 <= months <= MAX_EXTENSION_MONTHS:
        raise Refused(f"an extension adds 1 to {MAX_EXTENSION_MONTHS} further months, not {months}")
    request, chain = locked_request(session, request_id)
    request = require_started_and_open(request_id, request)
    assert request.requested_at is not None
    if request.extension_months:
        raise Refused(f"request {request_id} was already extended by {request.extension_months} month(s) on "
                      f"{request.extended_at:%Y-%m-%d}")
    first_deadline = settings.due_at(request.requested_at)
    if now >= first_deadline:
        raise Refused(f"the first month of request {request_id} ended at {first_deadline:%Y-%m-%d %H:%M} UTC: "
                      "GDPR Art. 12(3) allows an extension only within it")
    due = settings.due_at(request.requested_at, months)
    request.extension_months, request.extension_reason, request.extended_at = months, reason, now
    request.due_at = due
    append_link(session, request.request_id, _chain_of(request, chain), EXTENSION, {
        "service": EXTENSION, "months": months, "reason": reason, "extended_at": now.isoformat(),
        "due_at": due.isoformat()}, now=now)
    return Extended(request.request_id, request.user_id, due, months, reason)


def record_notice(session: Session, request_id: str, outcome: str) -> None:
    """Record whether the data subject was told of the extension (mailed, no_address, mail_failed)."""
    request = session.get(ErasureRequest, request_id)
    if request is not None:
        request.extension_notice = outcome


def active_hold(session: Session, user_id: str) -> LegalHold | None:
    """The user's hold in force, if any."""
    return session.scalars(select(LegalHold).where(LegalHold.user_id == user_id, LegalHold.released_at.is_(None))
                           .order_by(LegalHold.id.desc())).first()


def _chain_on_open_requests(session: Session, user_id: str, service: str, payload: dict[str, object],
                            now: datetime) -> list[str]:
    """Add a link to the receipt chain of each of the user's open requests that has started one."""
    ids = session.scalars(select(ErasureRequest.request_id).where(
        ErasureRequest.user_id == user_id, ErasureRequest.status == OPEN,
        ErasureRequest.reason.is_not(None)).order_by(ErasureRequest.opened_at)).all()
    for request_id in ids:
        request, chain = locked_request(session, request_id)
        if request is not None and request.status == OPEN:
            append_link(session, request_id, _chain_of(request, chain), service, {"service": service, **payload},
                        now=now)
    return list(ids)


def _announce(session: Session, user_id: str, hold_id: int, now: datetime, runtime: RuntimeSettings | None, *,
              held: bool) -> None:
    """Tell the slices of a hold (they defer the user's erasure) or its release (they resume it), via the outbox."""
    runtime = runtime if runtime is not None else RuntimeSettings()
    stage(session, metadata.tables["outbox"],
          LegalHoldChanged(user_id=user_id, hold_id=hold_id, held=held, changed_at=now),
          source=runtime.source, keyring=runtime.keyring, key_id=runtime.signing_key_id)


def hold(session: Session, user_id: str, reason: str, now: datetime,
         runtime: RuntimeSettings | None = None) -> tuple[int, list[str]]:
    """Place a hold on a user's erasure; the hold's number and the open requests it was chained onto.

    The slices hear of it through the ledger's outbox and defer the user's erasure until the release."""
    reason = _reason(reason)
    if active_hold(session, user_id) is not None:
        raise Refused(f"user {user_id} is already under a legal hold; release it first to change the reason")
    placed = LegalHold(user_id=user_id, reason=reason, placed_at=now)
    session.add(placed)
    session.flush()
    chained = _chain_on_open_requests(session, user_id, f"hold {placed.id}",
                                      {"reason": reason, "placed_at": now.isoformat()}, now)
    _announce(session, user_id, placed.id, now, runtime, held=True)
    return placed.id, chained


def release(session: Session, user_id: str, now: datetime,
            runtime: RuntimeSettings | None = None) -> tuple[int, list[str]]:
    """Release the user's hold; the hold's number and the open requests the release was chained onto.

    The slices hear of it through the ledger's outbox and erase what they deferred."""
    placed = active_hold(session, user_id)
    if placed is None:
        raise Refused(f"user {user_id} is under no legal hold")
    placed.released_at = now
    chained = _chain_on_open_requests(session, user_id, f"release {placed.id}",
                                      {"released_at": now.isoformat()}, now)
    _announce(session, user_id, placed.id, now, runtime, held=False)
    return placed.id, chained
