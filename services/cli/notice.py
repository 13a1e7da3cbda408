"""Extending a request and telling its data subject: the decision, the extension mail, and its recorded outcome.

The decision is written to the ledger first (`legal.extend`); then the data subject is mailed when the account
service knows an address (the user's account, or the address kept for the completion notice), and the ledger
records whether the mail went, that no address was known, or that it failed. `erasure extend` and the console's
extend action both run `extend_and_tell`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from services.ledger.legal import MAIL_FAILED, MAILED, NO_ADDRESS, Extended, extend, record_notice
from services.ledger.settings import LedgerSettings

EXTENSION_SUBJECT = "Your Loggamera erasure request: more time needed"
T = TypeVar("T")
Write = Callable[[Callable[[Session], T]], T | None]


@dataclass(frozen=True)
class Told:
    """An extension as recorded, what became of the mail (mailed, no_address, mail_failed) and a line for the
    operator."""

    extended: Extended
    outcome: str
    line: str


def extension_body(request_id: str, due_at: datetime, months: int, reason: str) -> str:
    """The mail telling the data subject of an extension, its reason and the new deadline (Art. 12(3))."""
    return (
        "Hello,\n\n"
        f"We need {months} more month(s) to complete the deletion of your personal data, as the General Data\n"
        "Protection Regulation (Art. 12(3)) allows for complex or numerous requests.\n\n"
        f"Reason: {reason}\n\n"
        f"Your request will be completed by {due_at:%Y-%m-%d %H:%M} UTC at the latest.\n\n"
        f"Request id: {request_id}\n\n"
        "Loggamera\n"
    )


def known_address(user_id: str, request_id: str, account: sessionmaker[Session] | None = None) -> str | None:
    """The address the account service knows for this user or request, if any (on `account`, or on the account
    database of the environment)."""
    from services.account.models import CompletionNotice, User
    from shared.db import make_engine, session_factory
    from shared.settings import database_url_for

    engine = None
    if account is None:
        engine = make_engine(database_url_for("account"))
        account = session_factory(engine)
    try:
        with account() as session:
            user = session.get(User, user_id)
            if user is not None:
                return user.email
            notice = session.get(CompletionNotice, request_id)
            return notice.email if notice is not None else None
    finally:
        if engine is not None:
            engine.dispose()


def notify(done: Extended, account: sessionmaker[Session] | None = None) -> tuple[str, str]:
    """Mail the data subject of an extension; the outcome to record and a line for the operator."""
    from services.account.mails import send
    from services.account.settings import AccountSettings
    from shared.errors import PermanentError, TransientError

    try:
        address = known_address(done.user_id, done.request_id, account)
    except SQLAlchemyError as exc:
        return MAIL_FAILED, (f"the account database did not answer ({type(exc).__name__}), so the data subject was "
                             "not mailed; tell them another way")
    if address is None:
        return NO_ADDRESS, "no address known to the account service: the data subject was not mailed"
    try:
        send(AccountSettings(), address, EXTENSION_SUBJECT,
             extension_body(done.request_id, done.due_at, done.months, done.reason))
    except (TransientError, PermanentError) as exc:
        return MAIL_FAILED, f"the mail to the data subject failed ({exc}); tell them another way"
    return MAILED, "the data subject was mailed the reason and the new deadline"


def extend_and_tell(write: Write[Any], request_id: str, months: int, reason: str, *, now: datetime,
                    settings: LedgerSettings, account: sessionmaker[Session] | None = None) -> Told | None:
    """Extend the request (`write(action)` runs `action(session)` in one ledger transaction), mail the data
    subject and record the outcome; None when the ledger has no database. Raises `legal.Refused` when the
    extension is not allowed."""
    done = write(lambda s: extend(s, request_id, months, reason, now=now, settings=settings))
    if done is None:
        return None
    outcome, line = notify(done, account)
    write(lambda s: record_notice(s, done.request_id, outcome))
    return Told(done, outcome, line)
