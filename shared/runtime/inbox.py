"""Stage 2, claim: the inbox decides which events are new, which are duplicates, and which conflict.

The inbox row (event id + SHA-256 of the body) is written in the handler's transaction, so an event's effects
and its inbox row commit together. Both batch paths claim through `Inbox.claim`: the fast path for the
whole batch in one read and one write, the savepoint path for one delivery at a time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import Connection, Table, bindparam, insert, select

from shared.codec import Inbound
from shared.runtime.outcome import ACK, Outcome


@dataclass
class Claim:
    """What claiming some events found: positions to handle, and outcomes of those not to handle."""

    fresh: list[int] = field(default_factory=list)
    settled: dict[int, Outcome] = field(default_factory=dict)
    duplicates: list[str] = field(default_factory=list)  # the event types acked as duplicates


def conflicting(event_id: str) -> Outcome:
    return Outcome.dead("conflicting_duplicate", f"event {event_id} was already handled with a different body")


class Inbox:
    """A service's inbox table: read which of a set of events were handled, and claim the new ones."""

    def __init__(self, table: Table) -> None:
        self.table = table
        self._seen = select(table.c.event_id, table.c.body_sha256).where(
            table.c.event_id.in_(bindparam("ids", expanding=True)))
        self._insert = insert(table)

    def handled(self, conn: Connection, event_ids: Sequence[str]) -> set[str]:
        """Which of these events the inbox already holds (read only; claiming still decides)."""
        if not event_ids:
            return set()
        return {row.event_id for row in conn.execute(self._seen, {"ids": list(set(event_ids))})}

    def claim(self, conn: Connection, events: Sequence[tuple[int, Inbound]]) -> Claim:
        """Settle the duplicates (in the inbox or earlier among `events`), insert rows for the rest.

        An IntegrityError from the insert means a replica claimed one of them concurrently and committed first;
        the caller rolls back (a savepoint or the batch) and decides.
        """
        claim = Claim()
        if not events:
            return claim
        ids = list({inbound.event_id for _, inbound in events})
        seen = {row.event_id: row.body_sha256 for row in conn.execute(self._seen, {"ids": ids})}
        rows = []
        now = datetime.now(UTC)
        for i, inbound in events:
            known = seen.get(inbound.event_id)
            if known is None:
                seen[inbound.event_id] = inbound.body_sha256
                claim.fresh.append(i)
                rows.append({"event_id": inbound.event_id, "event_type": inbound.envelope.type,
                             "body_sha256": inbound.body_sha256, "handled_at": now})
            elif known != inbound.body_sha256:
                claim.settled[i] = conflicting(inbound.event_id)
            else:
                claim.settled[i] = ACK
                claim.duplicates.append(inbound.envelope.type)
        if rows:
            conn.execute(self._insert, rows)
        return claim
