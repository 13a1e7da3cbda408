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
@click.option("--failures", is_flag=True,
              help="With a request id: also read the broker's dead letters of that request, naming each failed "
                   "slice with its last error.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status(request_id: str | None, user_id: str | None, overdue: bool, due_soon: bool, *, failures: bool,
           as_json: bool) -> None:
    """Show an erasure request: each slice's outcome, what was kept and why, and the receipt hash.

    \b
    Examples:
      erasure status 3f0c2a9e-6d1b-4c57-9a51-0d7f3e8b9c10
      erasure status --user u-1001
      erasure status --overdue --json
      erasure status --due-soon
      erasure status 3f0c2a9e-6d1b-4c57-9a51-0d7f3e8b9c10 --failures
    """
    from services.ledger.commands import status_command

    text, code = status_command(None, request_id=request_id, user_id=user_id, overdue=overdue,
                                as_json=as_json, due_soon=due_soon)
    if failures and request_id is not None and code == 0 and not as_json:
        text += "\n\n" + failures_text(request_id)
    click.echo(text)
    sys.exit(code)


def failures_text(request_id: str) -> str:
    """The dead letters of one request on the broker, by service, with the last error (personal data masked).

    A dead letter is not retried by itself: it waits for `erasure dlq replay` or `erasure retry`. Deliveries
    waiting in a delay tier are not read here.
    """
    import json

    from pika.exceptions import AMQPError

    from ops import dlq
    from services.ledger.report import table
    from shared.settings import RuntimeSettings

    try:
        _, letters = dlq.survey(RuntimeSettings(), None)
    except (dlq.DeadLetterError, AMQPError) as exc:  # the ledger's answer stands; say why this part is missing
        return f"Failures: not read ({exc}); `erasure doctor` checks the broker"
    rows = []
    for letter in letters:
        try:
            data = json.loads(letter.body).get("data") or {}
        except (ValueError, AttributeError):
            continue
        if str(data.get("request_id")) == request_id:
            rows.append([letter.service, letter.kind, letter.error, str(letter.attempts or "-"),
                         letter.failed_at.isoformat() if letter.failed_at else "-",
                         "none: dead-lettered (erasure dlq replay, erasure retry)"])
    if not rows:
        return "Failures: no dead letters of this request."
    return "Failures:\n" + table(["service", "kind", "last error", "attempts", "failed at", "next retry"], rows)


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


@click.command()
@click.argument("request_id")
@click.option("--slice", "slice_name", help="Re-run only this slice (account, installer_sharing, payment, "
                                            "bookkeeping, newsletter).")
def retry(request_id: str, slice_name: str | None) -> None:
    """Re-run the unfinished slices of an open erasure request, or one named slice, idempotently.

    Publishes the request's UserDeregistered again (same request id, fresh event id) to those slices' queues
    only; a slice that already erased erases nothing twice, and the ledger keeps the first report of each.

    \b
    Examples:
      erasure retry 3f0c2a9e-6d1b-4c57-9a51-0d7f3e8b9c10
      erasure retry 3f0c2a9e-6d1b-4c57-9a51-0d7f3e8b9c10 --slice newsletter
    """
    from services.ledger.commands import ledger_session
    from services.ledger.legal import Refused
    from services.ledger.retry import plan_retry, send_retry
    from shared.errors import PublishError
    from shared.settings import RuntimeSettings

    with ledger_session(None) as session:
        if session is None:
            click.echo(f"erasure: refused: no erasure request {request_id}: the ledger has no database yet", err=True)
            sys.exit(2)
        try:
            event, slices = plan_retry(session, request_id, slice_name)
        except Refused as exc:
            click.echo(f"erasure: refused: {exc}", err=True)
            sys.exit(2)
    runtime = RuntimeSettings()
    try:
        sent = send_retry(event, slices, runtime)
    except PublishError as exc:
        click.echo(f"erasure: retry not sent: {exc}; run the same command again (a second run is harmless)",
                   err=True)
        sys.exit(1)
    click.echo(f"Request {request_id}: re-sent to {', '.join(slices)} ({sent} message(s)); "
               "`erasure status` shows their reports as they arrive.")
