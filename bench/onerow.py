"""The one-row workload: verify and validate the event, record it in the inbox, write one effect row.

Our runtime does the inbox itself and the handler writes the effect; the peers (FastStream, Celery) do
both in one transaction per message, which is how a handler on those frameworks is usually written.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Column, Engine, Integer, String, Table, func, insert, select

from schemas import UserDeregistered
from shared.codec import CONTENT_TYPE, decode
from shared.db import runtime_metadata
from shared.service import Context, Service

metadata = runtime_metadata()
effects = Table(
    "effects", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("event_id", String(36), nullable=False),
    Column("user_id", String(64), nullable=False),
)


class Clock:
    """When the first and the latest effect were written, and how many (thread-safe)."""

    def __init__(self, target: int = 0) -> None:
        self._lock = threading.Lock()
        self.first = 0.0
        self.last = 0.0
        self.count = 0
        self.target = target
        self.reached = threading.Event()

    def tick(self) -> None:
        """Count one handled event now."""
        now = time.time()
        with self._lock:
            if not self.count:
                self.first = now
            self.count += 1
            self.last = now
            if self.target and self.count >= self.target:
                self.reached.set()


def service(name: str, clock: Clock, *, append: bool = False) -> Service:
    """A service named `name` whose UserDeregistered handler writes one effect row: with a statement of its own
    in the session, or with `append` through `Context.append` (batched by the runtime)."""

    def erase(event: UserDeregistered, ctx: Context) -> None:
        ctx.session.execute(insert(effects).values(event_id=ctx.event_id, user_id=event.user_id))
        clock.tick()

    def erase_appended(event: UserDeregistered, ctx: Context) -> None:
        ctx.append(effects, event_id=ctx.event_id, user_id=event.user_id)
        clock.tick()

    return Service(name=name, handlers={UserDeregistered: erase_appended if append else erase}, metadata=metadata,
                   build_deps=lambda _engine: clock, database_only=True)


def handle_in_one_transaction(
    engine: Engine, body: bytes, headers: Mapping[str, Any] | None, keyring: Mapping[str, bytes], max_bytes: int
) -> None:
    """The peers' handler: decode like the runtime does, then inbox row + effect row, committed together."""
    inbound = decode(body, content_type=CONTENT_TYPE, headers=headers, keyring=keyring, max_bytes=max_bytes)
    inbox = metadata.tables["inbox"]
    with engine.begin() as conn:
        seen = conn.execute(select(inbox.c.event_id).where(inbox.c.event_id == inbound.event_id)).first()
        if seen is not None:
            return
        conn.execute(insert(inbox).values(event_id=inbound.event_id, event_type=inbound.envelope.type,
                                          body_sha256=inbound.body_sha256, handled_at=datetime.now(UTC)))
        conn.execute(insert(effects).values(event_id=inbound.event_id,
                                            user_id=getattr(inbound.data, "user_id", "")))


def committed(engine: Engine) -> int:
    """How many effects are committed."""
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(effects)).scalar_one())

