"""The newsletter slice's answer to an access request: the subscriptions kept here, and each member as
Mailchimp holds it, read back from Mailchimp."""

from __future__ import annotations

from sqlalchemy import select

from schemas import AccessItem, AccessRequested
from services.newsletter.audiences import Audiences
from services.newsletter.models import Subscriber
from shared.access import answer, plain
from shared.service import Context

SERVICE = "newsletter"
MAILCHIMP = "Mailchimp"
# What of a Mailchimp member is about the person (the rest is Mailchimp's own bookkeeping and links).
MEMBER_FIELDS = ("email_address", "status", "merge_fields", "timestamp_signup", "timestamp_opt", "last_changed",
                 "language", "location", "ip_signup", "ip_opt", "tags")


def answer_access(event: AccessRequested, ctx: Context[Audiences]) -> None:
    """One item per subscription: the address and list as kept here, and the member at Mailchimp."""
    subscribers = ctx.session.scalars(select(Subscriber).where(Subscriber.user_id == event.user_id)
                                      .order_by(Subscriber.list_id, Subscriber.email)).all()
    items = []
    for sub in subscribers:
        member = ctx.deps.audience(sub.list_id).get_member(sub.email)
        items.append(AccessItem(
            category="newsletter subscription", held_by=MAILCHIMP,
            data={"email": sub.email, "list_id": sub.list_id, "subscribed_at": plain(sub.subscribed_at),
                  "member_at_mailchimp": {k: member[k] for k in MEMBER_FIELDS if k in member} if member else None},
            purpose="sending the newsletter and offers the user agreed to", recipients=[MAILCHIMP],
            retention="until the user withdraws consent or deregisters",
            legal_basis="consent, GDPR Art. 6(1)(a)"))
    ctx.emit(answer(event, SERVICE, items))
    ctx.log.info("access request answered", subscriptions=len(items))
