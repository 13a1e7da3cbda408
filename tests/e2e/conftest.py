"""The whole pipeline in-process: all six services against one sandbox, on SQLite or PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from services.registry import SERVICES, load
from services.sandbox import Sandbox
from shared.testing import Pipeline, RunningService


@dataclass
class Stack:
    pipeline: Pipeline
    sandbox: Sandbox
    services: dict[str, RunningService]


@pytest.fixture
def stack(erasure_pipeline: Pipeline, db_backend: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    """Every service running against a private sandbox (ERASURE_SANDBOX_URL points all vendors at it)."""
    with Sandbox() as sandbox:
        monkeypatch.setenv("ERASURE_SANDBOX_URL", sandbox.http_url)
        running = {name: erasure_pipeline.start(load(name)) for name in SERVICES}
        yield Stack(erasure_pipeline, sandbox, running)
