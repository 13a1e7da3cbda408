"""The payment slice's part of a correction: it keeps no contact details (only PayPal references), and PayPal
got none from us (the payer's details are their own PayPal account), so it reports that it holds nothing."""

from __future__ import annotations

from schemas import PersonalDataCorrected
from services.payment.handlers import SERVICE, Gateways
from shared.correction import correction_report, erased_report
from shared.service import Context


def report_correction(event: PersonalDataCorrected, ctx: Context[Gateways]) -> None:
    """Report `erased` for an erased user, else `nothing_held`: no corrected field lives here or at PayPal."""
    ctx.emit(erased_report(ctx.session, event, SERVICE) or correction_report(event, SERVICE))
