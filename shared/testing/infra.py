"""Find a real broker and database: an env URL, else a local server, else a testcontainer where Docker runs."""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import subprocess
from urllib.parse import urlparse

from sqlalchemy import create_engine, text

LOCAL_AMQP = "amqp://guest:guest@127.0.0.1:5672/%2F"
LOCAL_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
_containers: list[object] = []


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
    if _answers(LOCAL_AMQP, 5672):
        return LOCAL_AMQP
    if docker_available():
        from testcontainers.rabbitmq import RabbitMqContainer

        container = RabbitMqContainer("rabbitmq:3.13-management").start()
        _containers.append(container)
        atexit.register(container.stop)
        host, port = container.get_container_host_ip(), container.get_exposed_port(5672)
        return f"amqp://guest:guest@{host}:{port}/%2F"
    return None


def postgres_url_or_none() -> str | None:
    """An admin URL: DATABASE_URL if PostgreSQL, else the local server, else a testcontainer, else None."""
    env = os.environ.get("DATABASE_URL", "")
    if env.startswith("postgresql"):
        return env.replace("postgresql://", "postgresql+psycopg://", 1)
    if _answers(LOCAL_POSTGRES, 5432):
        return LOCAL_POSTGRES
    if docker_available():
        from testcontainers.postgres import PostgresContainer

        container = PostgresContainer("postgres:16", driver="psycopg").start()
        _containers.append(container)
        atexit.register(container.stop)
        return container.get_connection_url()
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
