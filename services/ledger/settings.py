"""Ledger settings: how long a request may take before it is overdue, when a slice counts as stuck, and how long an
access export is kept."""

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
    access_export_days: float = Field(
        30, gt=0, description="Days an access export is kept after it is assembled; then its content is erased.")

    @property
    def stuck_after(self) -> timedelta:
        """How long a slice may stay silent on an open request before the request counts as stuck."""
        if self.stuck_seconds is not None:
            return timedelta(seconds=self.stuck_seconds)
        return timedelta(hours=self.stuck_hours)

    @property
    def access_export_kept(self) -> timedelta:
        """How long an access export is kept once assembled."""
        return timedelta(days=self.access_export_days)
