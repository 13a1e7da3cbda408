"""One engine per service database, the inbox and outbox tables, and schema migration."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Engine,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
)
from sqlalchemy.orm import Session, sessionmaker

from shared.settings import DatabaseSettings
from shared.tls import database_tls_args

SQLITE_BUSY_TIMEOUT_MS = 30_000
WIPE_BUSY_TIMEOUT_MS = 200


def runtime_metadata() -> MetaData:
    """A fresh MetaData with the runtime's inbox, outbox, tombstone and legal-hold tables; each service adds its own."""
    metadata = MetaData()
    Table(
        "inbox",
        metadata,
        Column("event_id", String(36), primary_key=True),
        Column("event_type", String(120), nullable=False),
        Column("body_sha256", String(64), nullable=False),
        Column("handled_at", DateTime(timezone=True), nullable=False),
    )
    Table(
        "outbox",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("event_id", String(36), nullable=False),
        Column("event_type", String(120), nullable=False),
        Column("routing_key", String(200), nullable=False),
        Column("body", LargeBinary, nullable=False),
        Column("signature", String(200), nullable=False),
        Column("source", String(200), nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False),
    )
    Table(
        "tombstones",
        metadata,
        Column("user_id", String(64), primary_key=True),
        Column("request_id", String(36), nullable=False),
        Column("erased_at", DateTime(timezone=True), nullable=False),
    )
    # The newest legal hold state per user (told by the ledger), and erasures deferred under a hold (shared/hold.py).
    Table(
        "hold_states",
        metadata,
        Column("user_id", String(64), primary_key=True),
        Column("hold_id", Integer, nullable=False),
        Column("held", Boolean, nullable=False),
        Column("changed_at", DateTime(timezone=True), nullable=False),
    )
    Table(
        "parked_erasures",
        metadata,
        Column("event_id", String(36), primary_key=True),
        Column("user_id", String(64), nullable=False, index=True),
        Column("request_id", String(36), nullable=False),
        Column("envelope", Text, nullable=False),
        Column("parked_at", DateTime(timezone=True), nullable=False),
    )
    return metadata


def make_engine(url: str, *, pool_size: int | None = None, echo: bool = False, **kwargs: Any) -> Engine:
    """An engine for a service database; SQLite gets WAL, a busy timeout and real SAVEPOINTs.

    PostgreSQL gets its pool size and TLS from `ERASURE_DB_*` (DatabaseSettings) unless pool_size is given.
    """
    if url.startswith("sqlite"):
        engine = create_engine(url, echo=echo, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}, **kwargs)
        _tune_sqlite(engine)
        return engine
    db = DatabaseSettings()
    return create_engine(
        url, echo=echo, pool_size=db.pool_size if pool_size is None else pool_size, max_overflow=db.max_overflow,
        pool_pre_ping=True, pool_recycle=1800,
        connect_args={"connect_timeout": 5, **database_tls_args(url, db)}, **kwargs,
    )


def _tune_sqlite(engine: Engine) -> None:
    # pysqlite's own transaction handling breaks SAVEPOINT; take control of BEGIN ourselves (SQLAlchemy docs).
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        # Deleted rows are overwritten with zeros, not left in free pages (erasure must reach the disk).
        cursor.execute("PRAGMA secure_delete=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # IMMEDIATE takes the write lock up front: two writers wait instead of deadlocking on upgrade.
        # Read-only work (health checks, the outbox poll) asks for DEFERRED so it never waits for a writer.
        mode = connection.get_execution_options().get("sqlite_begin", "IMMEDIATE")
        connection.exec_driver_sql(f"BEGIN {mode}")


def wipe_sqlite_journal(engine: Engine) -> None:
    """Copy the WAL into the database and truncate it to zero bytes, so that overwritten or deleted rows no
    longer survive in it (after an erasure batch); a no-op elsewhere than SQLite, and while readers hold it."""
    if engine.dialect.name != "sqlite":
        return
    raw = engine.raw_connection()  # outside any transaction: a checkpoint cannot run inside one
    try:
        cursor = raw.cursor()
        # Wait briefly for readers of other processes, never a whole busy timeout: the next wipe finishes the job.
        cursor.execute(f"PRAGMA busy_timeout={WIPE_BUSY_TIMEOUT_MS}")
        try:
            cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.close()
    finally:
        raw.close()


def session_factory(engine: Engine, metadata: MetaData | None = None) -> sessionmaker[Session]:
    """Sessions that keep loaded values after commit and know the service's tables (session.info)."""
    info = {"tables": metadata.tables} if metadata is not None else {}
    return sessionmaker(engine, expire_on_commit=False, info=info)


def ensure_schema(engine: Engine, metadata: MetaData, migrations: Path | None = None) -> None:
    """Bring the database to the newest schema: Alembic migrations when the service has them."""
    if migrations is not None and (migrations / "env.py").exists():
        from shared.migrations import upgrade

        upgrade(engine, migrations)
    else:
        metadata.create_all(engine)
