"""The console served by uvicorn on a free port in a background thread, for tests and the bench."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from shared.web import ThreadedServer


@contextmanager
def serving(app: Any, host: str = "127.0.0.1") -> Iterator[str]:
    """Serve `app` (with its lifespan: the metrics sampler) until the block ends; yields its base URL."""
    server = ThreadedServer(app, host, 0, lifespan="on").start()
    try:
        yield server.url
    finally:
        server.stop()
