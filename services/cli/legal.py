"""`erasure extend`, `erasure hold` and `erasure release`: operators' decisions on legal time, and the extension mail.

The decision is written to the ledger first (services/ledger/legal.py); then, for an extension, the data subject
is told by mail when the account service knows an address (the user's account, or the address kept for the
completion notice), and the ledger records whether the mail went, that no address was known, or that it failed.
Exit codes: 0 done, 1 done but the mail failed, 2 refused (the message says why) or nothing found.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import click

OK, MAIL_FAILED_EXIT, REFUSED = 0, 1, 2
EXTENSION_SUBJECT = "Your Loggamera erasure request: more time needed"


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


def ledger_write(action: Callable[[Any], Any]) -> Any:
    """Run `action(session)` in one transaction on the ledger database; None when the ledger has never run."""
    from services.ledger.commands import ledger_session

    with ledger_session(None) as session:
        if session is None:
            return None
        with session.begin():
            return action(session)


def open_request(make_row: Callable[[Any, Any, datetime], Any], event: Any, now: datetime) -> str:
    """Open a request in the ledger (`make_row(event, settings, now)`) and stage its signed event in the ledger's
    outbox, in one transaction, so the running ledger relays it to every slice; the request id. Refused (exit 2)
    while the ledger has no database."""
    from services.ledger.models import metadata
    from services.ledger.settings import LedgerSettings
    from shared.outbox import stage
    from shared.settings import RuntimeSettings

    runtime = RuntimeSettings()

    def write(session: Any) -> str:
        session.add(make_row(event, LedgerSettings(), now))
        stage(session, metadata.tables["outbox"], event, source=runtime.source, keyring=runtime.keyring,
              key_id=runtime.signing_key_id)
        return str(event.request_id)

    request_id = ledger_write(write)
    if request_id is None:
        _refused("the ledger has no database yet; start the pipeline first")
    return str(request_id)


def read_request(read: Callable[[Any, str], Any], request_id: str, what: str) -> Any:
    """`read(session, request_id)` on the ledger: what it returns, or refused (exit 2) when that is None (no such
    request, or no ledger database yet)."""
    from services.ledger.commands import ledger_session

    with ledger_session(None) as session:
        found = read(session, request_id) if session is not None else None
    if found is None:
        _refused(f"no {what} {request_id}")
    return found


def known_address(user_id: str, request_id: str) -> str | None:
    """The address the account service knows for this user or request, if any."""
    from sqlalchemy.orm import Session

    from services.account.models import CompletionNotice, User
    from shared.db import make_engine
    from shared.settings import database_url_for

    engine = make_engine(database_url_for("account"))
    try:
        with Session(engine) as session:
            user = session.get(User, user_id)
            if user is not None:
                return user.email
            notice = session.get(CompletionNotice, request_id)
            return notice.email if notice is not None else None
    finally:
        engine.dispose()


def _notify(done: Any) -> tuple[str, str]:
    """Mail the data subject of an extension; the outcome to record and a line for the operator."""
    from sqlalchemy.exc import SQLAlchemyError

    from services.account.mails import send
    from services.account.settings import AccountSettings
    from services.ledger.legal import MAIL_FAILED, MAILED, NO_ADDRESS
    from shared.errors import PermanentError, TransientError

    try:
        address = known_address(done.user_id, done.request_id)
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


def _refused(message: str) -> None:
    click.echo(f"erasure: refused: {message}", err=True)
    sys.exit(REFUSED)


def _decide(action: Callable[[Any], Any], what: str) -> None:
    """Write a hold decision to the ledger and say which open requests' receipts record it."""
    from services.ledger.legal import Refused

    try:
        done = ledger_write(action)
    except Refused as exc:
        _refused(str(exc))
    if done is None:
        _refused("the ledger has no database yet")
    number, chained = done
    click.echo(f"Legal hold {number} {what}; recorded in the receipt of {len(chained)} open request(s).")


@click.command()
@click.argument("request_id")
@click.option("--reason", required=True, help="Why more time is needed; told to the data subject (no personal data).")
@click.option("--months", type=click.IntRange(1, 2), default=2, show_default=True, help="Further months.")
def extend(request_id: str, reason: str, months: int) -> None:
    """Extend an erasure request's deadline by up to two further months (GDPR Art. 12(3)).

    Only while the request's first month runs, once per request. The data subject is mailed the reason when the
    account service knows their address; the ledger and the receipt record the extension and the mail.

    \b
    Example:
      erasure extend 3f0c2a9e-6d1b-4c57-9a51-0d7f3e8b9c10 --reason "records held by three installers"
    """
    from services.ledger.legal import Refused, record_notice
    from services.ledger.legal import extend as extend_request
    from services.ledger.settings import LedgerSettings

    try:
        done = ledger_write(lambda s: extend_request(s, request_id, months, reason, now=datetime.now(UTC),
                                                      settings=LedgerSettings()))
    except Refused as exc:
        _refused(str(exc))
    if done is None:
        _refused(f"no erasure request {request_id}: the ledger has no database yet")
    outcome, line = _notify(done)
    ledger_write(lambda s: record_notice(s, done.request_id, outcome))
    click.echo(f"Request {done.request_id} extended by {done.months} month(s); due {done.due_at:%Y-%m-%d %H:%M} "
               f"UTC.\n{line}")
    sys.exit(MAIL_FAILED_EXIT if outcome == "mail_failed" else OK)


@click.command()
@click.option("--user", "user_id", required=True, help="The opaque user id.")
@click.option("--reason", required=True, help="Why the erasure must wait (a case number; no personal data).")
def hold(user_id: str, reason: str) -> None:
    """Place a legal hold on a user's erasure: every slice defers erasing them, and their requests show as held.

    \b
    Example:
      erasure hold --user u-1001 --reason "court order 2026-T-1234"
    """
    from services.ledger.legal import hold as place

    _decide(lambda s: place(s, user_id, reason, datetime.now(UTC)), f"placed on user {user_id}")


@click.command()
@click.option("--user", "user_id", required=True, help="The opaque user id.")
def release(user_id: str) -> None:
    """Release a user's legal hold: the slices erase what they deferred; deadlines count again.

    \b
    Example:
      erasure release --user u-1001
    """
    from services.ledger.legal import release as lift

    _decide(lambda s: lift(s, user_id, datetime.now(UTC)), f"on user {user_id} released")
