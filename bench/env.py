"""The bench's world: broker and PostgreSQL URLs, namespaces, scratch databases, and the machine it runs on."""

from __future__ import annotations

import os
import platform
import shutil
import tempfile
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kombu
from amqp.exceptions import NotFound
from sqlalchemy import create_engine, text

from shared.settings import RuntimeSettings
from shared.testing.infra import create_database, drop_database
from shared.topology import Topology

LOCAL_AMQP = "amqp://guest:guest@127.0.0.1:5672/%2F"
LOCAL_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
BACKENDS = ("sqlite", "postgresql")


@dataclass
class BenchEnv:
    """One bench run's broker, databases and scratch directory; close() removes every trace of it."""

    amqp_url: str = field(default_factory=lambda: os.environ.get("AMQP_URL", LOCAL_AMQP))
    postgres_admin_url: str = field(default_factory=lambda: os.environ.get("BENCH_POSTGRES_URL", LOCAL_POSTGRES))
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="erasure-bench-")))
    databases: list[str] = field(default_factory=list)
    namespaces: list[str] = field(default_factory=list)
    queues: set[str] = field(default_factory=set)
    exchanges: set[str] = field(default_factory=set)

    def namespace(self, purpose: str) -> str:
        """A namespace of this run for one purpose; its queues and exchanges are deleted at close()."""
        name = f"bench{self.run_id}{purpose}"
        if name not in self.namespaces:
            self.namespaces.append(name)
        return name

    def remember(self, topology: Topology | None = None, *, queues: Iterable[str] = (),
                 exchanges: Iterable[str] = ()) -> None:
        """Queues and exchanges that this run (or a process it starts) declares; close() deletes them."""
        if topology is not None:
            self.queues.update(q.name for q in topology.queues)
            self.exchanges.update(name for name, _kind in topology.exchanges)
        self.queues.update(queues)
        self.exchanges.update(exchanges)

    def settings(self, namespace: str, **overrides: Any) -> RuntimeSettings:
        """Runtime settings for a bench namespace (defaults otherwise, as in production)."""
        return RuntimeSettings(amqp_url=self.amqp_url, namespace=namespace, **overrides)

    def database_url(self, backend: str, label: str) -> str:
        """A new, empty database: a SQLite file in the scratch directory, or a scratch PostgreSQL database."""
        if backend == "sqlite":
            return f"sqlite:///{self.workdir / f'{label}.db'}"
        if backend != "postgresql":
            raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
        name = f"bench{self.run_id}_{label}".lower()
        self.databases.append(name)
        return create_database(self.postgres_admin_url, name)

    def close(self) -> None:
        """Delete this run's queues, exchanges, scratch databases and files."""
        _delete_all(self.amqp_url, sorted(self.queues), sorted(self.exchanges))
        for name in self.databases:
            drop_database(self.postgres_admin_url, name)
        shutil.rmtree(self.workdir, ignore_errors=True)


def _delete_all(amqp_url: str, queues: list[str], exchanges: list[str]) -> None:
    with kombu.Connection(amqp_url) as conn:
        channel = conn.channel()
        for kind, names in (("queue_delete", queues), ("exchange_delete", exchanges)):
            for name in names:
                try:
                    getattr(channel, kind)(name)
                except NotFound:
                    channel = conn.channel()  # the broker closed the channel: it was never declared


def machine(env: BenchEnv) -> dict[str, Any]:
    """What the numbers were measured on: CPUs, memory, Python, RabbitMQ and PostgreSQL versions."""
    import psutil

    with kombu.Connection(env.amqp_url) as conn:
        conn.connect()
        props = conn.connection.server_properties
    engine = create_engine(env.postgres_admin_url)
    with engine.connect() as conn:
        pg_version = conn.execute(text("show server_version")).scalar_one()
    engine.dispose()
    cpu_model = next((line.split(":", 1)[1].strip() for line in _cpuinfo() if line.startswith("model name")), "")
    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu_model or platform.processor(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "rabbitmq": f"{_text(props.get('version'))} ({_text(props.get('platform', ''))})".strip(),
        "postgresql": str(pg_version),
        "sqlite": _sqlite_version(),
    }


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value or "")


def _cpuinfo() -> list[str]:
    try:
        return Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return []


def _sqlite_version() -> str:
    import sqlite3

    return sqlite3.sqlite_version
