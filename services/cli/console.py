"""`erasure console`: serve the operations console; `erasure console hash-password` for its users setting."""

from __future__ import annotations

import json
import sys

import click


@click.group(invoke_without_command=True)
@click.option("--host", help="Listen address (default ERASURE_CONSOLE_HOST or 127.0.0.1).")
@click.option("--port", type=int, help="Port (default ERASURE_CONSOLE_PORT or 9107).")
@click.pass_context
def console(ctx: click.Context, host: str | None, port: int | None) -> None:
    """Serve the operations console (requests, dead letters, intake, health) on a web page; login required.

    \b
    Examples:
      erasure console                            # http://127.0.0.1:9107/
      erasure console hash-password --name ana --role operator
    """
    if ctx.invoked_subcommand is not None:
        return
    from pydantic import ValidationError

    from services.console.server import serve
    from services.console.settings import ConsoleSettings
    from shared.logging import configure
    from shared.settings import RuntimeSettings

    configure(RuntimeSettings().log_level, service="console")
    try:
        settings = ConsoleSettings(**{k: v for k, v in (("host", host), ("port", port)) if v is not None})
    except (ValidationError, ValueError) as exc:
        raise click.ClickException(f"console settings: {exc}") from exc
    serve(settings)


@console.command("hash-password")
@click.option("--name", required=True, help="The user's login name.")
@click.option("--role", type=click.Choice(["viewer", "operator"]), required=True)
def hash_password_command(name: str, role: str) -> None:
    """Ask for a password (or read one line from stdin) and print the user's entry for ERASURE_CONSOLE_USERS.

    The entry holds an argon2id hash, never the password.

    \b
    Example:
      erasure console hash-password --name ana --role operator
    """
    from services.console.auth import hash_password

    if sys.stdin.isatty():
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    else:  # piped, for scripts: the first line is the password
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise click.ClickException("erasure console hash-password: no password on stdin; type it at the "
                                       "prompt, or pipe it in (printf '%s\\n' \"$PASSWORD\" | erasure console ...)")
    try:
        hashed = hash_password(password)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(json.dumps({"name": name, "role": role, "password_hash": hashed}))
