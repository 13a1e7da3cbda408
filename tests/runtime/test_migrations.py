"""The runtime's tables come from one shared migration branch: new and existing databases upgrade to the same schema."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, insert, inspect, select

from services.registry import SERVICES, load
from shared.db import ensure_schema, make_engine
from shared.migrations import RUNTIME_BRANCH, alembic_config, service_head
from shared.service import Service

SERVICES_WITH_MIGRATIONS = [name for name in SERVICES if load(name).migrations is not None]


def _differences(engine: Engine, service: Service) -> list:
    with engine.connect() as conn:
        return compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), service.metadata)


def _versions(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return set(MigrationContext.configure(conn).get_current_heads())


def _runtime_head(service: Service) -> str:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config(service.migrations))
    [head] = [r.revision for r in script.walk_revisions() if RUNTIME_BRANCH in r.branch_labels and r.is_head]
    return head


@pytest.mark.parametrize("name", SERVICES_WITH_MIGRATIONS)
def test_an_empty_database_gets_the_service_and_runtime_tables(name: str, empty_database_url: str, db_backend: str
                                                                ) -> None:
    service = load(name)
    engine = make_engine(empty_database_url)
    try:
        ensure_schema(engine, service.metadata, service.migrations)
        assert {"inbox", "outbox", "tombstones"} <= set(inspect(engine).get_table_names())
        assert _differences(engine, service) == []
        config = alembic_config(service.migrations)
        assert _versions(engine) == {service_head(config), _runtime_head(service)}
        ensure_schema(engine, service.metadata, service.migrations)  # a second start changes nothing
        assert _differences(engine, service) == []
    finally:
        engine.dispose()


@pytest.mark.parametrize("name", SERVICES_WITH_MIGRATIONS)
def test_a_database_at_the_services_former_head_upgrades_and_keeps_its_rows(
    name: str, empty_database_url: str, db_backend: str
) -> None:
    """Before the runtime branch, a service's first migration made the runtime tables: such a database has every
    table and only the service's head recorded."""
    service = load(name)
    engine = make_engine(empty_database_url)
    try:
        service.metadata.create_all(engine)
        config = alembic_config(service.migrations, engine)
        command.stamp(config, service_head(config))
        inbox = service.metadata.tables["inbox"]
        with engine.begin() as conn:
            conn.execute(insert(inbox).values(event_id="e-1", event_type="t", body_sha256="0" * 64,
                                              handled_at=datetime.now(UTC)))
        ensure_schema(engine, service.metadata, service.migrations)
        assert _versions(engine) == {service_head(config), _runtime_head(service)}
        assert _differences(engine, service) == []
        with engine.connect() as conn:
            assert conn.execute(select(inbox.c.event_id)).scalars().all() == ["e-1"]
    finally:
        engine.dispose()
