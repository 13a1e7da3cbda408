"""The console's audit log: every operator action (and every reveal of personal data) as a ledger row."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from services.ledger.models import ConsoleAction


@dataclass(frozen=True)
class Action:
    """One recorded action."""

    at: datetime
    who: str
    role: str
    action: str
    target: str
    detail: dict[str, Any]


def record(sessions: sessionmaker[Session], *, who: str, role: str, action: str, target: str,
           detail: dict[str, Any] | None = None) -> None:
    """Commit one action before its effect is shown: no reveal without its record."""
    with sessions.begin() as session:
        session.add(ConsoleAction(at=datetime.now(UTC), who=who, role=role, action=action, target=target,
                                  detail=detail or {}))


def recent(session: Session, limit: int = 200) -> list[Action]:
    """The latest actions, newest first."""
    rows = session.scalars(select(ConsoleAction).order_by(ConsoleAction.id.desc()).limit(limit)).all()
    return [Action(r.at, r.who, r.role, r.action, r.target, dict(r.detail or {})) for r in rows]
