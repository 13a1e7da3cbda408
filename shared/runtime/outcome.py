"""What becomes of one delivery once its batch has committed: an action, and why."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Action(StrEnum):
    """The four ways a delivery is settled."""

    ACK = "ack"  # handled, or a duplicate: acked
    RETRY = "retry"  # to the next delay tier (or dead-lettered once the tiers are used up)
    DEAD = "dead"  # to the dead-letter queue at once
    RELEASE = "release"  # back to the queue unhandled (the database stayed down through shutdown)


@dataclass(frozen=True, slots=True)
class Outcome:
    """The action for one delivery; `kind` and `error` say why it failed, `retry_after` what a vendor asked."""

    action: Action
    kind: str = ""
    error: str = ""
    retry_after: float | None = None

    @classmethod
    def retry(cls, kind: str, error: str, retry_after: float | None = None) -> Outcome:
        return cls(Action.RETRY, kind, error, retry_after)

    @classmethod
    def dead(cls, kind: str, error: str) -> Outcome:
        return cls(Action.DEAD, kind, error)


ACK = Outcome(Action.ACK)
RELEASE = Outcome(Action.RELEASE)
