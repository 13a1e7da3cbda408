"""Settings from the environment, with defaults that run on a developer's machine as-is."""

from __future__ import annotations

import os
import re
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEV_SIGNING_KEY = "dev:insecure-development-key-change-me"
VAR_DIR = Path(os.environ.get("ERASURE_VAR_DIR", "var"))


def broker_urls(value: str) -> tuple[str, ...]:
    """Split `ERASURE_AMQP_URL` into one URL per broker node: `,` or `;` separate them (kombu's own separator
    is `;`, a shell list is more often `,`). Every URL must be amqp:// or amqps://, all with the same scheme:
    a list that mixes TLS and plain connections would silently downgrade on failover."""
    urls = tuple(part.strip() for part in re.split(r"[,;]", value) if part.strip())
    if not urls:
        raise ValueError("ERASURE_AMQP_URL is empty; give amqp://user:password@host:5672/vhost")
    schemes = {urlsplit(url).scheme for url in urls}
    if not schemes <= {"amqp", "amqps"}:
        bad = next(url for url in urls if urlsplit(url).scheme not in ("amqp", "amqps"))
        raise ValueError(f"ERASURE_AMQP_URL: {_without_password(bad)!r} is not an amqp:// or amqps:// URL")
    if len(schemes) > 1:
        raise ValueError("ERASURE_AMQP_URL mixes amqp:// and amqps:// nodes; use one scheme for every node")
    for url in urls:
        parts = urlsplit(url)
        if not parts.hostname:
            raise ValueError(f"ERASURE_AMQP_URL: {_without_password(url)!r} names no host")
        try:
            parts.port  # noqa: B018 - raises on a port that is not a number in range
        except ValueError as exc:
            raise ValueError(f"ERASURE_AMQP_URL: {_without_password(url)!r}: {exc}") from None
    return urls


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@", 1)).geturl()


class RuntimeSettings(BaseSettings):
    """Broker, signing and processing settings shared by every service (env prefix `ERASURE_`)."""

    # A value that fails validation is not repeated in the error: broker URLs and signing keys hold secrets.
    model_config = SettingsConfigDict(env_prefix="ERASURE_", extra="ignore", hide_input_in_errors=True)

    amqp_url: str = Field(
        "amqp://guest:guest@127.0.0.1:5672/%2F",
        validation_alias=AliasChoices("ERASURE_AMQP_URL", "AMQP_URL"),
        description="Broker URL, or the URLs of a cluster's nodes separated by `,` or `;` (tried in turn); "
        "amqps:// for TLS.",
    )
    namespace: str = Field("erasure", description="Prefix of every exchange and queue name.")
    source: str = Field("urn:loggamera:erasure", description="CloudEvents `source` of events we emit.")
    signing_keys: str = Field(
        DEV_SIGNING_KEY,
        description="Accepted HMAC keys as `id:secret,id:secret` (two during a rotation).",
    )
    signing_key_id: str = Field("dev", description="Id of the key used to sign what we publish.")
    retry_delays: Annotated[tuple[float, ...], NoDecode] = Field(
        (1.0, 10.0, 60.0, 600.0, 3600.0),
        description="Back-off tiers in seconds; one delay queue each. Past the last, dead-letter.",
    )
    delivery_limit: int = Field(20, description="Quorum x-delivery-limit: guard against crash loops.")
    prefetch: int = Field(200, description="Per-consumer prefetch (quorum queues refuse global QoS).")
    batch_size: int = Field(100, description="Deliveries handled in one database transaction.")
    outside_concurrency: int = Field(
        8, ge=1, description="Outside steps (vendor calls) of one batch run at once; 8 stays under the ~10 "
        "concurrent connections Mailchimp allows per API key.")
    max_body_bytes: int = Field(256 * 1024, description="Larger messages are dead-lettered as oversized.")
    max_clock_skew: float = Field(
        300.0, ge=0, description="Seconds an event's instants may lie in the future before it is dead-lettered.")
    dead_letter_ttl_days: float = Field(90, description="Dead letters hold personal data: they expire.")
    heartbeat: int = Field(30, description="AMQP heartbeat in seconds.")
    log_level: str = Field("INFO")
    http_host: str = Field("127.0.0.1", description="Where /metrics, /healthz and /readyz listen (0.0.0.0 in a pod).")
    declare: Literal["all", "own", "none"] = Field(
        "all",
        description="What a service declares at start: the whole topology, only its own queue and delay queues "
        "(least-privilege broker accounts, deploy/rabbitmq), or nothing; the rest is only checked to exist.",
    )
    amqp_tls_ca: str | None = Field(None, description="CA bundle that signed the broker's certificate (amqps://).")
    amqp_tls_cert: str | None = Field(None, description="Client certificate for mutual TLS with the broker.")
    amqp_tls_key: str | None = Field(None, description="Private key of the client certificate.")

    @field_validator("amqp_url")
    @classmethod
    def _check_broker_urls(cls, value: str) -> str:
        broker_urls(value)  # a list that cannot be used fails at start, with the reason
        return value

    @property
    def amqp_urls(self) -> tuple[str, ...]:
        """The broker URL, or every node of a cluster, in the order given."""
        return broker_urls(self.amqp_url)

    @field_validator("retry_delays", mode="before")
    @classmethod
    def _split_delays(cls, value: object) -> object:
        if isinstance(value, str):  # "1,10,60" (documented) or a JSON list "[1, 10, 60]"
            return tuple(float(part) for part in value.strip().strip("[]").split(",") if part.strip())
        return value

    @cached_property
    def keyring(self) -> dict[str, bytes]:
        """Accepted signing keys by id."""
        ring: dict[str, bytes] = {}
        for item in self.signing_keys.split(","):
            key_id, sep, secret = item.strip().partition(":")
            if not sep or not key_id or not secret:
                raise ValueError("ERASURE_SIGNING_KEYS must look like `id:secret[,id:secret]`")
            ring[key_id] = secret.encode()
        if self.signing_key_id not in ring:
            raise ValueError(f"signing key {self.signing_key_id!r} is not in ERASURE_SIGNING_KEYS")
        return ring


class DatabaseSettings(BaseSettings):
    """Pool and TLS of every service's PostgreSQL connections (env prefix `ERASURE_DB_`)."""

    model_config = SettingsConfigDict(env_prefix="ERASURE_DB_", extra="ignore")

    pool_size: int = Field(5, ge=1, description="Connections a process keeps open to its database.")
    max_overflow: int = Field(5, ge=0, description="Extra connections allowed at a peak, closed when returned.")
    sslmode: str | None = Field(None, description="libpq sslmode (verify-full in production); the URL's own wins.")
    sslrootcert: str | None = Field(None, description="CA bundle that signed the database server's certificate.")
    sslcert: str | None = Field(None, description="Client certificate, when the server asks for one.")
    sslkey: str | None = Field(None, description="Private key of the client certificate.")


HTTP_PORTS = {"account": 9101, "installer_sharing": 9102, "payment": 9103, "bookkeeping": 9104,
              "newsletter": 9105, "ledger": 9106}


def http_port_for(service: str) -> int:
    """The port of a service's health/metrics server: `ERASURE_<SERVICE>_HTTP_PORT` or its default."""
    return int(os.environ.get(f"ERASURE_{service.upper()}_HTTP_PORT", HTTP_PORTS.get(service, 0)))


def database_url_for(service: str) -> str:
    """The database URL of one service: its own variable, a `{service}` template, or SQLite under var/."""
    own = os.environ.get(f"ERASURE_{service.upper()}_DATABASE_URL")
    if own:
        return own
    template = os.environ.get("ERASURE_DATABASE_URL")
    if template:
        return template.format(service=service)
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{VAR_DIR / f'{service}.db'}"
