"""Settings of payment (env prefix `ERASURE_PAYMENT_`); defaults run against the sandbox."""

from __future__ import annotations

from typing import Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.common.retention import check_fiscal_year_end


def _sandbox_paypal_url() -> str:
    from services.sandbox.defaults import sandbox_url

    return sandbox_url("/paypal")


def _sandbox_value(name: str) -> str:
    from services.sandbox.defaults import sandbox_value

    return sandbox_value(name)


class PaymentSettings(BaseSettings):
    """The PayPal REST app (OAuth2 client credentials) and the company's financial year.

    The financial year is the company's one, configured once for bookkeeping
    (`ERASURE_BOOKKEEPING_FISCAL_YEAR_END_MONTH`/`_DAY`), so both services date retention alike.
    """

    model_config = SettingsConfigDict(env_prefix="ERASURE_PAYMENT_", extra="ignore", populate_by_name=True)

    paypal_base_url: str = Field(
        default_factory=_sandbox_paypal_url,
        description="PayPal REST root (live: https://api-m.paypal.com, sandbox: https://api-m.sandbox.paypal.com).",
    )
    paypal_client_id: str = Field(
        default_factory=lambda: _sandbox_value("paypal_client_id"), min_length=1, description="REST app client id."
    )
    paypal_client_secret: SecretStr = Field(
        default_factory=lambda: SecretStr(_sandbox_value("paypal_client_secret")),
        description="REST app secret (OAuth2 client credentials).",
    )
    http_attempts: int = Field(3, ge=1, description="Tries of one PayPal call in process before the delay tiers.")
    fiscal_year_end_month: int = Field(
        12,
        validation_alias="ERASURE_BOOKKEEPING_FISCAL_YEAR_END_MONTH",
        description="Month the company's financial year ends in (shared with bookkeeping).",
    )
    fiscal_year_end_day: int = Field(
        31,
        validation_alias="ERASURE_BOOKKEEPING_FISCAL_YEAR_END_DAY",
        description="Last day of that month (shared with bookkeeping).",
    )

    @model_validator(mode="after")
    def _fiscal_year_ends_on_a_month_end(self) -> Self:
        check_fiscal_year_end(self.fiscal_year_end_month, self.fiscal_year_end_day)
        return self
