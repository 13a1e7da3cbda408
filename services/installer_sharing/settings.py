"""Settings of installer_sharing (env prefix `ERASURE_INSTALLER_SHARING_`); defaults run against the sandbox."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _sandbox_url() -> str:
    from services.sandbox.defaults import sandbox_url

    return sandbox_url()


class InstallerSharingSettings(BaseSettings):
    """Where the installer directory comes from, and how hard to try an installer before backing off."""

    model_config = SettingsConfigDict(env_prefix="ERASURE_INSTALLER_SHARING_", extra="ignore")

    directory: str = Field(
        "",
        description=(
            "The installer directory: a path to a JSON or YAML file, or inline JSON, mapping each installer id "
            "to {name, endpoint_url, token}. Empty: the sandbox's installers under `sandbox_url`."
        ),
    )
    sandbox_url: str = Field(
        default_factory=_sandbox_url,
        description="Root URL of the sandbox; used only when no directory is configured.",
    )
    http_attempts: int = Field(
        3, ge=1, description="Tries of one installer call in process before the broker's delay tiers take over."
    )
