"""Console settings (env prefix `ERASURE_CONSOLE_`): where it listens, who may log in, and how sessions behave."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.registry import SERVICES
from shared.settings import http_port_for

DEFAULT_PORT = 9107
Role = Literal["viewer", "operator"]


class ConsoleUser(BaseModel):
    """One person who may log in: a name, a role and an argon2 hash of their password (`erasure console hash`)."""

    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._@-]+$")
    role: Role
    password_hash: str = Field(pattern=r"^\$argon2(id|i|d)\$")


class ConsoleSettings(BaseSettings):
    """The console's settings; users come from `ERASURE_CONSOLE_USERS` (JSON) and/or a JSON file."""

    model_config = SettingsConfigDict(env_prefix="ERASURE_CONSOLE_", extra="ignore")

    host: str = Field("127.0.0.1", description="Address the console listens on.")
    port: int = Field(DEFAULT_PORT, ge=0, le=65535, description="Port of the console (0: any free port).")
    users: list[ConsoleUser] = Field(default_factory=list, description="JSON list of {name, role, password_hash}.")
    users_file: Path | None = Field(None, description="A JSON file with the same list (e.g. a mounted secret).")
    session_secret: SecretStr = Field(SecretStr(""), description="Key that signs session cookies; random if unset.")
    session_hours: float = Field(8, gt=0, description="A session ends this long after login.")
    cookie_secure: bool = Field(False, description="Mark cookies Secure (set when a TLS proxy fronts the console).")
    tls_cert: Path | None = Field(None, description="Serve HTTPS with this certificate (cookies become Secure).")
    tls_key: Path | None = Field(None, description="Private key of tls_cert.")
    login_attempts: int = Field(5, ge=1, description="Failed logins allowed per name and per client in a window.")
    login_window_s: float = Field(900, gt=0, description="The window of failed logins, in seconds.")
    page_size: int = Field(50, ge=1, le=500, description="Requests per page.")
    due_soon_days: float = Field(7, gt=0, description="An open request due within this many days is 'due soon'.")
    metrics_urls: dict[str, str] = Field(
        default_factory=lambda: {s: f"http://127.0.0.1:{http_port_for(s)}/metrics" for s in SERVICES},
        description="Each service's /metrics URL (JSON object); defaults follow ERASURE_<SERVICE>_HTTP_PORT.")
    sample_every_s: float = Field(5, gt=0, description="How often the health page's numbers are sampled.")
    ledger_database_url: str | None = Field(None, description="The ledger's database; default as the ledger's own.")
    account_database_url: str | None = Field(None, description="The account database (pending intake).")

    @model_validator(mode="after")
    def _load_users_file(self) -> ConsoleSettings:
        if self.users_file is not None:
            try:
                listed = json.loads(self.users_file.read_text())
            except (OSError, ValueError) as exc:
                raise ValueError(f"cannot read console users from {self.users_file}: {exc}") from exc
            self.users = [*self.users, *(ConsoleUser.model_validate(u) for u in listed)]
        names = [u.name for u in self.users]
        if len(names) != len(set(names)):
            raise ValueError("a console user name appears twice")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("set both ERASURE_CONSOLE_TLS_CERT and ERASURE_CONSOLE_TLS_KEY, or neither")
        return self

    @property
    def secure(self) -> bool:
        """Whether cookies carry Secure: under TLS, served here or by a proxy."""
        return self.cookie_secure or self.tls_cert is not None
