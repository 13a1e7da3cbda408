"""The newsletter slice's part of a correction: Mailchimp holds only the address, so a corrected e-mail moves
each member to the new address (its subscriber hash changes) and the subscription here follows it."""

from __future__ import annotations

from sqlalchemy import select

from schemas import PersonalDataCorrected
from services.newsletter.access import MAILCHIMP, SERVICE
from services.newsletter.audiences import Audiences
from services.newsletter.models import Subscriber
from shared.correction import correction_report, erased_report
from shared.service import Context


def change_subscriber_address(event: PersonalDataCorrected, ctx: Context[Audiences]) -> None:
    """Move each subscription of the user to the corrected address, at Mailchimp and here."""
    erased = erased_report(ctx.session, event, SERVICE)
    new_email = event.corrected.email
    if erased is not None or new_email is None:
        ctx.emit(erased or correction_report(event, SERVICE))
        return
    subscriptions = ctx.session.scalars(select(Subscriber).where(Subscriber.user_id == event.user_id)).all()
    moved = 0
    for sub in subscriptions:
        if sub.email == new_email:
            continue
        ctx.deps.audience(sub.list_id).change_member_address(sub.email, new_email)
        ctx.session.delete(sub)
        ctx.session.flush()
        ctx.session.add(Subscriber(user_id=sub.user_id, email=new_email, list_id=sub.list_id,
                                   subscribed_at=sub.subscribed_at))
        moved += 1
    ctx.emit(correction_report(event, SERVICE, corrected=["email"] if moved else [],
                               recipients_notified=[MAILCHIMP] if moved else []))
    ctx.log.info("subscriber address corrected", subscriptions=moved)
