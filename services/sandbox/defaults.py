"""Where services find the sandbox in development: one variable, `ERASURE_SANDBOX_URL`, for every vendor."""

from __future__ import annotations

import os

DEFAULT_HTTP_PORT = 8480
DEFAULT_SMTP_PORT = 8025


def sandbox_url(path: str = "") -> str:
    """The sandbox's root URL (ERASURE_SANDBOX_URL, else its default local port) joined with a path."""
    base = os.environ.get("ERASURE_SANDBOX_URL") or f"http://127.0.0.1:{DEFAULT_HTTP_PORT}"
    return base.rstrip("/") + path


def sandbox_value(name: str) -> str:
    """A development credential the sandbox accepts by default (API keys, client ids, tokens)."""
    from services.sandbox.state import SandboxConfig

    return str(getattr(SandboxConfig(), name))
