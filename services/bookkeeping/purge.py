"""The end of retention: sales whose retain-until date has passed are erased, with only a count kept."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from services.bookkeeping.models import MIGRATIONS, CustomerRecord, Purge, Sale, metadata
from shared.db import ensure_schema, make_engine, session_factory, wipe_sqlite_journal
from shared.logging import get_logger
from shared.settings import database_url_for

log = get_logger(__name__)


@dataclass(frozen=True)
class PurgeResult:
    """How many rows one purge erased."""

    sales: int
    customers: int

    @property
    def rows(self) -> int:
        """Every row erased."""
        return self.sales + self.customers


def purge_expired(session: Session, *, today: date) -> PurgeResult:
    """Delete every sale kept past its retain-until date, and anonymised customers left with no sale.

    Every sale is covered, not only those of erased users: this service keeps sales for the Bookkeeping
    Act alone, so once it stops requiring them nothing justifies keeping them (GDPR Art. 5(1)(e)).
    """
    sales = session.execute(delete(Sale).where(Sale.retain_until < today)).rowcount
    customers = session.execute(
        delete(CustomerRecord).where(
            CustomerRecord.anonymised_at.is_not(None),
            CustomerRecord.user_id.not_in(select(Sale.user_id)),
        )
    ).rowcount
    session.add(Purge(run_at=datetime.now(UTC), rows=sales + customers))
    return PurgeResult(sales=sales, customers=customers)


def run_purge(database_url: str | None = None, today: date | None = None) -> int:
    """Purge the bookkeeping database (its own URL unless given) as of today (UTC); returns rows erased."""
    engine = make_engine(database_url or database_url_for("bookkeeping"))
    try:
        ensure_schema(engine, metadata, MIGRATIONS)
        with session_factory(engine, metadata)() as session, session.begin():
            result = purge_expired(session, today=today or datetime.now(UTC).date())
        wipe_sqlite_journal(engine)  # the purged rows are zeroed in the file; the journal must not keep them
    finally:
        engine.dispose()
    log.info("retention purge done", service="bookkeeping", sales=result.sales, customers=result.customers)
    return result.rows
