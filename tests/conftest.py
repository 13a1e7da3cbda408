"""Our suite uses the same pytest plugin that upstream services get (entry point `erasure`)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from services.sandbox import Sandbox

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def sandbox_server() -> Iterator[Sandbox]:
    """One sandbox for a whole test module (modules that test the vendors' fakes reset it per test)."""
    with Sandbox() as sandbox:
        yield sandbox


@pytest.fixture
def http(sandbox: Sandbox) -> Iterator[httpx.Client]:
    """A client of the test's sandbox."""
    with httpx.Client(base_url=sandbox.http_url, timeout=5) as client:
        yield client


@pytest.fixture
def spawn() -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start a Python module as a child process; every child is killed at the end of the test."""
    children: list[subprocess.Popen[bytes]] = []

    def start(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        import os

        child = subprocess.Popen([sys.executable, "-m", *args], cwd=ROOT, env={**os.environ, **(env or {})},
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        children.append(child)
        return child

    yield start
    for child in children:
        if child.poll() is None:
            child.kill()
        child.wait(10)
