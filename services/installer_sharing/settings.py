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
    plain_http_hosts: str = Field(
        "",
        description=(
            "Development only: comma-separated host names (besides this machine) whose installer endpoints may be "
            "plain http, e.g. `sandbox` in compose. Empty in production: every other endpoint must be https."
        ),
    )
    http_attempts: int = Field(
        3, ge=1, description="Tries of one installer call in process before the broker's delay tiers take over."
    )

    def plain_http_host_set(self) -> frozenset[str]:
        """`plain_http_hosts` as a set of lower-case names."""
        return frozenset(h.strip().lower() for h in self.plain_http_hosts.split(",") if h.strip())
