"""installer_sharing's handlers: forward a buyer's contact details, and tell installers to erase them."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, select

from schemas import Customer, PurchaseCompleted, UserDeregistered
from services.installer_sharing.directory import Installers
from services.installer_sharing.models import Notice, Share
from shared.erasure import is_erased, slice_report, tombstone
from shared.hold import with_legal_hold
from shared.service import Context, Handlers

SERVICE = "installer_sharing"
ERASED_CATEGORY = "contact details sent to installers"


def contact_for_installer(customer: Customer) -> dict[str, Any]:
    """Exactly what the policy sends an installer: name, address, phone and e-mail; nothing else."""
    return {
        "name": customer.name,
        "address": customer.address.model_dump(mode="json"),
        "phone": customer.phone,
        "email": customer.email,
    }


def forward_contact_to_installer(event: PurchaseCompleted, ctx: Context[Installers]) -> None:
    """Send the buyer's contact details to the purchase's installer once per event; nothing for an erased user."""
    installers: Installers = ctx.deps
    if is_erased(ctx.session, event.user_id):
        if ctx.tried_before:
            # An earlier attempt may have delivered the contact before its answer was lost, and the erasure,
            # handled meanwhile, did not know of it: ask the installer to erase what it may have received.
            installers.client(event.installer.id).send_erasure_notice(
                user_ref=event.user_id, purchase_ids=[event.purchase_id],
                idempotency_key=f"{ctx.event_id}:withdraw")
            ctx.log.info("installer asked to erase what an earlier attempt may have sent",
                         user_id=event.user_id, purchase_id=event.purchase_id, installer_id=event.installer.id)
        ctx.log.info("user already erased; contact details not forwarded",
                     user_id=event.user_id, purchase_id=event.purchase_id)
        return
    client = installers.client(event.installer.id)
    ctx.session.add(Share(
        event_id=ctx.event_id,
        user_id=event.user_id,
        installer_id=event.installer.id,
        purchase_id=event.purchase_id,
        shared_at=datetime.now(UTC),
    ))
    ctx.session.flush()
    client.send_contact(event.purchase_id, contact_for_installer(event.customer), idempotency_key=ctx.event_id)
    ctx.log.info("contact details forwarded", user_id=event.user_id, purchase_id=event.purchase_id,
                 installer_id=event.installer.id)


def purchases_by_installer(ctx: Context[Installers], user_id: str) -> dict[str, list[str]]:
    shares = ctx.session.scalars(select(Share).where(Share.user_id == user_id)).all()
    purchases: dict[str, set[str]] = defaultdict(set)
    for share in shares:
        purchases[share.installer_id].add(share.purchase_id)
    return {installer_id: sorted(ids) for installer_id, ids in sorted(purchases.items())}


def _record_notice(ctx: Context[Installers], request_id: str, installer_id: str) -> None:
    if ctx.session.get(Notice, (request_id, installer_id)) is None:
        ctx.session.add(Notice(request_id=request_id, installer_id=installer_id, notified_at=datetime.now(UTC)))


def tell_installers_to_erase(event: UserDeregistered, ctx: Context[Installers]) -> None:
    """Send an Art. 19 notice to every installer that got the user's data, drop the share log, tombstone, report."""
    installers: Installers = ctx.deps
    purchases = purchases_by_installer(ctx, event.user_id)
    # Resolve every installer first: an unlisted one dead-letters before any notice goes out.
    clients = {installer_id: installers.client(installer_id) for installer_id in purchases}
    for installer_id, purchase_ids in purchases.items():
        clients[installer_id].send_erasure_notice(
            user_ref=event.user_id, purchase_ids=purchase_ids, idempotency_key=f"{ctx.event_id}:{installer_id}"
        )
        _record_notice(ctx, str(event.request_id), installer_id)
    ctx.session.execute(delete(Share).where(Share.user_id == event.user_id))
    tombstone(ctx.session, event)
    ctx.emit(slice_report(
        event,
        SERVICE,
        erased=[ERASED_CATEGORY] if purchases else [],
        recipients_notified=[f"installer:{installer_id}" for installer_id in purchases],
    ))
    ctx.log.info("installers told to erase", user_id=event.user_id, installers=sorted(purchases),
                 replay=event.replay)


HANDLERS: Handlers[Installers] = with_legal_hold({
    PurchaseCompleted: forward_contact_to_installer,
    UserDeregistered: tell_installers_to_erase,
})
