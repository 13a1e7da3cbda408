"""The account slice's part of a correction: the account's contact details are updated (the account is where
the user's data comes from, so there is no recipient to tell)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from schemas import PersonalDataCorrected
from services.account.accounts import canonical_email
from services.account.models import User
from shared.correction import apply_contact, correction_report, erased_report
from shared.service import Context

if TYPE_CHECKING:
    from services.account.main import AccountDeps

SERVICE = "account"


def apply_correction(event: PersonalDataCorrected, ctx: Context[AccountDeps]) -> None:
    """Update the user's name, e-mail, phone or address; an erased or unknown user is left as is."""
    erased = erased_report(ctx.session, event, SERVICE)
    user = ctx.session.get(User, event.user_id) if erased is None else None
    corrected = apply_contact(user, event, email=canonical_email) if user is not None else []
    ctx.emit(erased or correction_report(event, SERVICE, corrected=corrected))
    ctx.log.info("correction applied", fields=corrected, erased=erased is not None)
