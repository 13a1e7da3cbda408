"""Settings of the account service (env prefix `ERASURE_ACCOUNT_`); its database URL is the runtime's."""

from __future__ import annotations

from datetime import timedelta

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class AccountSettings(BaseSettings):
    """How long a sign-in lasts; the account talks to no outside system."""

    model_config = SettingsConfigDict(env_prefix="ERASURE_ACCOUNT_", extra="ignore")

    session_lifetime_days: int = Field(30, gt=0, description="Days a sign-in cookie stays valid.")

    @property
    def session_lifetime(self) -> timedelta:
        """The lifetime to pass to record_sign_in."""
        return timedelta(days=self.session_lifetime_days)
