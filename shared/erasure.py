"""What every slice service does alike on erasure: tombstones and the slice report."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from sqlalchemy import Table, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from schemas import ErasureSliceReported, RetainedCategory, UserDeregistered


def _tombstones(session: Session) -> Table:
    tables = session.info.get("tables")
    if tables is None or "tombstones" not in tables:
        raise RuntimeError("the session is not a service session (no runtime tables in session.info)")
    return tables["tombstones"]


def is_erased(session: Session, user_id: str) -> bool:
    """Whether this service has erased the user: later events must not bring their data back."""
    table = _tombstones(session)
    return session.execute(select(table.c.user_id).where(table.c.user_id == user_id)).first() is not None


_UPSERTS = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}


def tombstone(session: Session, event: UserDeregistered) -> None:
    """Remember the bare user id (nothing else) so that late events for the user are not acted on.

    A user erased before keeps the first tombstone (a replayed or a second request adds none); where the
    database has INSERT … ON CONFLICT, that is one statement.
    """
    table = _tombstones(session)
    values = {"user_id": event.user_id, "request_id": str(event.request_id), "erased_at": datetime.now(UTC)}
    upsert = _UPSERTS.get(session.get_bind().dialect.name)
    if upsert is not None:
        session.execute(upsert(table).values(values).on_conflict_do_nothing(index_elements=[table.c.user_id]))
    elif not is_erased(session, event.user_id):
        session.execute(insert(table).values(values))


def slice_report(
    event: UserDeregistered,
    service: str,
    *,
    erased: Iterable[str] = (),
    retained: Iterable[RetainedCategory] = (),
    recipients_notified: Iterable[str] = (),
) -> ErasureSliceReported:
    """The report of one slice: `retained` if anything is kept by law, else `erased`, else `nothing_held`."""
    erased, retained = list(erased), list(retained)
    outcome = "retained" if retained else "erased" if erased else "nothing_held"
    return ErasureSliceReported(
        request_id=event.request_id,
        user_id=event.user_id,
        service=service,
        outcome=outcome,
        erased=erased,
        retained=retained,
        recipients_notified=list(recipients_notified),
        reported_at=datetime.now(UTC),
        replay=event.replay,
    )
