"""Fixtures of the console tests: users with real argon2 hashes, a migrated ledger per backend, a served console."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from argon2 import PasswordHasher

from services.console.app import create_app
from services.console.settings import ConsoleSettings, ConsoleUser
from services.console.testing import serving
from shared.settings import RuntimeSettings
from shared.testing.infra import create_database, drop_database

PASSWORDS = {"vera": "viewer-password-1", "otto": "operator-password-1"}
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def console_users() -> list[ConsoleUser]:
    hasher = PasswordHasher()
    return [ConsoleUser(name="vera", role="viewer", password_hash=hasher.hash(PASSWORDS["vera"])),
            ConsoleUser(name="otto", role="operator", password_hash=hasher.hash(PASSWORDS["otto"]))]


@pytest.fixture(scope="session")
def users() -> list[ConsoleUser]:
    return console_users()


def _database(backend: str, tmp_path: Path, request: pytest.FixtureRequest, stem: str) -> Iterator[str]:
    name = f"{stem}_{uuid.uuid4().hex[:10]}"
    admin = request.getfixturevalue("postgres_admin_url") if backend == "postgresql" else None
    yield create_database(admin, name) if admin else f"sqlite:///{tmp_path / f'{name}.db'}"
    if admin:
        drop_database(admin, name)


@pytest.fixture
def ledger_url(db_backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """An empty ledger database on this run's backend (the console migrates it on start)."""
    yield from _database(db_backend, tmp_path, request, "cledger")


@pytest.fixture
def account_url(db_backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    yield from _database(db_backend, tmp_path, request, "caccount")


@dataclass
class Served:
    """A console served on a free port: its URL, its app, and a logged-in client factory."""

    url: str
    app: Any
    clients: list[httpx.Client] = field(default_factory=list)

    def client(self) -> httpx.Client:
        """A fresh client with no cookies (closed with the console)."""
        client = httpx.Client(base_url=self.url, timeout=30)
        self.clients.append(client)
        return client

    def login(self, name: str, password: str | None = None) -> httpx.Client:
        client = self.client()
        resp = client.post("/login", data={"csrf": form_token(client.get("/login")), "username": name,
                                           "password": password or PASSWORDS[name]})
        assert resp.status_code == 303, resp.text
        return client


def form_token(resp: httpx.Response) -> str:
    found = CSRF.search(resp.text)
    assert found, f"no CSRF token on {resp.url}"
    return found.group(1)


@pytest.fixture
def serve(users: list[ConsoleUser]) -> Callable[..., Any]:
    """Serve a console on a ledger (and account) database; stopped at the end of the test."""
    stack: list[Any] = []

    def start(ledger_url: str, *, account_url: str | None = None, runtime: RuntimeSettings | None = None,
              **settings: Any) -> Served:
        config = ConsoleSettings(**{"users": users, **settings})
        app = create_app(config, runtime or RuntimeSettings(), ledger_url=ledger_url, account_url=account_url,
                         sample=bool(settings.get("metrics_urls")))
        context = serving(app)
        url = context.__enter__()
        served = Served(url, app)
        stack.append((context, served))
        return served

    yield start
    for context, served in reversed(stack):
        for client in served.clients:
            client.close()
        context.__exit__(None, None, None)


@contextmanager
def opened(client: httpx.Client) -> Iterator[httpx.Client]:
    """`with` for a client that may already have sent requests (closed with the console anyway)."""
    yield client
