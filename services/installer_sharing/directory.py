"""The installer directory: each installation company's endpoint and credentials, and a client per company.

The directory lives in configuration only, not in the service database: the tokens are secrets, and a
database copy would sit in backups for three months and drift from the file operators actually edit.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import yaml
from pydantic import (
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from services.vendors.installer import InstallerClient
from services.vendors.rules import installer_endpoint_problem
from shared.errors import PermanentError

DIRECTORY_SETTING = "ERASURE_INSTALLER_SHARING_DIRECTORY"
_PLAIN_HTTP_HOSTS = "plain_http_hosts"  # validation context key: hosts a development setup allows plain http


class Installer(BaseModel):
    """One installation company as the directory lists it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, description="Name of the installation company.")
    endpoint_url: AnyHttpUrl = Field(description="Its HTTPS endpoint (contacts and erasure notices below it).")
    token: SecretStr = Field(min_length=1, description="Bearer token it issued to us.")

    @field_validator("endpoint_url")
    @classmethod
    def _https_outside_this_host(cls, url: AnyHttpUrl, info: ValidationInfo) -> AnyHttpUrl:
        # Contact details cross the internet to another company: plain HTTP only to this machine (sandbox), or
        # to a host a development setup lists explicitly (the sandbox's service name in compose).
        problem = installer_endpoint_problem(str(url), frozenset((info.context or {}).get(_PLAIN_HTTP_HOSTS, ())))
        if problem is not None:
            raise ValueError(problem)
        return url


_DIRECTORY = TypeAdapter(dict[str, Installer])


def parse_directory(source: str, plain_http_hosts: frozenset[str] = frozenset()) -> dict[str, Installer]:
    """The directory from inline JSON or a JSON/YAML file; ValueError naming what is wrong (never a token).

    `plain_http_hosts`: hosts besides this machine whose endpoints may be plain http (development only)."""
    text = source.strip()
    if text.startswith("{"):
        origin = "inline JSON"
        try:
            raw = json.loads(text)
        except ValueError as exc:
            raise ValueError(f"{DIRECTORY_SETTING} ({origin}) is not valid JSON: {exc}") from None
    else:
        origin = f"file {text}"
        try:
            raw = yaml.safe_load(Path(text).read_text(encoding="utf-8"))  # YAML reads JSON files too
        except OSError as exc:
            raise ValueError(f"{DIRECTORY_SETTING}: cannot read {origin}: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise ValueError(f"{DIRECTORY_SETTING} ({origin}) is neither JSON nor YAML: {exc}") from None
    if not isinstance(raw, dict) or not raw:
        raise ValueError(f"{DIRECTORY_SETTING} ({origin}) must map installer ids to {{name, endpoint_url, token}}")
    try:
        return _DIRECTORY.validate_python(raw, context={_PLAIN_HTTP_HOSTS: plain_http_hosts})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ValueError(f"{DIRECTORY_SETTING} ({origin}) is invalid: {problems}") from None


def sandbox_directory(sandbox_url: str, plain_http_hosts: frozenset[str] = frozenset()) -> dict[str, Installer]:
    """The sandbox's installers, reached under `<sandbox_url>/installers/<id>` with their development tokens."""
    from services.sandbox import DEFAULT_INSTALLERS

    root = sandbox_url.rstrip("/")
    context = {_PLAIN_HTTP_HOSTS: plain_http_hosts}
    try:
        return {
            installer_id: Installer.model_validate(
                {"name": f"Sandbox installer {installer_id}", "endpoint_url": f"{root}/installers/{installer_id}",
                 "token": token},
                context=context,
            )
            for installer_id, token in DEFAULT_INSTALLERS.items()
        }
    except ValidationError as exc:
        problems = "; ".join(e["msg"] for e in exc.errors())
        raise ValueError(f"ERASURE_INSTALLER_SHARING_SANDBOX_URL {sandbox_url!r}: {problems}") from None


class Installers:
    """The directory, with one pooled client per installation company, made on first use."""

    def __init__(self, directory: Mapping[str, Installer], *, attempts: int = 3,
                 plain_http_hosts: frozenset[str] = frozenset()) -> None:
        self.directory = dict(directory)
        self._attempts = attempts
        self._plain_http_hosts = plain_http_hosts
        self._clients: dict[str, InstallerClient] = {}

    def client(self, installer_id: str) -> InstallerClient:
        """The client of a listed installer; PermanentError if the directory does not list it."""
        client = self._clients.get(installer_id)
        if client is not None:
            return client
        entry = self.directory.get(installer_id)
        if entry is None:
            raise PermanentError(
                f"installer {installer_id!r} is not in the installer directory: add its endpoint and token to "
                f"{DIRECTORY_SETTING}, restart installer_sharing, then replay this dead letter"
            )
        client = InstallerClient(str(entry.endpoint_url), token=entry.token.get_secret_value(),
                                 attempts=self._attempts, plain_http_hosts=self._plain_http_hosts)
        self._clients[installer_id] = client
        return client

    def close(self) -> None:
        """Close every client's connections."""
        for client in self._clients.values():
            client.close()
        self._clients.clear()
