"""Find a real broker and database: an env URL, else a local server, else a testcontainer where Docker runs.

ERASURE_TEST_CONTAINERS=1 skips the local servers and always starts containers (what CI without services
runs, and how to prove the container path on a machine that has servers). The images are the names a user
would pull, overridable with ERASURE_TEST_RABBITMQ_IMAGE / ERASURE_TEST_POSTGRES_IMAGE; where no registry is
reachable, `make images` builds local images under those names (deploy/images/build.sh).

testcontainers' reaper (Ryuk) is an image of its own that cannot be pulled without a registry, so it is
disabled here unless TESTCONTAINERS_RYUK_DISABLED is set otherwise; the containers are stopped at exit instead.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import socket
import subprocess
from urllib.parse import urlparse

from sqlalchemy import create_engine, text

LOCAL_AMQP = "amqp://guest:guest@127.0.0.1:5672/%2F"
LOCAL_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
CONTAINERS_SETTING = "ERASURE_TEST_CONTAINERS"
RABBITMQ_IMAGE = "rabbitmq:3.13-management"
POSTGRES_IMAGE = "postgres:16"
_containers: list[object] = []
_broker_container: list[object] = []  # the RabbitMQ container this process started, if any


def containers_forced() -> bool:
    """Whether ERASURE_TEST_CONTAINERS asks for containers even where local servers answer."""
    return os.environ.get(CONTAINERS_SETTING, "").strip().lower() in {"1", "true", "yes", "on"}


def rabbitmq_image() -> str:
    """The RabbitMQ image tests start: ERASURE_TEST_RABBITMQ_IMAGE, else the public name."""
    return os.environ.get("ERASURE_TEST_RABBITMQ_IMAGE") or RABBITMQ_IMAGE


def postgres_image() -> str:
    """The PostgreSQL image tests start: ERASURE_TEST_POSTGRES_IMAGE, else the public name."""
    return os.environ.get("ERASURE_TEST_POSTGRES_IMAGE") or POSTGRES_IMAGE


def prepare_testcontainers() -> None:
    """Settings testcontainers reads at import: no reaper image to pull unless the caller asked for one."""
    os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")


def keep(container: object) -> None:
    """Stop a started container at the end of the test session (stop_containers), or else when this process
    exits; pytest-xdist workers may end without running atexit, so the plugin calls stop_containers."""
    _containers.append(container)


def stop_containers() -> None:
    """Stop every container this process started (idempotent)."""
    while _containers:
        container = _containers.pop()
        with contextlib.suppress(Exception):  # already gone: nothing left to stop
            container.stop()  # type: ignore[attr-defined]
    _broker_container.clear()


atexit.register(stop_containers)


def _answers(url: str, default_port: int) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or default_port), 1.0):
            return True
    except OSError:
        return False


def docker_available() -> bool:
    """Whether a Docker engine (not only the client) answers here."""
    if not shutil.which("docker"):
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=5, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def amqp_url_or_none() -> str | None:
    """AMQP_URL if set, else the local broker if it answers, else a RabbitMQ testcontainer, else None."""
    if os.environ.get("AMQP_URL"):
        return os.environ["AMQP_URL"]
    if not containers_forced() and _answers(LOCAL_AMQP, 5672):
        return LOCAL_AMQP
    if docker_available():
        prepare_testcontainers()
        try:
            from testcontainers.community.rabbitmq import RabbitMqContainer
        except ImportError:  # testcontainers before the community modules moved
            from testcontainers.rabbitmq import RabbitMqContainer

        container = RabbitMqContainer(rabbitmq_image()).start()
        keep(container)
        _broker_container.append(container)
        host, port = container.get_container_host_ip(), container.get_exposed_port(5672)
        return f"amqp://guest:guest@{host}:{port}/%2F"
    return None


def postgres_url_or_none() -> str | None:
    """An admin URL: DATABASE_URL if PostgreSQL, else the local server, else a testcontainer, else None."""
    env = os.environ.get("DATABASE_URL", "")
    if env.startswith("postgresql"):
        return env.replace("postgresql://", "postgresql+psycopg://", 1)
    if not containers_forced() and _answers(LOCAL_POSTGRES, 5432):
        return LOCAL_POSTGRES
    if docker_available():
        prepare_testcontainers()
        try:
            from testcontainers.community.postgres import PostgresContainer
        except ImportError:  # testcontainers before the community modules moved
            from testcontainers.postgres import PostgresContainer

        container = PostgresContainer(postgres_image(), driver="psycopg").start()
        keep(container)
        return container.get_connection_url()
    return None


def rabbitmqctl_argv(amqp_url: str) -> list[str] | None:
    """How to run `rabbitmqctl` against the broker at amqp_url: inside the container this process started,
    or the local tool when the broker is this machine's; None when neither applies (a remote broker)."""
    if _broker_container:
        return ["docker", "exec", _broker_container[0].get_wrapped_container().id, "rabbitmqctl"]  # type: ignore[attr-defined]
    if urlparse(amqp_url).hostname in {"127.0.0.1", "localhost"} and shutil.which("rabbitmqctl"):
        return ["rabbitmqctl"]
    return None


def create_database(admin_url: str, name: str) -> str:
    """Create a fresh PostgreSQL database and return its URL."""
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return str(engine.url.set(database=name).render_as_string(hide_password=False))


def drop_database(admin_url: str, name: str) -> None:
    """Drop a database even if connections linger."""
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()
