"""Alembic, driven from code: each service keeps its migrations in services/<name>/migrations."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, MetaData

TEMPLATE = Path(__file__).with_name("migrations_template.mako")


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
        command.revision(alembic_config(migrations, engine), message=message, autogenerate=True)
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
