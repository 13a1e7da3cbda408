"""The end of retention for payment references: records past their retain-until date are erased."""

from __future__ import annotations

from datetime import UTC, date, datetime

from sqlalchemy import delete
from sqlalchemy.orm import Session

from services.payment.models import MIGRATIONS, PaymentRecord, metadata
from shared.db import ensure_schema, make_engine, session_factory, wipe_sqlite_journal
from shared.logging import get_logger
from shared.settings import database_url_for

log = get_logger(__name__)


def purge_expired(session: Session, *, today: date) -> int:
    """Delete every payment record kept past its retain-until date; returns how many."""
    return session.execute(delete(PaymentRecord).where(PaymentRecord.retain_until < today)).rowcount


def run_purge(database_url: str | None = None, today: date | None = None) -> int:
    """Purge the payment database (its own URL unless given) as of today (UTC); returns rows erased."""
    engine = make_engine(database_url or database_url_for("payment"))
    try:
        ensure_schema(engine, metadata, MIGRATIONS)
        with session_factory(engine, metadata)() as session, session.begin():
            rows = purge_expired(session, today=today or datetime.now(UTC).date())
        wipe_sqlite_journal(engine)  # the purged rows are zeroed in the file; the journal must not keep them
    finally:
        engine.dispose()
    log.info("retention purge done", service="payment", rows=rows)
    return rows
