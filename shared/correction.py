"""What every slice does alike on a correction (GDPR Art. 16, 19): its report, and never re-creating an erased user."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

from schemas import CorrectionSliceReported, PersonalDataCorrected
from shared.erasure import is_erased


def apply_contact(row: Any, event: PersonalDataCorrected, *, email: Callable[[str], str] = str) -> list[str]:
    """Write the corrected fields onto a row with name, email, phone and street/postal_code/city/country
    attributes; the names of the fields written. `email` puts an address in the row's form."""
    fix, corrected = event.corrected, []
    if fix.name is not None:
        row.name = fix.name
        corrected.append("name")
    if fix.email is not None:
        row.email = email(fix.email)
        corrected.append("email")
    if fix.phone is not None:
        row.phone = fix.phone
        corrected.append("phone")
    if fix.address is not None:
        row.street, row.postal_code = fix.address.street, fix.address.postal_code
        row.city, row.country = fix.address.city, fix.address.country
        corrected.append("address")
    return corrected


def erased_report(session: Session, event: PersonalDataCorrected, service: str) -> CorrectionSliceReported | None:
    """The report for a user this service has erased (nothing is corrected or re-created), else None."""
    if not is_erased(session, event.user_id):
        return None
    return correction_report(event, service, erased=True)


def correction_report(event: PersonalDataCorrected, service: str, *, corrected: Iterable[str] = (),
                      recipients_notified: Iterable[str] = (), erased: bool = False) -> CorrectionSliceReported:
    """The slice's report: `erased`, else `corrected` when it updated any field, else `nothing_held`."""
    fields = sorted(set(corrected))
    outcome = "erased" if erased else "corrected" if fields else "nothing_held"
    return CorrectionSliceReported(
        request_id=event.request_id, user_id=event.user_id, service=service,  # type: ignore[arg-type]
        outcome=outcome, corrected=fields, recipients_notified=sorted(set(recipients_notified)),
        reported_at=datetime.now(UTC))
