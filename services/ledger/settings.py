"""Ledger settings: how long a request may take before it is overdue, and when a slice counts as stuck."""

from __future__ import annotations

from datetime import timedelta

from pydantic import Field

from services.common.deadline import ErasureDeadline

DEFAULT_STUCK_AFTER = timedelta(hours=24)


class LedgerSettings(ErasureDeadline):
    """Deadlines of the ledger (env prefix `ERASURE_LEDGER_`); the database URL is the runtime's concern."""

    stuck_hours: float = Field(
        DEFAULT_STUCK_AFTER.total_seconds() / 3600, gt=0,
        description="An open request with no progress (its opening, a slice report) for longer than this is stuck.",
    )
    stuck_seconds: float | None = Field(None, gt=0, description="Stuck threshold in seconds; overrides stuck_hours.")

    @property
    def stuck_after(self) -> timedelta:
        """How long a slice may stay silent on an open request before the request counts as stuck."""
        if self.stuck_seconds is not None:
            return timedelta(seconds=self.stuck_seconds)
        return timedelta(hours=self.stuck_hours)
