"""Where bookkeeping keeps Visma's refresh token: its own database, so a restart or another replica goes on.

Visma's refresh tokens work once: each refresh hands out a new one and retires the old. Kept only in memory,
the newest would die with the process, and the next start, from the token in the settings, could no longer
reach Visma until someone authorised the integration again. So the newest is written to one row of the
`visma_tokens` table, and a start begins from it — unless the settings carry a refresh token the row was not
seeded from, which means someone authorised again and that token is the one to use.

Refreshes happen inside handlers, while the batch transaction holds the database (SQLite's write lock, or
rows on PostgreSQL). The new token is therefore written by a thread of its own, in its own transaction, as
soon as the database lets it: the handler never waits for it, and a rollback of the batch cannot take the
token with it. The token is a credential; it lives in the same database, with the same protection, as the
customer records it is used to erase.
"""

from __future__ import annotations

import hashlib
import queue
import threading
import time
from datetime import UTC, datetime

from sqlalchemy import Connection, Engine, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError

from services.bookkeeping.models import VismaToken
from shared.logging import get_logger

log = get_logger(__name__)
ROW = "visma"
FLUSH_TIMEOUT_S = 10.0


def _fingerprint(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenStore:
    """The newest Visma refresh token, kept in the bookkeeping database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._pending: queue.Queue[str | None] = queue.Queue()
        self._writer: threading.Thread | None = None

    def starting_token(self, configured: str | None) -> str | None:
        """The refresh token to start from: the stored one, or the configured one if it is new to the store."""
        with self._reading() as conn:
            row = conn.execute(select(VismaToken).where(VismaToken.name == ROW)).first()
        if configured and (row is None or row.seeded_from != _fingerprint(configured)):
            self._write(configured, seeded_from=_fingerprint(configured))
            return configured
        return row.refresh_token if row is not None else configured

    def latest(self) -> str | None:
        """The refresh token as stored now (another replica may have renewed it)."""
        with self._reading() as conn:
            return conn.execute(select(VismaToken.refresh_token).where(VismaToken.name == ROW)).scalar()

    def _reading(self) -> Connection:
        # Called from handlers, whose batch holds SQLite's write lock: a read must not ask for it.
        return self.engine.connect().execution_options(sqlite_begin="DEFERRED")

    def save(self, refresh_token: str) -> None:
        """Keep a newly issued refresh token; written by the store's thread, the caller does not wait."""
        if self._writer is None:
            self._writer = threading.Thread(target=self._drain, name="visma-token-writer", daemon=True)
            self._writer.start()
        self._pending.put(refresh_token)

    def close(self) -> None:
        """Write what is pending (bounded wait) and stop the writer."""
        if self._writer is not None:
            self._pending.put(None)
            self._writer.join(FLUSH_TIMEOUT_S)
            if self._writer.is_alive():
                log.error("visma refresh token not yet stored at shutdown; the next start may need a new one")

    def _drain(self) -> None:
        while (token := self._pending.get()) is not None:
            delay = 0.1
            while True:
                try:
                    self._write(token)
                    break
                except DBAPIError as exc:  # the database is busy or away: the token must not be dropped
                    log.warning("storing the visma refresh token failed; trying again", error=str(exc.orig),
                                in_s=delay)
                    time.sleep(delay)
                    delay = min(delay * 2, 5.0)

    def _write(self, refresh_token: str, *, seeded_from: str | None = None) -> None:
        changes: dict[str, object] = {"refresh_token": refresh_token, "updated_at": datetime.now(UTC)}
        if seeded_from is not None:
            changes["seeded_from"] = seeded_from
        values = {"name": ROW, **changes}
        dialect = sqlite if self.engine.dialect.name == "sqlite" else postgresql
        statement = dialect.insert(VismaToken).values(**values)
        statement = statement.on_conflict_do_update(index_elements=[VismaToken.name], set_=changes)
        with self.engine.begin() as conn:
            conn.execute(statement)
