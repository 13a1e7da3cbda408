"""Our suite uses the same pytest plugin that upstream services get (entry point `erasure`)."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.sandbox import Sandbox

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """A CLI command routes logging to its (captured) stderr, as a one-shot process may; later tests get theirs
    back."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


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


@pytest.fixture
def at_once(sandbox_server: Sandbox) -> Callable[..., tuple[list[int], int]]:
    """Send `n` requests to a vendor of the sandbox at once: every one held in flight (the fakes answer under the
    state lock) until all have arrived or 10 s passed, then let through. Returns their statuses and how many were
    in flight together."""

    def send(vendor: str, n: int, path: str, **request: Any) -> tuple[list[int], int]:
        statuses: list[int] = []

        def one() -> None:
            with httpx.Client(base_url=sandbox_server.http_url, timeout=10) as client:
                statuses.append(client.get(path, **request).status_code)

        with sandbox_server.state_lock():
            threads = [threading.Thread(target=one) for _ in range(n)]
            for thread in threads:
                thread.start()
            deadline = time.monotonic() + 10
            while sandbox_server.in_flight(vendor) < n and time.monotonic() < deadline:
                time.sleep(0.01)
            together = sandbox_server.in_flight(vendor)
        for thread in threads:
            thread.join()
        return statuses, together

    return send
