"""The installer-sharing slice's part of a correction: every installer that received the user's contact details
is sent the corrected ones (Art. 19). Nothing is kept here but which installer got which purchase."""

from __future__ import annotations

from typing import Any

from schemas import PersonalDataCorrected
from services.installer_sharing.directory import Installers
from services.installer_sharing.handlers import purchases_by_installer
from shared.correction import correction_report, erased_report
from shared.service import Context

SERVICE = "installer_sharing"


def corrected_contact(event: PersonalDataCorrected) -> dict[str, Any]:
    """The corrected fields among those an installer receives (name, address, phone, e-mail)."""
    fix = event.corrected
    contact: dict[str, Any] = {}
    if fix.name is not None:
        contact["name"] = fix.name
    if fix.address is not None:
        contact["address"] = fix.address.model_dump(mode="json")
    if fix.phone is not None:
        contact["phone"] = fix.phone
    if fix.email is not None:
        contact["email"] = fix.email
    return contact


def tell_installers_of_correction(event: PersonalDataCorrected, ctx: Context[Installers]) -> None:
    """Send the corrected contact fields to each installer holding the user's purchases."""
    erased = erased_report(ctx.session, event, SERVICE)
    if erased is not None:
        ctx.emit(erased)
        return
    contact = corrected_contact(event)
    purchases = purchases_by_installer(ctx, event.user_id) if contact else {}
    clients = {installer_id: ctx.deps.client(installer_id) for installer_id in purchases}
    for installer_id, purchase_ids in purchases.items():
        clients[installer_id].send_correction(purchase_ids, contact, idempotency_key=f"{ctx.event_id}:{installer_id}")
    ctx.emit(correction_report(event, SERVICE, corrected=contact if purchases else (),
                               recipients_notified=[f"installer:{i}" for i in purchases]))
    ctx.log.info("installers told of a correction", installers=sorted(purchases), fields=sorted(contact))
