"""Re-applying erasures after a backup restore: a backup taken before an erasure brings the data back.

The ledger knows every request completed since a date. Each erased user (once, however many requests they
had) gets a `UserDeregistered` again: reason admin, `replay=True`, naming the original request. Its
request id is derived from the original's (UUID v5), so a second run publishes the same request ids and
the ledger counts one replay per original, while every slice still re-erases whatever a restore brought
back. The event id is fresh each run on purpose: a service restored a second time must not skip the
event as one it has already handled.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import inspect
from sqlalchemy.orm import Session

from schemas import UserDeregistered
from services.ledger.models import ErasureRequest
from services.ledger.queries import CompletedRequest, completed_since
from shared.codec import Outbound, encode
from shared.db import make_engine
from shared.logging import get_logger
from shared.producer import Producer
from shared.settings import RuntimeSettings, database_url_for

log = get_logger(__name__)
REPLAY_NAMESPACE = uuid.UUID("5d0c7a8e-3b1f-4c2a-9e6d-7f8a1b2c3d4e")


class LedgerUnavailable(Exception):
    """The ledger database is missing or has never been migrated: nothing to replay from."""


@dataclass(frozen=True)
class ReplayPlan:
    """The originals to re-apply (one per user, the latest) and what was left out and why."""

    originals: list[CompletedRequest] = field(default_factory=list)
    completed: int = 0
    skipped_replays: int = 0
    skipped_same_user: int = 0


def replay_request_id(original_request_id: str) -> uuid.UUID:
    """The request id of the replay of a request: the same for every run."""
    return uuid.uuid5(REPLAY_NAMESPACE, str(original_request_id))


@contextmanager
def ledger_session(database_url: str | None = None) -> Iterator[Session]:
    """A read-only session on the ledger database; LedgerUnavailable if it has no ledger tables."""
    engine = make_engine(database_url or database_url_for("ledger"))
    try:
        database = engine.url.database
        if engine.url.get_backend_name() == "sqlite" and database and not Path(database).exists():
            raise LedgerUnavailable(f"no ledger database at {database}")  # connecting would create it
        if not inspect(engine).has_table(ErasureRequest.__tablename__):
            raise LedgerUnavailable("the ledger database has no erasure requests table")
        with Session(engine) as session:
            yield session
    finally:
        engine.dispose()


def plan_replay(session: Session, since: datetime) -> ReplayPlan:
    """The originals completed at or after `since` to re-apply: replays left out, one (the latest) per user."""
    completed = completed_since(session, since)
    originals = [request for request in completed if not request.replay]
    latest: dict[str, CompletedRequest] = {}
    for request in originals:  # oldest first, so the last one per user wins
        latest[request.user_id] = request
    chosen = sorted(latest.values(), key=lambda r: (r.completed_at, r.request_id))
    return ReplayPlan(originals=chosen, completed=len(completed), skipped_replays=len(completed) - len(originals),
                      skipped_same_user=len(originals) - len(chosen))


def replay_event(original: CompletedRequest, now: datetime) -> UserDeregistered:
    """The deregistration that re-applies one original request."""
    return UserDeregistered(user_id=original.user_id, request_id=replay_request_id(original.request_id),
                            reason="admin", requested_at=now, replay=True,
                            original_request_id=uuid.UUID(original.request_id))


def publish_replays(
    plan: ReplayPlan,
    runtime: RuntimeSettings,
    producer: Producer,
    *,
    chunk: int = 500,
    on_chunk: Callable[[int], None] | None = None,
) -> int:
    """Publish the plan's replays with confirms, a chunk at a time; return how many were confirmed."""
    now = datetime.now(UTC)
    published = 0
    started = time.monotonic()
    for start in range(0, len(plan.originals), chunk):
        messages: list[Outbound] = [
            encode(replay_event(original, now), source=runtime.source, keyring=runtime.keyring,
                   key_id=runtime.signing_key_id)
            for original in plan.originals[start:start + chunk]
        ]
        published += producer.publish_many(messages)
        if on_chunk is not None:
            on_chunk(len(messages))
    log.info("erasures replayed", published=published, seconds=round(time.monotonic() - started, 3))
    return published
