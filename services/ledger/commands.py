"""The ledger's operator commands (`erasure status`, `erasure receipt`): text or JSON, and an exit code.

Exit codes: 0 answered, 1 a receipt failed verification or `--overdue`/`--due-soon` listed a request, 2 nothing found
(or the question was malformed).
These commands only read: they never migrate or write the ledger database (`erasure extend`, `hold` and
`release` write operators' decisions through services/ledger/legal.py).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import inspect
from sqlalchemy.orm import Session

from services.ledger import queries, report
from services.ledger.models import ErasureRequest
from services.ledger.rights import rights_listed
from services.ledger.settings import LedgerSettings
from shared.db import make_engine
from shared.settings import database_url_for

OK, FAILED, NOT_FOUND = 0, 1, 2


@contextmanager
def ledger_session(database_url: str | None) -> Iterator[Session | None]:
    """A session on the ledger database, or None when the ledger has never run there."""
    engine = make_engine(database_url or database_url_for("ledger"))
    database = engine.url.database
    if engine.url.get_backend_name() == "sqlite" and database and not Path(database).exists():
        engine.dispose()
        yield None  # connecting would create an empty file
        return
    try:
        if not inspect(engine).has_table(ErasureRequest.__tablename__):
            yield None
            return
        with Session(engine) as session:
            yield session
    finally:
        engine.dispose()


def _dump(data: Any) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False)


def _answer(as_json: bool, data: Any, text: Callable[[], str]) -> str:
    return _dump(data) if as_json else text()


def _not_found(as_json: bool, what: str) -> tuple[str, int]:
    message = f"no erasure request found for {what}"
    return (_dump({"error": message}) if as_json else message), NOT_FOUND


def status_command(
    database_url: str | None,
    request_id: str | None = None,
    user_id: str | None = None,
    overdue: bool = False,
    as_json: bool = False,
    *,
    due_soon: bool = False,
) -> tuple[str, int]:
    """Show one request, every request of a user, or every overdue/stuck (or due soon) request; text and exit code."""
    if sum((request_id is not None, user_id is not None, overdue, due_soon)) != 1:
        return "give exactly one of: a request id, --user ID, --overdue or --due-soon", NOT_FOUND
    with ledger_session(database_url) as session:
        if overdue or due_soon:
            settings, now = LedgerSettings(), datetime.now(UTC)
            if session is None:
                items = []
            elif overdue:
                items = [*queries.overdue(session, now, settings.stuck_after), *rights_listed(
                    session, now, settings.stuck_after, None, frozenset({queries.OVERDUE, queries.STUCK}))]
            else:
                items = [*queries.due_soon(session, now, settings.internal_due, settings.stuck_after), *rights_listed(
                    session, now, settings.stuck_after, settings.internal_due,
                    frozenset({queries.OVERDUE, queries.STUCK, queries.DUE_SOON}))]
            none = report.NONE_OVERDUE if overdue else report.NONE_DUE_SOON
            # Any listed request is something to alert on (cron, monitoring): exit 1. A held request is shown
            # as held: waiting on purpose, it alerts no one.
            alert = any(item.why != "held" for item in items)
            return _answer(as_json, report.overdue_dict(items), lambda: report.overdue_text(items, none)), \
                FAILED if alert else OK
        if session is None:
            return _not_found(as_json, f"request {request_id}" if request_id else f"user {user_id}")
        if request_id is not None:
            status = queries.request_status(session, request_id)
            if status is None:
                return _not_found(as_json, f"request {request_id}")
            return _answer(as_json, report.status_dict(status), lambda: report.status_text(status)), OK
        found = queries.requests_for_user(session, str(user_id))
        if not found:
            return _not_found(as_json, f"user {user_id}")
        return _answer(as_json, [report.status_dict(s) for s in found],
                       lambda: "\n\n".join(report.status_text(s) for s in found)), OK


def receipt_command(
    database_url: str | None, request_id: str, verify: bool, as_json: bool = False
) -> tuple[str, int]:
    """Show a request's receipt chain and, with `verify`, check it; exit 1 when the check fails."""
    with ledger_session(database_url) as session:
        status = queries.request_status(session, request_id) if session is not None else None
        if session is None or status is None:
            return _not_found(as_json, f"request {request_id}")
        entries = queries.receipt_entries(session, request_id)
        result = queries.verify_receipt(session, request_id) if verify else None
    args = (status.request_id, entries, status.receipt_hash, result)
    text = _answer(as_json, report.receipt_dict(*args), lambda: report.receipt_text(*args))
    return text, FAILED if result is not None and not result.ok else OK
