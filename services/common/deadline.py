"""The legal deadline of an erasure request, which the ledger tracks and the account service's notices respect."""

from __future__ import annotations

from datetime import timedelta

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ErasureDeadline(BaseSettings):
    """Time from a request's receipt to its deadline (env prefix `ERASURE_LEDGER_`, where the ledger reads it)."""

    model_config = SettingsConfigDict(env_prefix="ERASURE_LEDGER_", extra="ignore")

    due_days: int = Field(30, gt=0, description="Days from receipt to the deadline (GDPR Art. 12(3): one month).")
    due_seconds: float | None = Field(None, gt=0, description="Deadline in seconds; overrides due_days (tests).")

    @property
    def due_period(self) -> timedelta:
        """Time from a request's receipt to its deadline."""
        if self.due_seconds is not None:
            return timedelta(seconds=self.due_seconds)
        return timedelta(days=self.due_days)
