"""`erasure intake`, `erasure sweep inactive`, `erasure replay`: the ways an erasure starts besides upstream.

Exit codes: 0 done; 1 a broker, relay or database failure (nothing is lost: run it again); 2 refused (a
request or code we may not act on, or a malformed question).
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, date, datetime
from typing import Any, BinaryIO

import click

from shared.settings import RuntimeSettings

REFUSED, FAILED = 2, 1


def _runtime() -> RuntimeSettings:
    from shared.logging import configure

    settings = RuntimeSettings()
    configure(settings.log_level)
    return settings


def _instant(value: str, what: str) -> datetime:
    """An ISO date (midnight UTC) or date-time (UTC if no offset given)."""
    try:
        parsed = datetime.fromisoformat(value) if "T" in value or " " in value else \
            datetime.combine(date.fromisoformat(value), datetime.min.time())
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO date or date-time", param_hint=what) from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _emit(as_json: bool, data: dict[str, Any], text: str) -> None:
    click.echo(json.dumps(data, default=str) if as_json else text)


@click.group()
def intake() -> None:
    """Erasure requests by e-mail: subject "Unregister account: <address>", confirmed by a mailed code."""


@intake.command("email")
@click.argument("file", type=click.File("rb"))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def intake_email(file: BinaryIO, as_json: bool) -> None:
    """Take one inbound e-mail (raw RFC 5322; FILE `-` reads stdin) and mail its confirmation code.

    \b
    Examples:
      erasure intake email request.eml
      fetchmail ... | erasure intake email -
    """
    from services.account.intake import IntakeRejected, receive_by_email
    from services.account.publishing import account_database
    from services.account.settings import AccountSettings
    from shared.errors import PermanentError, TransientError

    _runtime()
    raw = file.read()
    with account_database() as (_engine, sessions):
        try:
            accepted = receive_by_email(sessions, raw, AccountSettings())
        except IntakeRejected as exc:
            _emit(as_json, {"error": exc.reason, "message": str(exc)}, f"refused ({exc.reason}): {exc}")
            sys.exit(REFUSED)
        except (TransientError, PermanentError) as exc:
            _emit(as_json, {"error": "mail_relay_unavailable", "message": str(exc)},
                  f"the confirmation mail could not be sent ({exc}); nothing was recorded, try again")
            sys.exit(FAILED)
    _emit(as_json, {"status": "confirmation_sent", "request_id": accepted.request_id,
                    "expires_at": accepted.expires_at.isoformat()},
          f"confirmation code sent to the account's address; request {accepted.request_id}, "
          f"valid until {accepted.expires_at:%Y-%m-%d %H:%M} UTC")


@intake.command("confirm")
@click.argument("token")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def intake_confirm(token: str, as_json: bool) -> None:
    """Confirm a request with the code from its mail: the account is deregistered (UserDeregistered).

    The event is committed to the account outbox with the spent code, then published here with confirms;
    if the broker is away it stays in the outbox and the account service publishes it.

    \b
    Example:
      erasure intake confirm 3q2-8xN...
    """
    from services.account.intake import ConfirmRefused, confirm_by_token
    from services.account.publishing import account_database, producer_for, relay_outbox
    from shared.errors import PublishError

    runtime = _runtime()
    with account_database() as (engine, sessions):
        try:
            confirmed = confirm_by_token(sessions, token, runtime)
        except ConfirmRefused as exc:
            _emit(as_json, {"error": exc.reason, "message": str(exc)}, f"refused ({exc.reason}): {exc}")
            sys.exit(REFUSED)
        try:
            with producer_for(runtime, "erasure-intake") as producer:
                relay_outbox(engine, producer)
        except PublishError as exc:
            _emit(as_json, {"status": "confirmed_not_published", "request_id": confirmed.request_id,
                            "message": str(exc)},
                  f"request {confirmed.request_id} confirmed, but not yet published ({exc}); it waits in the "
                  "account outbox and goes out when the account service runs")
            sys.exit(FAILED)
    _emit(as_json, {"status": "confirmed", "request_id": confirmed.request_id, "event_id": confirmed.event_id},
          f"request {confirmed.request_id} confirmed; UserDeregistered {confirmed.event_id} published")


@intake.command("cleanup")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def intake_cleanup(as_json: bool) -> None:
    """Delete completion-notice addresses past their keep-until date and expired codes (run it daily).

    \b
    Example:
      erasure intake cleanup --json
    """
    from services.account.notices import cleanup
    from services.account.publishing import account_database

    _runtime()
    with account_database() as (_engine, sessions), sessions() as session, session.begin():
        counts = cleanup(session)
    _emit(as_json, counts, ", ".join(f"{name.replace('_', ' ')}: {n} deleted" for name, n in counts.items()))


@click.group()
def sweep() -> None:
    """Scheduled erasures the privacy policy promises."""


@sweep.command("inactive")
@click.option("--dry-run", is_flag=True, help="Only count; write and publish nothing.")
@click.option("--batch", default=1000, show_default=True, type=click.IntRange(1, 50_000),
              help="Accounts per transaction.")
@click.option("--now", "now_text", metavar="ISO", help="Sweep as of this instant (default: now).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary.")
def sweep_inactive_command(dry_run: bool, batch: int, now_text: str | None, as_json: bool) -> None:
    """Deregister every account not signed in for more than three years (reason inactivity), once each.

    Resumable: an interrupted run loses nothing, and re-running continues where it stopped.

    \b
    Examples:
      erasure sweep inactive --dry-run
      erasure sweep inactive --batch 2000 --json
    """
    from ops.progress import Progress
    from services.account.publishing import account_database, producer_for
    from services.account.sweep import count_inactive, inactivity_cutoff, sweep_inactive
    from shared.errors import PublishError

    runtime = _runtime()
    now = _instant(now_text, "--now") if now_text else datetime.now(UTC)
    with account_database() as (engine, sessions):
        with sessions() as session:
            total = count_inactive(session, inactivity_cutoff(now))
        try:
            with Progress(total, "sweeping inactive accounts") as bar:
                if dry_run:
                    result = sweep_inactive(engine, sessions, runtime, now=now, batch=batch, dry_run=True,
                                            on_batch=bar.advance)
                else:
                    with producer_for(runtime, "erasure-sweep") as producer:
                        result = sweep_inactive(engine, sessions, runtime, now=now, batch=batch,
                                                producer=producer, on_batch=bar.advance)
        except PublishError as exc:
            click.echo(f"sweep stopped: {exc}. Nothing is lost: what is staged waits in the account outbox; "
                       "run the same command again.", err=True)
            sys.exit(FAILED)
    data = result.as_dict()
    if dry_run:  # say what it would do: nothing was deregistered
        data = {"would_deregister": data.pop("deregistered"), **data}
    verb = "would deregister" if dry_run else "deregistered"
    _emit(as_json, data,
          f"{result.selected} inactive accounts (signed in last before {result.cutoff}); {verb} "
          f"{result.deregistered}, {result.skipped_already_swept} already swept; published {result.published} "
          f"in {result.seconds:.1f} s")


@click.command()
@click.option("--since", "since_text", required=True, metavar="DATE",
              help="The backup's date: re-apply every erasure completed at or after it (ISO date or date-time).")
@click.option("--dry-run", is_flag=True, help="Only list what would be re-applied.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary.")
def replay(since_text: str, dry_run: bool, as_json: bool) -> None:
    """Re-apply erasures after a backup restore: every user erased since DATE is deregistered again.

    Reads the ledger; publishes one UserDeregistered (reason admin, replay) per user, with a request id
    derived from the original's, so running it twice opens no second request.

    \b
    Examples:
      erasure replay --since 2026-04-01 --dry-run
      erasure replay --since 2026-04-01T03:00:00Z --json
    """
    from ops.progress import Progress
    from services.account.publishing import producer_for
    from services.ledger.replay import LedgerUnavailable, ledger_session, plan_replay, publish_replays
    from shared.errors import PublishError

    runtime = _runtime()
    since = _instant(since_text, "--since")
    try:
        with ledger_session() as session:
            plan = plan_replay(session, since)
    except LedgerUnavailable as exc:
        click.echo(f"cannot replay: {exc}", err=True)
        sys.exit(REFUSED)
    published = 0
    if not dry_run and plan.originals:
        try:
            with producer_for(runtime, "erasure-replay") as producer, \
                    Progress(len(plan.originals), "replaying erasures") as bar:
                published = publish_replays(plan, runtime, producer, on_chunk=bar.advance)
        except PublishError as exc:
            click.echo(f"replay stopped: {exc}. Run the same command again: the request ids repeat, so "
                       "nothing is counted twice.", err=True)
            sys.exit(FAILED)
    summary = {"since": since.isoformat(), "completed": plan.completed, "users": len(plan.originals),
               "skipped_replays": plan.skipped_replays, "skipped_same_user": plan.skipped_same_user,
               "published": published, "dry_run": dry_run}
    if as_json:
        summary["original_request_ids"] = [r.request_id for r in plan.originals]
    verb = "would re-apply" if dry_run else "re-applied"
    _emit(as_json, summary, f"{plan.completed} erasures completed since {since:%Y-%m-%d %H:%M} UTC; {verb} "
                            f"{len(plan.originals)} (one per user), published {published}")
