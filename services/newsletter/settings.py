"""Settings of newsletter (env prefix `ERASURE_NEWSLETTER_`); defaults run against the sandbox."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


def _sandbox_mailchimp_url() -> str:
    from services.sandbox.defaults import sandbox_url

    return sandbox_url("/mailchimp/3.0")


def _sandbox_config_value(name: str) -> str:
    from services.sandbox.defaults import sandbox_value

    return sandbox_value(name)


class NewsletterSettings(BaseSettings):
    """The Mailchimp account and audience consenting subscribers go to."""

    model_config = SettingsConfigDict(env_prefix="ERASURE_NEWSLETTER_", extra="ignore")

    mailchimp_base_url: str = Field(
        default_factory=_sandbox_mailchimp_url,
        description="Mailchimp API root. Empty: the data centre the API key names (https://<dc>.api.mailchimp.com/3.0).",
    )
    mailchimp_api_key: SecretStr = Field(
        default_factory=lambda: SecretStr(_sandbox_config_value("mailchimp_api_key")),
        description="Mailchimp API key (`…-<dc>`), sent as the Basic-auth password.",
    )
    mailchimp_list_id: str = Field(
        default_factory=lambda: _sandbox_config_value("mailchimp_list_id"),
        min_length=1,
        description="Audience (list) id that new subscribers join.",
    )
    http_attempts: int = Field(
        3, ge=1, description="Tries of one Mailchimp call in process before the broker's delay tiers take over."
    )
