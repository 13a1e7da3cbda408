"""`erasure extend`, `erasure hold` and `erasure release`: operators' decisions on legal time, and the extension mail.

The decision is written to the ledger first (services/ledger/legal.py); then, for an extension, the data subject
is told by mail when the account service knows an address, and the ledger records what became of the mail
(services/cli/notice.py).
Exit codes: 0 done, 1 done but the mail failed, 2 refused (the message says why) or nothing found.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, NoReturn

import click

OK, MAIL_FAILED_EXIT, REFUSED = 0, 1, 2


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


def _refused(message: str) -> NoReturn:
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
    from services.cli.notice import extend_and_tell
    from services.ledger.legal import Refused
    from services.ledger.settings import LedgerSettings

    try:
        told = extend_and_tell(ledger_write, request_id, months, reason, now=datetime.now(UTC),
                               settings=LedgerSettings())
    except Refused as exc:
        _refused(str(exc))
    if told is None:
        _refused(f"no erasure request {request_id}: the ledger has no database yet")
    done = told.extended
    click.echo(f"Request {done.request_id} extended by {done.months} month(s); due {done.due_at:%Y-%m-%d %H:%M} "
               f"UTC.\n{told.line}")
    sys.exit(MAIL_FAILED_EXIT if told.outcome == "mail_failed" else OK)


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
