"""`erasure`: run services, declare topology, publish events, check what is reachable."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from services.cli.demo import demo
from services.cli.dlq import dlq
from services.cli.intake import intake, replay, sweep
from services.cli.ledger import receipt, status
from services.cli.ops import publish
from services.cli.retention import retention
from services.registry import SERVICES
from shared.settings import RuntimeSettings, database_url_for, http_port_for

BROKER_HELP = """No RabbitMQ answers at {url}.
Start one with any of:
  make run                           (starts a private node or container itself, and the pipeline)
  docker compose -f deploy/compose.yaml up -d rabbitmq
  rabbitmq-server -detached          (Debian/Ubuntu: apt-get install rabbitmq-server)
or point the pipeline at another broker: export ERASURE_AMQP_URL=amqp://user:pass@host:5672/vhost"""


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
def cli() -> None:
    """Loggamera erasure pipeline: run and operate the services that enforce the privacy policy."""


@cli.command()
@click.argument("name", type=click.Choice([*SERVICES, "all", "sandbox"]))
@click.option("--no-sandbox", is_flag=True, help="With `all`: do not start the sandbox (real vendors).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="With `sandbox`: the address it listens on (0.0.0.0 inside a container).")
@click.option("--start-broker", is_flag=True,
              help="With `all`: if no RabbitMQ answers on this machine, start a private one (a node under var/ "
                   "when rabbitmq-server is installed, else a container) and stop it on exit.")
def run(name: str, no_sandbox: bool, host: str, start_broker: bool) -> None:
    """Run one service, the sandbox, or `all` of them as supervised processes.

    \b
    Examples:
      erasure run all              # every service + the sandbox, restarted if they crash
      erasure run all --start-broker   # what `make run` does: a broker too, if none answers
      erasure run newsletter       # one service in the foreground
      erasure run sandbox --host 0.0.0.0
    """
    from shared.logging import configure

    if name == "all":
        from contextlib import nullcontext

        from services.cli.local_broker import ensure_broker
        from services.cli.supervisor import run_all

        with ensure_broker(RuntimeSettings()) if start_broker else nullcontext():
            code = run_all(with_sandbox=not no_sandbox)
        sys.exit(code)
    if name == "sandbox":
        from services.sandbox.server import main as sandbox_main

        sandbox_main(["--host", host])
        return
    from services.registry import load
    from shared.consumer import ServiceRunner

    settings = RuntimeSettings()
    configure(settings.log_level, service=name)
    ServiceRunner(load(name), settings, database_url_for(name), http_port=http_port_for(name)).run()


@cli.command()
@click.option("--broker/--no-broker", default=True, help="Check that RabbitMQ answers.")
@click.option("--database", is_flag=True, help="Also check every service database.")
def doctor(broker: bool, database: bool) -> None:
    """Check that the broker (and databases) answer; say how to get them if not.

    \b
    Example:
      erasure doctor --database
    """
    from shared.broker import kombu_connection

    settings = RuntimeSettings()
    if broker:
        safe = kombu_connection(settings, name="erasure-doctor").as_uri()
        try:
            with kombu_connection(settings, name="erasure-doctor", connect_timeout=3) as conn:
                conn.ensure_connection(max_retries=1)
        except Exception as exc:  # any failure to connect is the same answer for the operator
            click.echo(BROKER_HELP.format(url=safe), err=True)
            click.echo(f"  ({type(exc).__name__}: {exc})", err=True)
            sys.exit(1)
        click.echo(f"broker ok: {safe}")
    if database:
        from sqlalchemy import text

        from shared.db import make_engine

        for name in SERVICES:
            engine = make_engine(database_url_for(name))
            with engine.connect() as conn:
                conn.execute(text("select 1"))
            click.echo(f"database ok: {name} ({engine.url.render_as_string(hide_password=True)})")


@cli.group()
def topology() -> None:
    """Exchanges and queues (DESIGN §3)."""


@topology.command("declare")
@click.option("--print", "show", is_flag=True, help="Print the topology as JSON instead of declaring it.")
def topology_declare(show: bool) -> None:
    """Declare every exchange, queue and binding (idempotent).

    \b
    Example:
      ERASURE_NAMESPACE=staging erasure topology declare
    """
    import dataclasses

    from shared.broker import kombu_connection
    from shared.consumer import full_topology
    from shared.topology import declare

    settings = RuntimeSettings()
    topo = full_topology(settings)
    if show:
        click.echo(json.dumps(dataclasses.asdict(topo), indent=2))
        return
    with kombu_connection(settings, name="erasure-topology") as conn:
        declare(conn.default_channel, topo)
    click.echo(f"declared {len(topo.exchanges)} exchanges and {len(topo.queues)} queues "
               f"in namespace {settings.namespace!r}")


@cli.group()
def schemas() -> None:
    """Event contracts: JSON Schema files and the AsyncAPI document."""


@schemas.command("generate")
@click.option("--check", is_flag=True, help="Only report stale files; exit 1 if any.")
def schemas_generate(check: bool) -> None:
    """Write schemas/json/*.json and schemas/asyncapi.yaml from the pydantic models.

    \b
    Examples:
      erasure schemas generate
      erasure schemas generate --check     # in CI: exit 1 if the committed files are stale
    """
    from schemas import generate as gen

    out = Path(gen.__file__).parent
    if check:
        stale = gen.check(out)
        for name in stale:
            click.echo(f"stale: {name}")
        sys.exit(1 if stale else 0)
    for path in gen.generate(out):
        click.echo(f"wrote {path}")


for command in (publish, dlq, status, receipt, retention, demo, intake, sweep, replay):
    cli.add_command(command)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="erasure")
