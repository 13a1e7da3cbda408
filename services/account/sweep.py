"""The three-year sweep: every account not signed in for more than three years is deregistered (policy).

Inactive users are read in keyset order (last_sign_in_at, user_id), a bounded batch at a time, so memory
stays flat at any size. Each batch is one transaction: the `UserDeregistered` events (reason inactivity, a
new request id each) go into the outbox together with a `sweep_marks` row per user, so an interrupted run
loses nothing and a re-run never deregisters anyone twice. After each commit the outbox is relayed with
publisher confirms, including whatever an interrupted run had staged but not yet published.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, func, insert, select, tuple_
from sqlalchemy.orm import Session, sessionmaker

from schemas import UserDeregistered
from services.account.models import SweepMark, User
from services.account.publishing import relay_outbox, stage_events
from shared.faults import failpoint
from shared.logging import get_logger
from shared.producer import Producer
from shared.settings import RuntimeSettings

log = get_logger(__name__)
INACTIVE_YEARS = 3


@dataclass(frozen=True)
class SweepResult:
    """What a sweep found and did (a dry run: would do).

    `deregistered` counts accounts this run deregistered; `published` counts events it saw confirmed by the
    broker, which includes any that an interrupted earlier run had staged but not yet published.
    """

    selected: int
    deregistered: int
    published: int
    skipped_already_swept: int
    seconds: float
    dry_run: bool
    cutoff: str

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return asdict(self)


def inactivity_cutoff(now: datetime) -> datetime:
    """The instant three calendar years before `now` (29 Feb falls back to 28 Feb); older sign-ins are swept."""
    now = now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)
    try:
        return now.replace(year=now.year - INACTIVE_YEARS)
    except ValueError:
        return now.replace(year=now.year - INACTIVE_YEARS, day=28)


def count_inactive(session: Session, cutoff: datetime) -> int:
    """How many accounts signed in last before the cutoff (swept or not)."""
    return int(session.scalar(select(func.count()).select_from(User).where(User.last_sign_in_at < cutoff)) or 0)


def _page(session: Session, cutoff: datetime, after: tuple[Any, str] | None, size: int) -> list[Any]:
    query = select(User.user_id, User.last_sign_in_at).where(User.last_sign_in_at < cutoff)
    if after is not None:
        query = query.where(tuple_(User.last_sign_in_at, User.user_id) > tuple_(*after))
    return list(session.execute(query.order_by(User.last_sign_in_at, User.user_id).limit(size)).all())


def _deregister(session: Session, user_ids: list[str], runtime: RuntimeSettings, now: datetime) -> None:
    events = [UserDeregistered(user_id=user_id, request_id=uuid.uuid4(), reason="inactivity", requested_at=now)
              for user_id in user_ids]
    stage_events(session, events, runtime)
    session.execute(insert(SweepMark), [
        {"user_id": e.user_id, "request_id": str(e.request_id), "swept_at": now} for e in events])


def sweep_inactive(
    engine: Engine,
    sessions: sessionmaker[Session],
    runtime: RuntimeSettings,
    *,
    now: datetime | None = None,
    batch: int = 1000,
    dry_run: bool = False,
    producer: Producer | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> SweepResult:
    """Deregister every account inactive for more than three years, once; `dry_run` only counts.

    Without a producer the staged events wait in the outbox for the account service's relay.
    `on_batch(n)` is called after each batch with the number of accounts it looked at.
    """
    if batch < 1:
        raise ValueError("batch must be at least 1")
    started = time.monotonic()
    now = datetime.now(UTC) if now is None else now.astimezone(UTC)
    cutoff = inactivity_cutoff(now)
    selected = deregistered = skipped = published = 0
    if producer is not None and not dry_run:
        published += relay_outbox(engine, producer, batch=batch)  # what an interrupted run left behind
    after: tuple[Any, str] | None = None
    while True:
        with sessions() as session, session.begin():
            rows = _page(session, cutoff, after, batch)
            if not rows:
                break
            after = (rows[-1].last_sign_in_at, rows[-1].user_id)
            ids = [row.user_id for row in rows]
            marked = set(session.scalars(select(SweepMark.user_id).where(SweepMark.user_id.in_(ids))))
            fresh = [user_id for user_id in ids if user_id not in marked]
            if fresh and not dry_run:
                _deregister(session, fresh, runtime, now)
        failpoint("sweep_after_batch")
        selected, deregistered, skipped = selected + len(ids), deregistered + len(fresh), skipped + len(marked)
        if producer is not None and fresh and not dry_run:
            published += relay_outbox(engine, producer, batch=batch)
        if on_batch is not None:
            on_batch(len(ids))
    result = SweepResult(selected=selected, deregistered=deregistered, published=published,
                         skipped_already_swept=skipped, seconds=round(time.monotonic() - started, 3),
                         dry_run=dry_run, cutoff=cutoff.isoformat())
    log.info("inactivity sweep done", **{k: v for k, v in result.as_dict().items() if k != "cutoff"})
    return result
