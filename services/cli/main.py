"""`erasure`: run services, declare topology, publish events, check what is reachable."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from services.cli.access import access
from services.cli.console import console
from services.cli.correction import correction
from services.cli.demo import demo
from services.cli.dlq import dlq
from services.cli.errors import OperatorGroup, settings_problem
from services.cli.intake import intake, replay, sweep
from services.cli.keys import keys
from services.cli.ledger import receipt, retry, status
from services.cli.legal import extend, hold, release
from services.cli.ops import publish
from services.cli.retention import retention
from services.registry import SERVICES
from shared.settings import RuntimeSettings, database_url_for, http_port_for

DISTRIBUTION = "loggamera-erasure"
BROKER_HELP = """No RabbitMQ answers at {url}.
Start one with any of:
  make run                           (starts a private node or container itself, and the pipeline)
  docker compose -f deploy/compose.yaml up -d rabbitmq
  rabbitmq-server -detached          (Debian/Ubuntu: apt-get install rabbitmq-server)
or point the pipeline at another broker: export ERASURE_AMQP_URL=amqp://user:pass@host:5672/vhost"""


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:
        return "unknown (not installed)"


@click.group(cls=OperatorGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(version=_version(), prog_name="erasure", message="%(prog)s %(version)s")
def cli() -> None:
    """Loggamera erasure pipeline: run and operate the services that enforce the privacy policy.

    Exit codes: 0 done, 1 failed (one line on stderr says why and what to do), 2 usage error. Logs go to
    stderr, so stdout holds only the answer (pure JSON with --json).
    """
    import os

    from shared.keys import use_key_store
    from shared.logging import configure

    configure(os.environ.get("ERASURE_LOG_LEVEL", "WARNING"))  # each command may raise the level it needs
    use_key_store(None)  # the key store of this invocation's settings, built when a command first needs it


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
        from shared.keys import key_store

        key_store().check()  # once here, rather than six services failing and restarting for the same reason

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
@click.option("--broker/--no-broker", default=True, show_default=True, help="Check that RabbitMQ answers.")
@click.option("--database/--no-database", default=True, show_default=True, help="Check every service database.")
@click.option("--json", "as_json", is_flag=True, help="Print the checks as JSON.")
def doctor(broker: bool, database: bool, as_json: bool) -> None:
    """Check that the broker and every service database answer; say how to get them if not. Exit 1 if any fails.

    The broker's headroom (descriptors, memory, queues) is shown too, with a warning and its fix when the
    descriptor limit is under 4096 or more than 80 % of descriptors or memory is in use.

    \b
    Examples:
      erasure doctor
      erasure doctor --no-database --json
    """
    checks = ([_check_broker()] if broker else []) + ([_check_database(n) for n in SERVICES] if database else []) \
        + [_check_keys()]
    failed = [c for c in checks if not c["ok"]]
    if as_json:
        click.echo(json.dumps({"ok": not failed, "checks": checks}, indent=2))
    else:
        for check in checks:
            click.echo(f"{check['what']} {'ok' if check['ok'] else 'FAILED'}: {check['where']}"
                       + ("" if check["ok"] else f" ({check['error']})"))
            if "headroom" in check:
                click.echo(f"  headroom: {check['headroom']}")
            for warning in check.get("warnings", []):
                click.echo(f"  WARNING: {warning}", err=True)
        if failed:
            click.echo("\n".join(dict.fromkeys(c["fix"] for c in failed)), err=True)
    sys.exit(1 if failed else 0)


def _check_broker() -> dict[str, Any]:
    from shared.broker import kombu_connection

    settings = RuntimeSettings()
    safe = kombu_connection(settings, name="erasure-doctor").as_uri()
    try:
        with kombu_connection(settings, name="erasure-doctor", connect_timeout=3) as conn:
            conn.ensure_connection(max_retries=1)
    except Exception as exc:  # any failure to connect is the same answer for the operator
        return {"what": "broker", "where": safe, "ok": False, "error": f"{type(exc).__name__}: {exc}",
                "fix": BROKER_HELP.format(url=safe)}
    return {"what": "broker", "where": safe, "ok": True, **_broker_headroom(settings.amqp_url)}


def _broker_headroom(amqp_url: str) -> dict[str, Any]:
    """The node's headroom and its warnings; a headroom that cannot be read is said, not failed."""
    from ops import headroom

    try:
        found = headroom.read(amqp_url)
    except headroom.HeadroomUnknown as exc:
        return {"headroom": f"not read ({exc})", "warnings": []}
    return {"headroom": found.summary(), "headroom_figures": found.as_dict(), "warnings": found.warnings()}


def _check_keys() -> dict[str, Any]:
    from shared.keys import KeyConfigError, key_store

    try:
        store = key_store()
        live = store.check()
    except KeyConfigError as exc:
        return {"what": "keys", "where": "key-encryption keys", "ok": False, "error": str(exc),
                "fix": "create keys with `erasure keys generate`, or restore the key file / ERASURE_KEYS_KEK"}
    except Exception as exc:  # the key database not answering is one answer for the operator
        reason = " ".join(str(exc).split())[:200]
        return {"what": "keys", "where": "key database", "ok": False, "error": f"{type(exc).__name__}: {reason}",
                "fix": "set ERASURE_KEYS_DATABASE_URL or ERASURE_DATABASE_URL to a database that answers"}
    return {"what": "keys", "where": f"{sum(live.values())} live data keys open with {store.material.origin}",
            "ok": True}


def _check_database(name: str) -> dict[str, Any]:
    from sqlalchemy import text
    from sqlalchemy.engine import make_url

    from shared.db import make_engine

    url = database_url_for(name)
    try:
        where = make_url(url).render_as_string(hide_password=True)
    except Exception:  # an unparsable URL is shown without what could be a password
        where = url.split("@")[-1]
    check = {"what": f"database {name}", "where": where, "ok": True}
    try:
        engine = make_engine(url)
        try:
            with engine.connect() as conn:
                conn.execute(text("select 1"))
        finally:
            engine.dispose()
    except Exception as exc:  # a bad URL, a missing driver, a server that does not answer: all one answer
        reason = " ".join(str(exc).split())[:200]
        check.update(ok=False, error=f"{type(exc).__name__}: {reason}",
                     fix=f"set ERASURE_{name.upper()}_DATABASE_URL or ERASURE_DATABASE_URL to a database that "
                         "answers (e.g. postgresql+psycopg://user@host/erasure_{service})")
    return check


@cli.group()
def topology() -> None:
    """Exchanges and queues of a namespace."""


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


for command in (publish, dlq, status, receipt, extend, hold, release, retry, retention, demo, intake, sweep, replay,
                console, keys, access, correction):
    cli.add_command(command)


def main() -> None:
    """Console-script entry point. A setting that cannot be used (ERASURE_AMQP_URL, say) stops any command with
    the reason, not a traceback."""
    from pydantic import ValidationError

    try:
        cli(prog_name="erasure")
    except ValidationError as exc:
        click.echo(f"erasure: {settings_problem(exc)}", err=True)
        sys.exit(2)
