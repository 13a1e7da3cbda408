"""Settings of the account service (env prefix `ERASURE_ACCOUNT_`); its database URL is the runtime's."""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.common.deadline import ErasureDeadline
from services.sandbox.defaults import DEFAULT_SMTP_PORT


class AccountSettings(BaseSettings):
    """Sign-in lifetime, the SMTP relay, and the rules of the e-mail intake of erasure requests."""

    model_config = SettingsConfigDict(env_prefix="ERASURE_ACCOUNT_", extra="ignore")

    session_lifetime_days: int = Field(30, gt=0, description="Days a sign-in cookie stays valid.")

    smtp_host: str = Field("127.0.0.1", description="SMTP relay for confirmation and completion mails.")
    smtp_port: int = Field(DEFAULT_SMTP_PORT, gt=0, description="Its port (default: the sandbox's mail sink).")
    smtp_sender: str = Field("info@loggamera.se", description="From address of the mails we send.")
    smtp_starttls: bool = Field(False, description="Upgrade the relay connection with STARTTLS.")
    smtp_username: str | None = Field(None, description="Relay login, if it asks for one.")
    smtp_password: SecretStr | None = Field(None, description="Relay password.")
    smtp_timeout: float = Field(10.0, gt=0, description="Seconds to wait for the relay.")

    intake_secret: SecretStr = Field(
        SecretStr(""),
        description="Shared secret the inbound-mail webhook must send in X-Intake-Secret; empty: webhook off.",
    )
    intake_require_dmarc: bool = Field(
        False, description="Accept a request only if our own MTA's Authentication-Results says dmarc=pass.")
    intake_authserv_id: str = Field(
        "mx.loggamera.se", description="authserv-id of our MTA: Authentication-Results from anyone else are ignored.")
    intake_token_ttl_hours: float = Field(72, gt=0, description="Hours a confirmation link stays valid.")
    intake_confirm_url: str = Field(
        "http://127.0.0.1:9101/intake/confirm",
        description="Public URL of the account service's /intake/confirm, as put in the confirmation mail.",
    )
    notice_grace_days: int = Field(
        7, ge=0, description="Days past the request's due date that the completion-notice address may be kept.")

    @property
    def session_lifetime(self) -> timedelta:
        """The lifetime to pass to record_sign_in."""
        return timedelta(days=self.session_lifetime_days)

    @property
    def token_lifetime(self) -> timedelta:
        """How long a confirmation token may be used."""
        return timedelta(hours=self.intake_token_ttl_hours)

    def due_at(self, received: datetime) -> datetime:
        """The deadline of a request received at `received`: the ledger's rule and setting, so both agree."""
        return ErasureDeadline().due_at(received)

    @property
    def notice_grace(self) -> timedelta:
        """How long past the due date a completion-notice address may be kept at the latest."""
        return timedelta(days=self.notice_grace_days)

    @property
    def smtp_login(self) -> tuple[str, str] | None:
        """(user, password) for the relay, or None."""
        if self.smtp_username and self.smtp_password is not None:
            return self.smtp_username, self.smtp_password.get_secret_value()
        return None
