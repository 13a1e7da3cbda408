"""Fixtures of the runtime's stage tests: the probe service's tables on a fresh database of each backend."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from shared.db import ensure_schema, make_engine
from tests.probe_service import metadata


@pytest.fixture
def engine(empty_database_url: str, db_backend: str) -> Iterator[Engine]:
    """The probe's tables (the runtime's inbox and outbox among them) on a fresh database of the backend."""
    engine = make_engine(empty_database_url)
    ensure_schema(engine, metadata, None)
    yield engine
    engine.dispose()
