"""`erasure status` and `erasure receipt`: what happened to an erasure request, and proof it was not altered."""

from __future__ import annotations

import sys

import click


@click.command()
@click.argument("request_id", required=False)
@click.option("--user", "user_id", help="Every request for this opaque user id.")
@click.option("--overdue", is_flag=True, help="Requests past their due date or stuck on a slice.")
@click.option("--due-soon", is_flag=True,
              help="Open requests past their internal due date (ERASURE_LEDGER_INTERNAL_DUE_DAYS after receipt).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status(request_id: str | None, user_id: str | None, overdue: bool, due_soon: bool, as_json: bool) -> None:
    """Show an erasure request: each slice's outcome, what was kept and why, and the receipt hash.

    \b
    Examples:
      erasure status 3f0c2a9e-6d1b-4c57-9a51-0d7f3e8b9c10
      erasure status --user u-1001
      erasure status --overdue --json
      erasure status --due-soon
    """
    from services.ledger.commands import status_command

    text, code = status_command(None, request_id=request_id, user_id=user_id, overdue=overdue,
                                as_json=as_json, due_soon=due_soon)
    click.echo(text)
    sys.exit(code)


@click.command()
@click.argument("request_id")
@click.option("--verify", is_flag=True, help="Recompute the hash chain; exit 1 if it does not hold.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def receipt(request_id: str, verify: bool, as_json: bool) -> None:
    """Show the tamper-evident receipt of an erasure request (slice reports chained by SHA-256).

    \b
    Example:
      erasure receipt 3f0c2a9e-6d1b-4c57-9a51-0d7f3e8b9c10 --verify
    """
    from services.ledger.commands import receipt_command

    text, code = receipt_command(None, request_id, verify, as_json=as_json)
    click.echo(text)
    sys.exit(code)
