"""Erasure requests by e-mail, as the privacy policy offers: subject "Unregister account: <address>"; and access
requests (GDPR Art. 15) the same way: subject "Access request: <address>", confirmed alike, staging AccessRequested.

A request is acted on only if the subject is exactly that, the address belongs to an account, and the
sender (From) is that same address. A From header alone proves nothing: anyone can write any From. Two
things make up for it. The confirmation link goes to the account's own address, so a forged request cannot
erase anyone without that mailbox; and with `intake_require_dmarc` our own MTA's Authentication-Results must
say dmarc=pass, which ties the From domain to DKIM/SPF of the sending server. Nothing is erased before the
link is used; the confirmation stages `UserDeregistered` in the outbox in the transaction that spends the
token, so a crash can neither lose the event nor send it twice.
"""

from __future__ import annotations

import email
import email.policy
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import Message
from email.utils import getaddresses

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from schemas import AccessRequested, UserDeregistered
from services.account.accounts import (
    AccountError,
    canonical_email,
    find_user_by_email,
    hash_token,
    new_session_token,
)
from services.account.mails import ACCESS_CONFIRM_SUBJECT, CONFIRM_SUBJECT, confirmation_body, send
from services.account.models import IntakeRequest, User
from services.account.publishing import stage_event
from services.account.settings import AccountSettings
from shared.errors import PermanentError, TransientError
from shared.logging import get_logger
from shared.settings import RuntimeSettings

log = get_logger(__name__)

SUBJECT = re.compile(r"^\s*(?:(?P<erasure>unregister\s+account)|(?P<access>access\s+request))\s*:\s*<?\s*"
                     r"(?P<address>[^\s<>]+)\s*>?\s*$", re.IGNORECASE)
TOKEN = re.compile(r"^[A-Za-z0-9_-]{20,100}$")
COMMENT = re.compile(r"\([^()]*\)")

REFUSALS = {
    "malformed": "the message cannot be read as an e-mail",
    "not_a_request": 'the subject is not "Unregister account: <address>" or "Access request: <address>"',
    "invalid_address": "the address in the subject is not a valid e-mail address",
    "sender_mismatch": "the sender (From) is not the address named in the subject",
    "dmarc_failed": "our mail server did not record dmarc=pass for the sender",
    "unknown_account": "no account is registered with the address named in the subject",
}
CONFIRM_REFUSALS = {
    "unknown_token": "this confirmation code is not valid",
    "token_used": "this confirmation code has already been used",
    "token_expired": "this confirmation code has expired; send the request again",
    "account_gone": "the account no longer exists",
}


class IntakeRejected(Exception):
    """A message that is not an erasure request we may act on; `reason` is a code, the text names no one."""

    def __init__(self, reason: str) -> None:
        super().__init__(REFUSALS[reason])
        self.reason = reason


class ConfirmRefused(Exception):
    """A confirmation code that is unknown, spent or expired, or whose account is already gone."""

    def __init__(self, reason: str) -> None:
        super().__init__(CONFIRM_REFUSALS[reason])
        self.reason = reason


@dataclass(frozen=True)
class Accepted:
    """A request that passed every check; `token` is the only copy of the code and goes out by mail."""

    request_id: str
    user_id: str
    email: str
    token: str
    expires_at: datetime
    kind: str = "erasure"
    """erasure ("Unregister account: …") or access ("Access request: …")."""


@dataclass(frozen=True)
class Confirmed:
    """A confirmed request and the id of the UserDeregistered event staged for it."""

    request_id: str
    user_id: str
    event_id: str


def _utc(at: datetime | None) -> datetime:
    if at is None:
        return datetime.now(UTC)
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def _only(message: Message, header: str) -> str:
    values = message.get_all(header) or []
    if len(values) != 1:
        raise IntakeRejected("not_a_request" if header == "Subject" else "sender_mismatch")
    return str(values[0])


def parse_message(raw: bytes) -> Message:
    """The RFC 5322 message in `raw`, or IntakeRejected('malformed')."""
    if not raw.strip():
        raise IntakeRejected("malformed")
    try:
        message = email.message_from_bytes(raw, policy=email.policy.default)
    except Exception as exc:  # the parser should not raise, but a hostile message must not crash us
        raise IntakeRejected("malformed") from exc
    if not message.keys():
        raise IntakeRejected("malformed")
    return message


def requested_address(message: Message) -> str:
    """The canonical address named in "Unregister account: <address>" (or "Access request: <address>");
    IntakeRejected otherwise."""
    return requested(message)[1]


def requested(message: Message) -> tuple[str, str]:
    """What the subject asks for ("erasure" or "access") and the canonical address it names; IntakeRejected
    otherwise."""
    match = SUBJECT.match(_only(message, "Subject"))
    if match is None:
        raise IntakeRejected("not_a_request")
    try:
        return ("access" if match.group("access") else "erasure"), canonical_email(match.group("address"))
    except AccountError:
        raise IntakeRejected("invalid_address") from None


def sender_address(message: Message) -> str:
    """The single canonical From address; IntakeRejected('sender_mismatch') if absent, several or invalid."""
    addresses = [address for _name, address in getaddresses([_only(message, "From")]) if address]
    if len(addresses) != 1:
        raise IntakeRejected("sender_mismatch")
    try:
        return canonical_email(addresses[0])
    except AccountError:
        raise IntakeRejected("sender_mismatch") from None


def dmarc_passed(message: Message, authserv_id: str, from_domain: str) -> bool:
    """Whether our own MTA's Authentication-Results (RFC 8601) says dmarc=pass for this From domain.

    Results under any other authserv-id are ignored: anyone can write such a header. Our MTA prepends its
    own and removes look-alikes it receives, so the first one under our id is the one that counts.
    """
    for header in message.get_all("Authentication-Results") or []:
        parts = [part.strip() for part in COMMENT.sub(" ", str(header)).split(";")]
        server = parts[0].split()
        if not server or server[0].lower() != authserv_id.lower():
            continue
        for part in parts[1:]:
            words = part.split()
            if words and words[0].lower().startswith("dmarc="):
                props = dict(word.lower().split("=", 1) for word in words[1:] if "=" in word)
                domain = props.get("header.from", from_domain)
                return words[0].lower() == "dmarc=pass" and domain == from_domain.lower()
        return False
    return False


def accept_request(session: Session, raw: bytes, settings: AccountSettings, *, now: datetime | None = None) -> Accepted:
    """Check an inbound request and record it with the hash of a fresh single-use token; IntakeRejected if not.

    The sender check compares the From header, which anyone can forge; what protects the account is that
    the token goes to its own address (and, when required, our MTA's dmarc=pass).
    """
    now = _utc(now)
    message = parse_message(raw)
    kind, address = requested(message)
    sender = sender_address(message)
    if settings.intake_require_dmarc and not dmarc_passed(
            message, settings.intake_authserv_id, sender.rpartition("@")[2]):
        raise IntakeRejected("dmarc_failed")
    if sender != address:
        raise IntakeRejected("sender_mismatch")
    user = find_user_by_email(session, address)
    if user is None:
        raise IntakeRejected("unknown_account")
    token = new_session_token()
    request = IntakeRequest(request_id=str(uuid.uuid4()), user_id=user.user_id, token_sha256=hash_token(token),
                            received_at=now, expires_at=now + settings.token_lifetime, confirmed_at=None, kind=kind)
    session.add(request)
    session.flush()
    return Accepted(request.request_id, user.user_id, user.email, token, request.expires_at, kind)


def receive_by_email(
    sessions: Callable[[], Session], raw: bytes, settings: AccountSettings, *, now: datetime | None = None
) -> Accepted:
    """Record a request and mail its confirmation link to the account's address.

    IntakeRejected for a message we may not act on (logged by reason only); TransientError/PermanentError
    if the relay refuses the mail, in which case the request is withdrawn so no unsent token lingers.
    """
    try:
        with sessions() as session, session.begin():
            accepted = accept_request(session, raw, settings, now=now)
    except IntakeRejected as exc:
        log.info("e-mail erasure request refused", reason=exc.reason)
        raise
    body = confirmation_body(settings, token=accepted.token, request_id=accepted.request_id,
                             expires_at=accepted.expires_at, kind=accepted.kind)
    try:
        send(settings, accepted.email, ACCESS_CONFIRM_SUBJECT if accepted.kind == "access" else CONFIRM_SUBJECT,
             body)
    except (TransientError, PermanentError) as exc:
        with sessions() as session, session.begin():
            session.execute(delete(IntakeRequest).where(IntakeRequest.request_id == accepted.request_id))
        log.warning("confirmation mail not sent; request withdrawn", request_id=accepted.request_id,
                    user_id=accepted.user_id, error=str(exc))
        raise
    log.info("e-mail erasure request received; confirmation sent", request_id=accepted.request_id,
             user_id=accepted.user_id, expires_at=accepted.expires_at.isoformat())
    return accepted


def pending_request(session: Session, token: str, *, now: datetime | None = None) -> IntakeRequest:
    """The unconfirmed, unexpired request this code belongs to, whose account still exists; else ConfirmRefused."""
    now = _utc(now)
    if not TOKEN.match(token or ""):
        raise ConfirmRefused("unknown_token")
    request = session.execute(
        select(IntakeRequest).where(IntakeRequest.token_sha256 == hash_token(token))).scalar_one_or_none()
    if request is None:
        raise ConfirmRefused("unknown_token")
    if request.confirmed_at is not None:
        raise ConfirmRefused("token_used")
    if _utc(request.expires_at) <= now:
        raise ConfirmRefused("token_expired")
    if session.get(User, request.user_id) is None:
        raise ConfirmRefused("account_gone")
    return request


def confirm_request(
    session: Session, token: str, runtime: RuntimeSettings, *, now: datetime | None = None
) -> Confirmed:
    """Spend the code and stage UserDeregistered (reason user_request), or AccessRequested for an access request,
    in the same transaction."""
    now = _utc(now)
    request = pending_request(session, token, now=now)
    # The conditional update is what makes the code single-use when two confirmations race.
    spent = session.execute(
        update(IntakeRequest)
        .where(IntakeRequest.request_id == request.request_id, IntakeRequest.confirmed_at.is_(None))
        .values(confirmed_at=now)
        .execution_options(synchronize_session=False)
    )
    if spent.rowcount != 1:
        raise ConfirmRefused("token_used")
    event: UserDeregistered | AccessRequested
    if request.kind == "access":
        event = AccessRequested(user_id=request.user_id, request_id=uuid.UUID(request.request_id),
                                requested_at=_utc(request.received_at))
    else:
        event = UserDeregistered(user_id=request.user_id, request_id=uuid.UUID(request.request_id),
                                 reason="user_request", requested_at=_utc(request.received_at))
    staged = stage_event(session, event, runtime)
    log.info("e-mail request confirmed", kind=request.kind, request_id=request.request_id, user_id=request.user_id,
             event_id=staged.event_id)
    return Confirmed(request.request_id, request.user_id, staged.event_id)


def confirm_by_token(
    sessions: Callable[[], Session], token: str, runtime: RuntimeSettings, *, now: datetime | None = None
) -> Confirmed:
    """confirm_request in its own transaction; a refusal is logged by reason only."""
    try:
        with sessions() as session, session.begin():
            return confirm_request(session, token, runtime, now=now)
    except ConfirmRefused as exc:
        log.info("erasure confirmation refused", reason=exc.reason)
        raise


def drop_pending_requests(session: Session, user_id: str) -> int:
    """Forget the user's unconfirmed requests (their codes must not outlive the account); return how many."""
    result = session.execute(
        delete(IntakeRequest).where(IntakeRequest.user_id == user_id, IntakeRequest.confirmed_at.is_(None))
        .execution_options(synchronize_session="fetch"))
    return int(result.rowcount or 0)
