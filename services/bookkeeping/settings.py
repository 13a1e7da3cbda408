"""Settings of bookkeeping (env prefix `ERASURE_BOOKKEEPING_`); defaults run against the sandbox."""

from __future__ import annotations

from typing import Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.common.retention import check_fiscal_year_end


def _sandbox_url(path: str) -> str:
    from services.sandbox.defaults import sandbox_url

    return sandbox_url(path)


def _sandbox_secret(name: str) -> SecretStr:
    return SecretStr(_sandbox_value(name))


def _sandbox_value(name: str) -> str:
    from services.sandbox.defaults import sandbox_value

    return sandbox_value(name)


class BookkeepingSettings(BaseSettings):
    """The Visma eAccounting company sales go to, the company's financial year, and the anonymous customer."""

    model_config = SettingsConfigDict(env_prefix="ERASURE_BOOKKEEPING_", extra="ignore")

    visma_base_url: str = Field(
        default_factory=lambda: _sandbox_url("/visma"),
        description="Visma eAccounting API root without /v2 (live: https://eaccountingapi.vismaonline.com).",
    )
    visma_token_url: str = Field(
        default_factory=lambda: _sandbox_url("/visma/connect/token"),
        description="OAuth2 token endpoint (live: https://identity.vismaonline.com/connect/token).",
    )
    visma_access_token: SecretStr | None = Field(
        default_factory=lambda: _sandbox_secret("visma_access_token"),
        description="Bearer token to start with; empty to start from the refresh token.",
    )
    visma_refresh_token: SecretStr | None = Field(
        default_factory=lambda: _sandbox_secret("visma_refresh_token"),
        description="Refresh token that renews the access token (scopes ea:api ea:sales offline_access). Visma "
        "retires each one it renews; the newest is kept in the bookkeeping database and used from then on, until a "
        "different one is set here (a new authorisation).",
    )
    visma_client_id: str | None = Field(
        default_factory=lambda: _sandbox_value("visma_client_id"), description="OAuth2 client id."
    )
    visma_client_secret: SecretStr | None = Field(
        default_factory=lambda: _sandbox_secret("visma_client_secret"), description="OAuth2 client secret."
    )
    visma_terms_of_payment_id: str = Field(
        default_factory=lambda: _sandbox_value("visma_terms_of_payment_id"),
        min_length=1,
        description="TermsOfPaymentId put on every customer we create (Visma requires one; GET /v2/termsofpayment).",
    )
    visma_article_id: str = Field(
        default_factory=lambda: _sandbox_value("visma_article_id"),
        min_length=1,
        description="ArticleId of the sales article every invoice row is booked on (Visma requires one on each "
        "row that is not a text row; GET /v2/articles); the row's text and price come from the purchase line.",
    )
    http_attempts: int = Field(3, ge=1, description="Tries of one Visma call in process before the delay tiers.")
    fiscal_year_end_month: int = Field(12, description="Month the company's financial year ends in (1-12).")
    fiscal_year_end_day: int = Field(31, description="Last day of that month (28 or 29 for February).")
    anonymous_customer_number: str = Field(
        "ANONYMISED",
        min_length=1,
        description="Visma customer number of the one anonymous customer that sales for erased users go to.",
    )
    anonymous_customer_city: str = Field(
        "Anonymised", min_length=1, description="City on the anonymous customer (Visma requires one)."
    )
    anonymous_customer_postal_code: str = Field(
        "000 00", min_length=1, description="Postal code on the anonymous customer (Visma requires one)."
    )

    @model_validator(mode="after")
    def _fiscal_year_ends_on_a_month_end(self) -> Self:
        check_fiscal_year_end(self.fiscal_year_end_month, self.fiscal_year_end_day)
        return self


def secret_or_none(value: SecretStr | None) -> str | None:
    """The secret's text, or None when unset or set to the empty string."""
    return (value.get_secret_value() or None) if value is not None else None
