"""Stage 4, stage: write what handlers appended and emitted, in their transaction (the transactional outbox)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table, insert
from sqlalchemy.orm import Session

from schemas import EventData
from shared.outbox import stage_many
from shared.settings import RuntimeSettings


def write_appended(session: Session, rows: Sequence[tuple[Table, dict[str, Any]]]) -> None:
    """Insert the rows handlers appended, one executemany per table and set of columns, in their order."""
    if not rows:
        return
    groups: dict[tuple[Table, frozenset[str]], list[dict[str, Any]]] = {}
    for table, row in rows:
        groups.setdefault((table, frozenset(row)), []).append(row)
    conn = session.connection()
    for (table, _columns), params in groups.items():
        conn.execute(insert(table), params)


class Stager:
    """Writes handlers' appended rows and signs their emitted events into the outbox table."""

    def __init__(self, outbox: Table, settings: RuntimeSettings) -> None:
        self.outbox = outbox
        self._settings = settings

    def write(self, session: Session, appended: Sequence[tuple[Table, dict[str, Any]]],
              emitted: Sequence[EventData]) -> None:
        """Appended rows first, then the outbox rows, all in the caller's transaction."""
        write_appended(session, appended)
        settings = self._settings
        stage_many(session, self.outbox, emitted, source=settings.source, keyring=settings.keyring,
                   key_id=settings.signing_key_id)
