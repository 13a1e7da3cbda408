"""`erasure access request|status|export`: access requests (GDPR Art. 15) for operators.

`request` opens the request in the ledger and stages its signed AccessRequested in the ledger's outbox in one
transaction (the running ledger relays it to every slice). `status` shows the request without any personal
data; `export` writes the assembled export (personal data) to a file or stdout, never to a log.
Exit codes: 0 done, 1 no export to give (still open, expired or erased with the user), 2 refused or not found.
"""

from __future__ import annotations

import json
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from services.cli.legal import open_request, read_request

OK, NO_EXPORT = 0, 1


def _when(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value is not None else None


@click.group()
def access() -> None:
    """Access requests (GDPR Art. 15): every slice's data on a user, in one export with a manifest."""


@access.command("request")
@click.option("--user", "user_id", required=True, help="The opaque user id.")
def request_access(user_id: str) -> None:
    """Open an access request for a user; every slice answers and the ledger assembles the export.

    \b
    Example:
      erasure access request --user u-1001
    """
    from schemas import AccessRequested
    from services.ledger.access import new_request

    now = datetime.now(UTC)
    event = AccessRequested(user_id=user_id, request_id=uuid.uuid4(), requested_at=now)
    request_id = open_request(new_request, event, now)
    click.echo(request_id)


def _status_dict(found: Any) -> dict[str, Any]:
    return {"request_id": found.request_id, "user_id": found.user_id, "status": found.status,
            "requested_at": _when(found.requested_at), "due_at": _when(found.due_at),
            "completed_at": _when(found.completed_at), "expires_at": _when(found.expires_at),
            "answered": list(found.answered), "missing": list(found.missing),
            "manifest": found.manifest, "manifest_hash": found.manifest_hash,
            "export": "available" if found.export_available else (found.export_erased_why or "not yet assembled")}


@access.command("status")
@click.argument("request_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def access_status(request_id: str, as_json: bool) -> None:
    """Show an access request: its deadline, which slices answered, the manifest and whether the export is kept.

    \b
    Example:
      erasure access status 8b0e7f2a-1c3d-4e5f-9a6b-7c8d9e0f1a2b
    """
    from services.ledger.access import access_status as read

    found = read_request(read, request_id, "access request")
    data = _status_dict(found)
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    click.echo("\n".join([
        f"Access request {found.request_id}",
        f"  user:         {found.user_id}",
        f"  status:       {found.status}",
        f"  requested at: {data['requested_at']}",
        f"  due at:       {data['due_at']}",
        f"  answered:     {', '.join(found.answered) or '-'}",
        f"  waiting for:  {', '.join(found.missing) or '-'}",
        f"  export:       {data['export']}" + (f" until {data['expires_at']}" if found.export_available else ""),
        f"  manifest:     {found.manifest_hash or '(none until every slice has answered)'}",
    ]))


@access.command("export")
@click.argument("request_id")
@click.option("--format", "fmt", type=click.Choice(["json", "html"]), default="json", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Write to this file (else stdout).")
def export(request_id: str, fmt: str, out: Path | None) -> None:
    """Write an access request's export (JSON or HTML); it holds personal data: hand it to the data subject only.

    \b
    Example:
      erasure access export 8b0e7f2a-1c3d-4e5f-9a6b-7c8d9e0f1a2b --format html --out export.html
    """
    from services.ledger.access import access_status, export_of

    def read(session: Any, wanted: str) -> tuple[Any, str | None] | None:
        found = access_status(session, wanted)
        return (found, export_of(session, wanted, fmt, datetime.now(UTC))) if found is not None else None

    found, text = read_request(read, request_id, "access request")
    if text is None:
        why = {"expired": "it expired", "user_erased": "it was erased with the user"}.get(
            found.export_erased_why or "", "not every slice has answered yet" if found.status == "open"
            else "it expired")
        click.echo(f"erasure: no export for access request {request_id}: {why}", err=True)
        sys.exit(NO_EXPORT)
    if out is None:
        click.echo(text)
    else:
        out.write_text(text, encoding="utf-8")
        click.echo(f"wrote {out} (manifest {found.manifest_hash})")
