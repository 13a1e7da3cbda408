"""Alembic, driven from code: each service keeps its migrations in services/<name>/migrations.

Every service's environment also includes the runtime's migrations (shared/runtime/migrations, branch
"runtime": the inbox, outbox and tombstone tables), so a database has two heads: its service's and the runtime's.
"""

from __future__ import annotations

import os
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, MetaData

TEMPLATE = Path(__file__).with_name("migrations_template.mako")
RUNTIME_MIGRATIONS = Path(__file__).with_name("runtime") / "migrations"
RUNTIME_BRANCH = "runtime"


def alembic_config(migrations: Path, engine: Engine | None = None, *, with_runtime: bool = True) -> Config:
    """An Alembic config for one service's migrations directory, bound to an engine when given; with the
    runtime's tables unless `with_runtime` is false (the key store's database has none)."""
    config = Config()
    config.set_main_option("script_location", str(migrations))
    config.set_main_option("path_separator", "os")
    locations = (str(migrations / "versions"), str(RUNTIME_MIGRATIONS)) if with_runtime else \
        (str(migrations / "versions"),)
    config.set_main_option("version_locations", os.pathsep.join(locations))
    config.set_main_option("version_table", "alembic_version")
    if engine is not None:
        config.attributes["engine"] = engine
        config.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False))
    return config


def upgrade(engine: Engine, migrations: Path, revision: str = "heads", *, with_runtime: bool = True) -> None:
    """Run a service's migrations (and the runtime's) up to `revision` on the engine's database."""
    command.upgrade(alembic_config(migrations, engine, with_runtime=with_runtime), revision)


def service_head(config: Config) -> str:
    """The newest revision of the service's own branch (the other head is the runtime's)."""
    script = ScriptDirectory.from_config(config)
    runtime = {r.revision for r in script.walk_revisions() if RUNTIME_BRANCH in r.branch_labels}
    [head] = [h for h in script.get_heads() if h not in runtime]
    return head


def make_revision(migrations: Path, message: str) -> None:
    """Autogenerate the next revision of a service's schema (compares its models with a scratch database)."""
    import tempfile

    from shared.db import make_engine

    migrations.joinpath("versions").mkdir(parents=True, exist_ok=True)
    template = migrations / "script.py.mako"
    if not template.exists():
        template.write_text(TEMPLATE.read_text())
    with tempfile.TemporaryDirectory() as scratch:
        engine = make_engine(f"sqlite:///{scratch}/scratch.db")
        upgrade(engine, migrations)
        config = alembic_config(migrations, engine)
        command.revision(config, message=message, autogenerate=True, head=service_head(config))
        engine.dispose()


def run_env(metadata: MetaData) -> None:
    """The body of every service's migrations/env.py: online migrations on the configured engine."""
    from alembic import context

    engine = context.config.attributes.get("engine")
    if engine is None:
        from shared.db import make_engine

        engine = make_engine(context.config.get_main_option("sqlalchemy.url") or "sqlite://")
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()
