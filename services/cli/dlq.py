"""`erasure dlq`: the operators' dead-letter workflow — list, show (masked), replay, purge — over AMQP only."""

from __future__ import annotations

import getpass
import json
import os
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

import click

from ops import dlq as dead
from ops.progress import Progress
from shared.errors import PublishError
from shared.logging import get_logger
from shared.settings import RuntimeSettings
from shared.topology import Names, routing_key

log = get_logger(__name__)
T = TypeVar("T")
PROGRESS_FROM = 100  # below this many messages a bar is only noise
ERROR_WIDTH = 60

service_option = click.option(
    "--service", "services", multiple=True, metavar="NAME",
    help="Only this service's dead-letter queue (repeatable; any service with one, not only the catalog's).")
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
kind_option = click.option("--kind", metavar="KIND", help="Only dead letters of this error kind (e.g. permanent).")
all_option = click.option("--all", "everything", is_flag=True,
                          help="Every dead letter (of every catalog service, or of the --service ones).")


@click.group()
def dlq() -> None:
    """Dead letters: list, show (personal data masked), replay with the attempt count reset, purge."""
    from shared.logging import configure

    configure(RuntimeSettings().log_level)


def _call(action: Callable[[], T]) -> T:
    """Run an operation; turn its operator-facing failures into a clean CLI error."""
    try:
        return action()
    except dead.DeadLetterError as exc:
        raise click.ClickException(str(exc)) from exc
    except PublishError as exc:
        raise click.ClickException(
            f"replay stopped: {exc}. Nothing is lost: every dead letter not yet confirmed on its service queue "
            "is still in its dead-letter queue. Run the same command again.") from exc


def _targets(services: Sequence[str]) -> list[str] | None:
    return list(services) or None


def _selection(event_id: str | None, services: Sequence[str], kind: str | None, everything: bool) -> dead.Selection:
    if event_id and everything:
        raise click.UsageError("give either an ID or --all, not both")
    if not (event_id or services or everything):
        raise click.UsageError("say which dead letters: an ID, --service NAME (with --kind KIND) or --all")
    return dead.Selection(event_id=event_id, kind=kind)


@contextmanager
def _progress(settings: RuntimeSettings, services: Sequence[str], label: str) -> Iterator[Any]:
    total = sum(_call(lambda: dead.depths(settings, _targets(services))).values())
    if total < PROGRESS_FROM:
        yield None
        return
    with Progress(total, label) as bar:
        yield bar.advance


def _age(seconds: float) -> str:
    seconds = int(max(0, seconds))
    for unit, size, sub_unit, sub_size in (("d", 86400, "h", 3600), ("h", 3600, "m", 60), ("m", 60, "s", 1)):
        if seconds >= size:
            return f"{seconds // size}{unit} {seconds % size // sub_size}{sub_unit}"
    return f"{seconds}s"


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[("" if v is None else str(v)) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(lines)


def _short(text: str, width: int = ERROR_WIDTH) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _breakdown(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} {n}" for name, n in sorted(counts.items())) or "none"


@dlq.command("list")
@service_option
@click.option("--messages", is_flag=True,
              help="Also list the dead letters themselves (browses the queues; see below).")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(0),
              help="With --messages: show at most this many, oldest first.")
@json_option
def list_dead_letters(services: tuple[str, ...], messages: bool, limit: int, as_json: bool) -> None:
    """Count dead letters per service; with --messages also list them (personal data masked), oldest first.

    Counting takes no message, so nothing about any dead letter changes. --messages browses: every message
    goes back to its queue, and on RabbitMQ before 4.3 the broker counts each browse as a redelivery in its
    x-delivery-count (dead-letter queues have no delivery limit, so nothing is lost).

    \b
    Examples:
      erasure dlq list
      erasure dlq list --service newsletter --messages --limit 10 --json
    """
    settings = RuntimeSettings()
    now = datetime.now(UTC)
    if messages:
        summaries, letters = _call(lambda: dead.survey(settings, _targets(services)))
    else:
        summaries, letters = _call(lambda: dead.counts(settings, _targets(services))), []
    shown = [letter.summary() for letter in letters[:limit]]
    if as_json:
        document: dict[str, Any] = {"namespace": settings.namespace,
                                    "queues": [_queue_json(s, now) for s in summaries],
                                    "total": sum(s.count for s in summaries)}
        if messages:
            document["messages"] = shown
        click.echo(json.dumps(document, indent=2))
        return
    click.echo(_table(["service", "dead letters", "oldest"], [
        (s.service, s.count if s.exists else "no queue",
         _age((now - s.oldest_failed_at).total_seconds()) if s.oldest_failed_at else "")
        for s in summaries]))
    if not shown:
        if not messages and any(s.count for s in summaries):
            click.echo("\n`erasure dlq list --messages` lists them; `erasure dlq show ID` shows one")
        return
    click.echo()
    click.echo(_table(["event id", "service", "type", "kind", "error", "attempts", "failed at"], [
        (m["id"], m["service"], routing_key(m["type"]), m["kind"], _short(m["error"]), m["attempts"],
         m["failed_at"]) for m in shown]))
    if len(letters) > limit:
        click.echo(f"... and {len(letters) - limit} more (raise --limit to see them)")


def _queue_json(summary: dead.QueueSummary, now: datetime) -> dict[str, Any]:
    oldest = summary.oldest_failed_at
    return {"service": summary.service, "queue": summary.queue, "exists": summary.exists, "count": summary.count,
            "oldest_failed_at": oldest.isoformat() if oldest else None,
            "oldest_age_s": round((now - oldest).total_seconds(), 1) if oldest else None}


def _operator() -> str:
    try:
        return os.environ.get("USER") or getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _echo_detail(detail: dict[str, Any], queue: str) -> None:
    where = detail["services"]
    click.echo(f"dead letter {detail['id']} (service{'s' if len(where) > 1 else ''} {', '.join(where)}; "
               f"queue{'s' if len(where) > 1 else ''} {queue}; kind {detail['kind']})")
    for section in ("properties", "headers"):
        click.echo(f"{section}:")
        for key, value in sorted(detail[section].items()):
            click.echo(f"  {key}: {value}")
    click.echo("body:" + ("" if detail["revealed"] else " (personal data masked; --reveal to show it)"))
    body = detail["body"]
    click.echo(json.dumps(body, indent=2, ensure_ascii=False, default=str) if not isinstance(body, str) else body)


@dlq.command()
@click.argument("event_id", metavar="ID")
@service_option
@click.option("--reveal", is_flag=True, help="Show personal data unmasked; an audit record is logged first.")
@json_option
def show(event_id: str, services: tuple[str, ...], reveal: bool, as_json: bool) -> None:
    """Show one dead letter by event id: properties, headers and body (personal data masked), once.

    The same event dead-lettered by several services is shown once, naming them all; the headers shown are
    those of the first (x-service and x-error may differ between them: --json lists each service).

    \b
    Examples:
      erasure dlq show 0b6e3c1e-8d3f-4a57-9c1a-0f5d2f3c9e11
      erasure dlq show 0b6e3c1e-8d3f-4a57-9c1a-0f5d2f3c9e11 --service newsletter --reveal
    """
    settings = RuntimeSettings()
    found = _call(lambda: dead.select(settings, _targets(services), dead.Selection(event_id=event_id)))
    if not found:
        where = ", ".join(services) if services else "any catalog service"
        raise click.ClickException(f"no dead letter with id {event_id} in {where}; `erasure dlq list` shows them")
    if reveal:
        # Logged at warning so no level setting can drop the record of who saw personal data.
        log.warning("dead letter revealed", audit=True, who=_operator(), what=event_id,
                    services=sorted({letter.service for letter in found}))
    details = [{**letter.detail(reveal=reveal), "services": where} for letter, where in dead.distinct(found)]
    if as_json:
        click.echo(json.dumps(details, indent=2, ensure_ascii=False, default=str))
        return
    names = Names(settings.namespace)
    for i, detail in enumerate(details):
        if i:
            click.echo()
        _echo_detail(detail, ", ".join(names.dead_queue(s) for s in detail["services"]))


@dlq.command()
@click.argument("event_id", metavar="[ID]", required=False)
@service_option
@kind_option
@all_option
@click.option("--dry-run", is_flag=True, help="Only say what would be moved.")
@click.option("--batch-size", default=200, show_default=True, type=click.IntRange(1, 5000),
              help="Dead letters per confirmed publish.")
@json_option
def replay(*, event_id: str | None, services: tuple[str, ...], kind: str | None, everything: bool, dry_run: bool,
           batch_size: int, as_json: bool) -> None:
    """Move dead letters back to their service queue with the attempt count reset.

    Each is published with a confirm first and only then removed from the dead-letter queue; a journal under
    $ERASURE_VAR_DIR makes an interrupted run safe to repeat: nothing is lost and nothing is sent twice.

    \b
    Examples:
      erasure dlq replay 0b6e3c1e-8d3f-4a57-9c1a-0f5d2f3c9e11
      erasure dlq replay --service newsletter --kind transient --dry-run
      erasure dlq replay --all
    """
    selection = _selection(event_id, services, kind, everything)
    settings = RuntimeSettings()
    journal = dead.Journal(dead.journal_path())
    try:
        with _progress(settings, services, "replay") as advance:
            report = _call(lambda: dead.replay(settings, _targets(services), selection, journal=journal,
                                               dry_run=dry_run, batch_size=batch_size, advance=advance))
    finally:
        journal.close()
    if event_id and not report.selected:
        raise click.ClickException(f"no dead letter with id {event_id}; `erasure dlq list` shows them")
    if as_json:
        click.echo(json.dumps({"selected": report.selected, "moved": report.total_moved,
                               "by_service": report.moved, "acked_only": report.acked_only,
                               "dry_run": dry_run}))
        return
    verb = "would move" if dry_run else "moved"
    click.echo(f"{'dry run: ' if dry_run else ''}{verb} {report.total_moved} dead letter(s) back to their "
               f"service queue with attempts reset ({_breakdown(report.moved)})"
               + ("; nothing changed" if dry_run else ""))
    if report.acked_only:
        click.echo(f"{report.acked_only} had already been replayed by an interrupted run: "
                   f"{'would be' if dry_run else 'only'} removed from the dead-letter queue")


@dlq.command()
@click.argument("event_id", metavar="[ID]", required=False)
@service_option
@kind_option
@all_option
@click.option("--dry-run", is_flag=True, help="Only say what would be deleted.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@json_option
def purge(*, event_id: str | None, services: tuple[str, ...], kind: str | None, everything: bool, dry_run: bool,
          yes: bool, as_json: bool) -> None:
    """Delete the selected dead letters for good (asks first unless --yes).

    Exactly the messages counted for the question are deleted; any that arrive meanwhile stay.

    \b
    Examples:
      erasure dlq purge --service newsletter --kind signature
      erasure dlq purge 0b6e3c1e-8d3f-4a57-9c1a-0f5d2f3c9e11 --yes
      erasure dlq purge --all --dry-run
    """
    selection = _selection(event_id, services, kind, everything)
    settings = RuntimeSettings()
    with _progress(settings, services, "select") as advance:
        chosen = _call(lambda: dead.select(settings, _targets(services), selection, advance))
    by_service = dict(Counter(letter.service for letter in chosen))
    if dry_run or not chosen:
        if as_json:
            click.echo(json.dumps({"selected": len(chosen), "removed": 0, "by_service": by_service,
                                   "dry_run": dry_run}))
        else:
            click.echo(f"{'dry run: would remove' if dry_run else 'removed'} {len(chosen) if dry_run else 0} "
                       f"dead letter(s) ({_breakdown(by_service)})" + ("; nothing changed" if dry_run else ""))
        return
    kinds = _breakdown(dict(Counter(letter.kind for letter in chosen)))
    if not yes:
        click.confirm(f"Delete {len(chosen)} dead letter(s) for good ({_breakdown(by_service)}; kinds: {kinds})?",
                      abort=True, err=True)
    keys = dead.Selection(keys=frozenset(letter.key for letter in chosen))
    with _progress(settings, services, "purge") as advance:
        removed = _call(lambda: dead.purge(settings, _targets(services), keys, advance))
    total = sum(removed.values())
    if as_json:
        click.echo(json.dumps({"selected": len(chosen), "removed": total, "by_service": removed,
                               "dry_run": False}))
    else:
        click.echo(f"removed {total} dead letter(s) ({_breakdown(removed)})")
