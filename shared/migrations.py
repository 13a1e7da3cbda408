"""Alembic, driven from code: each service keeps its migrations in services/<name>/migrations."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, MetaData


def alembic_config(migrations: Path, engine: Engine | None = None) -> Config:
    """An Alembic config for one service's migrations directory, bound to an engine when given."""
    config = Config()
    config.set_main_option("script_location", str(migrations))
    config.set_main_option("version_table", "alembic_version")
    if engine is not None:
        config.attributes["engine"] = engine
        config.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False))
    return config


def upgrade(engine: Engine, migrations: Path, revision: str = "head") -> None:
    """Run a service's migrations up to `revision` on the engine's database."""
    command.upgrade(alembic_config(migrations, engine), revision)


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
