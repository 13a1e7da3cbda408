"""`erasure correction request|status`: corrections of a user's personal data (GDPR Art. 16, 19) for operators.

`request` opens the correction in the ledger and stages its signed PersonalDataCorrected in the ledger's outbox
in one transaction (the running ledger relays it to every slice). `status` names each slice's outcome and every
recipient told, and checks the receipt. Only field names are shown, never the corrected values.
Exit codes: 0 done, 1 the receipt does not match the reports, 2 refused or not found.
"""

from __future__ import annotations

import json
import sys
import uuid
from datetime import UTC, datetime
from typing import Any

import click

from services.cli.legal import open_request, read_request

OK, BROKEN, REFUSED = 0, 1, 2


@click.group()
def correction() -> None:
    """Corrections of a user's personal data: every slice updates it and tells its recipients."""


@correction.command("request")
@click.option("--user", "user_id", required=True, help="The opaque user id.")
@click.option("--name", help="The corrected full name.")
@click.option("--email", help="The corrected e-mail address.")
@click.option("--phone", help="The corrected phone number (E.164, +46…).")
@click.option("--street", help="The corrected street and number (with --postal-code and --city).")
@click.option("--postal-code", help="The corrected postal code, 'NNN NN'.")
@click.option("--city", help="The corrected post town.")
def request_correction(user_id: str, **given: str | None) -> None:
    """Correct a user's name, e-mail, phone or address everywhere it is held, and tell every recipient.

    \b
    Example:
      erasure correction request --user u-1001 --email anna.lindqvist@kund.loggamera.se
    """
    from pydantic import ValidationError

    from schemas import PersonalDataCorrected
    from services.ledger.correction import new_request

    address = {key: given[key] for key in ("street", "postal_code", "city")}
    if any(address.values()) and not all(address.values()):
        click.echo("erasure: refused: an address needs --street, --postal-code and --city together", err=True)
        sys.exit(REFUSED)
    corrected: dict[str, Any] = {key: given[key] for key in ("name", "email", "phone")}
    if all(address.values()):
        corrected["address"] = address
    erased = _erasure_of(user_id)
    if erased is not None:
        click.echo(f"erasure: refused: user {user_id} was erased (request {erased.request_id}, completed "
                   f"{erased.completed_at:%Y-%m-%d %H:%M} UTC): nothing is left to correct", err=True)
        sys.exit(REFUSED)
    now = datetime.now(UTC)
    try:
        event = PersonalDataCorrected(user_id=user_id, request_id=uuid.uuid4(), requested_at=now,
                                      corrected={k: v for k, v in corrected.items() if v is not None})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:]) or 'correction'}: {e['msg']}"
                             for e in exc.errors())
        click.echo(f"erasure: refused: {problems}", err=True)
        sys.exit(REFUSED)
    request_id = open_request(new_request, event, now)
    click.echo(request_id)


def _erasure_of(user_id: str) -> Any:
    """The user's completed erasure in the ledger, or None. A correction after it would seal the new values under
    a fresh data key of a user who no longer exists, one no erasure would ever destroy."""
    from sqlalchemy import select

    from services.ledger.commands import ledger_session
    from services.ledger.models import COMPLETE, ErasureRequest

    with ledger_session(None) as session:
        if session is None:
            return None
        return session.scalars(select(ErasureRequest).where(
            ErasureRequest.user_id == user_id, ErasureRequest.status == COMPLETE)
            .order_by(ErasureRequest.completed_at.desc()).limit(1)).first()


@correction.command("status")
@click.argument("request_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def correction_status(request_id: str, as_json: bool) -> None:
    """Show a correction: each slice's outcome, the recipients told, and whether the receipt matches.

    \b
    Example:
      erasure correction status 5d4c3b2a-1f0e-4d9c-8b7a-6f5e4d3c2b1a
    """
    from services.ledger.correction import correction_status, verify

    def read(session: Any, wanted: str) -> tuple[Any, bool | None] | None:
        found = correction_status(session, wanted)
        return (found, verify(session, wanted)) if found is not None else None

    found, intact = read_request(read, request_id, "correction request")
    data = {"request_id": found.request_id, "user_id": found.user_id, "status": found.status,
            "fields": list(found.fields), "requested_at": found.requested_at.isoformat(),
            "due_at": found.due_at.isoformat(),
            "completed_at": found.completed_at.isoformat() if found.completed_at else None,
            "slices": [{"service": s, "outcome": o, "corrected": list(f), "recipients_notified": list(r)}
                       for s, o, f, r in found.slices],
            "recipients_notified": list(found.recipients), "receipt_hash": found.receipt_hash,
            "receipt_intact": intact}
    if as_json:
        click.echo(json.dumps(data, indent=2))
    else:
        lines = [f"Correction request {found.request_id}", f"  user:       {found.user_id}",
                 f"  fields:     {', '.join(found.fields)}", f"  status:     {found.status}",
                 f"  due at:     {data['due_at']}", ""]
        for service, outcome, fields, told in found.slices:
            lines.append(f"  {service:<18} {outcome or '(not reported)':<13} {', '.join(fields) or '-':<24} "
                         f"{', '.join(told) or '-'}")
        lines += ["", f"Recipients told: {', '.join(found.recipients) or 'none'}",
                  f"Receipt hash: {found.receipt_hash or '(none until every slice has reported)'}"
                  + ("" if intact is None else " (intact)" if intact else " (DOES NOT MATCH THE REPORTS)")]
        click.echo("\n".join(lines))
    sys.exit(BROKEN if intact is False else OK)
