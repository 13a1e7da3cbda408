"""pytest plugin (entry point `erasure`): a real broker, a private namespace, and the pipeline in-process.

Upstream services get it by installing this package:

    def test_deregistration_is_erased(erasure_pipeline):
        from services.registry import all_services
        for service in all_services():
            erasure_pipeline.start(service)
        ...
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.sandbox import Sandbox
from shared.settings import RuntimeSettings
from shared.testing.infra import (
    amqp_url_or_none,
    create_database,
    drop_database,
    postgres_url_or_none,
    stop_containers,
)
from shared.testing.memory import MemoryPipeline
from shared.testing.namespaces import lease_namespace, release_all
from shared.testing.pipeline import Pipeline


def pytest_sessionfinish() -> None:
    """Delete the test namespaces this process still holds, and stop the broker and database containers this
    session started (pytest-xdist workers skip atexit)."""
    release_all()
    stop_containers()


@pytest.fixture(scope="session")
def amqp_url() -> str:
    """A reachable broker: AMQP_URL, the local RabbitMQ, or a testcontainer; skips if none."""
    url = amqp_url_or_none()
    if url is None:
        pytest.skip("no RabbitMQ: set AMQP_URL, start rabbitmq-server, or run a Docker engine")
    return url


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    """A PostgreSQL URL that may create databases; skips if none."""
    url = postgres_url_or_none()
    if url is None:
        pytest.skip("no PostgreSQL: set DATABASE_URL, start PostgreSQL, or run a Docker engine")
    return url


def pytest_configure(config: pytest.Config) -> None:
    """Register the marker the PostgreSQL variants carry, so `-m postgres` selects them under --strict-markers;
    give the session keys of its own unless the environment names some."""
    config.addinivalue_line("markers", "postgres: needs PostgreSQL (the db_backend fixture's PostgreSQL variant)")
    _session_keys()


def _session_keys() -> None:
    """A fresh key file for this test run (and the processes it starts), and a key database per test process:
    pytest-xdist workers share the run's keys but never one SQLite key database, which two processes erasing
    and truncating its journal at once could leave malformed."""
    import os
    import tempfile

    from shared.keys import new_material, write_key_file

    made = os.environ.get("ERASURE_TEST_KEYS_DIR")
    if made is None:
        if os.environ.get("ERASURE_KEYS_KEK") or os.environ.get("ERASURE_KEYS_FILE"):
            return  # the environment names its own keys
        where = Path(tempfile.mkdtemp(prefix="erasure-keys-"))
        write_key_file(where / "keys.json", new_material())
        os.environ["ERASURE_KEYS_FILE"] = str(where / "keys.json")
        os.environ["ERASURE_TEST_KEYS_DIR"] = made = str(where)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    os.environ["ERASURE_KEYS_DATABASE_URL"] = f"sqlite:///{Path(made) / f'keys-{worker}.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_backend(request: pytest.FixtureRequest) -> str:
    """Run the test once per database backend; the PostgreSQL variant carries the `postgres` marker."""
    return str(request.param)


@pytest.fixture
def sandbox(monkeypatch: pytest.MonkeyPatch) -> Iterator[Sandbox]:
    """A private sandbox for this test; every service's vendor defaults point at it (ERASURE_SANDBOX_URL)."""
    with Sandbox() as running:
        monkeypatch.setenv("ERASURE_SANDBOX_URL", running.http_url)
        yield running


def _postgres_admin_url_if_asked(request: pytest.FixtureRequest) -> str | None:
    """PostgreSQL's admin URL when the test runs under db_backend=postgresql; None for SQLite."""
    backend = request.getfixturevalue("db_backend") if "db_backend" in request.fixturenames else "sqlite"
    return request.getfixturevalue("postgres_admin_url") if backend == "postgresql" else None


PIPELINE_SETTINGS = {"retry_delays": (0.2, 0.4, 0.8), "delivery_limit": 5}


@pytest.fixture(scope="session")
def erasure_namespace(amqp_url: str) -> Iterator[str]:
    """One broker namespace for this test process, leased from a pool (tests purge it between them; deleted at the
    end of the session)."""
    lease = lease_namespace(RuntimeSettings(amqp_url=amqp_url, **PIPELINE_SETTINGS))
    yield lease.namespace
    lease.idle()


@pytest.fixture
def erasure_pipeline(
    amqp_url: str, erasure_namespace: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Pipeline]:
    """A Pipeline on the process's namespace, emptied before and after; PostgreSQL under db_backend=postgresql."""
    admin = _postgres_admin_url_if_asked(request)
    pipeline = Pipeline(amqp_url, workdir=tmp_path, postgres_admin_url=admin, namespace=erasure_namespace,
                        keep_namespace=True, **PIPELINE_SETTINGS)
    pipeline.purge()
    try:
        yield pipeline
    finally:
        pipeline.close()


@pytest.fixture
def erasure_memory(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[MemoryPipeline]:
    """Services on the in-memory transport (no broker); PostgreSQL under db_backend=postgresql, else SQLite."""
    admin = _postgres_admin_url_if_asked(request)
    pipeline = MemoryPipeline(workdir=tmp_path, postgres_admin_url=admin, **PIPELINE_SETTINGS)
    try:
        yield pipeline
    finally:
        pipeline.close()


@pytest.fixture
def empty_database_url(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """A new, empty database (PostgreSQL under db_backend=postgresql, else SQLite), dropped after the test."""
    admin = _postgres_admin_url_if_asked(request)
    name = f"t_{uuid.uuid4().hex[:12]}"
    url = create_database(admin, name) if admin else f"sqlite:///{tmp_path / f'{name}.db'}"
    yield url
    if admin:
        drop_database(admin, name)
