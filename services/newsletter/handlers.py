"""newsletter's handlers: subscribe on consent, permanently erase at Mailchimp on withdrawal or deregistration."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import delete, select

from schemas import NewsletterConsentChanged, PurchaseCompleted, UserDeregistered
from services.newsletter.audiences import Audiences
from services.newsletter.models import Subscriber
from shared.erasure import is_erased, slice_report, tombstone
from shared.hold import with_legal_hold
from shared.keys import blind_index
from shared.service import Context, Handlers

SERVICE = "newsletter"
RECIPIENT = "Mailchimp"
ERASED_CATEGORY = "newsletter subscription"


def _subscribe(ctx: Context[Audiences], user_id: str, email: str) -> None:
    """Subscribe the address with no merge fields (the policy sends the newsletter service the e-mail only)."""
    audiences: Audiences = ctx.deps
    if is_erased(ctx.session, user_id):
        if ctx.tried_before:
            _withdraw_earlier_attempt(ctx, user_id, email)
        ctx.log.info("user already erased; not subscribed", user_id=user_id)
        return
    list_id = audiences.default_list_id
    if ctx.session.get(Subscriber, (user_id, blind_index(email), list_id)) is None:
        ctx.session.add(Subscriber(user_id=user_id, email=email, list_id=list_id, subscribed_at=datetime.now(UTC)))
        ctx.session.flush()
    audiences.audience(list_id).upsert_member(email, idempotency_key=ctx.event_id)
    ctx.log.info("subscribed", user_id=user_id, list_id=list_id)


def _withdraw_earlier_attempt(ctx: Context[Audiences], user_id: str, email: str) -> None:
    """An earlier attempt at this event may have subscribed the address before its answer was lost, and the
    user's erasure, handled meanwhile, knew nothing of it: erase the address at Mailchimp now.

    Not if another user we hold (and have not erased) subscribed the same address: theirs stays.
    """
    shared_with_others = ctx.session.scalars(
        select(Subscriber.user_id).where(Subscriber.email_index == blind_index(email),
                                         Subscriber.user_id != user_id).limit(1)
    ).first()
    if shared_with_others is not None:
        return
    audiences: Audiences = ctx.deps
    _erase_members(ctx, {(email, audiences.default_list_id)})
    ctx.log.info("erased what an earlier attempt may have subscribed", user_id=user_id)


def _erase_members(ctx: Context[Audiences], members: set[tuple[str, str]]) -> None:
    """Permanently delete each (e-mail, list id) at Mailchimp; an already-erased member counts as done."""
    audiences: Audiences = ctx.deps
    for email, list_id in sorted(members):
        audiences.audience(list_id).delete_member_permanently(email)


def subscribe_buyer(event: PurchaseCompleted, ctx: Context[Audiences]) -> None:
    """Subscribe the buyer's e-mail if, and only if, the purchase carries newsletter consent."""
    if event.newsletter_consent:
        _subscribe(ctx, event.user_id, event.customer.email)


def apply_consent_change(event: NewsletterConsentChanged, ctx: Context[Audiences]) -> None:
    """Consent given: subscribe. Withdrawn: erase the address at Mailchimp and here (no tombstone: not an erasure)."""
    if event.consented:
        _subscribe(ctx, event.user_id, event.email)
        return
    audiences: Audiences = ctx.deps
    mine = (Subscriber.user_id == event.user_id) & (Subscriber.email_index == blind_index(event.email))
    lists = set(ctx.session.scalars(select(Subscriber.list_id).where(mine)).all())
    # Also the current audience: the address may have been subscribed before we kept a record of it.
    lists.add(audiences.default_list_id)
    _erase_members(ctx, {(event.email, list_id) for list_id in lists})
    ctx.session.execute(delete(Subscriber).where(mine))
    ctx.log.info("consent withdrawn; member erased", user_id=event.user_id)


def erase_subscriber(event: UserDeregistered, ctx: Context[Audiences]) -> None:
    """Permanently delete the user's members at Mailchimp, drop the local copy, tombstone, and report."""
    rows = ctx.session.scalars(select(Subscriber).where(Subscriber.user_id == event.user_id)).all()
    # A row restored from a backup taken before the user's key was destroyed reads None: nothing to call with,
    # and nothing left at Mailchimp either (the first erasure deleted the member).
    _erase_members(ctx, {(row.email, row.list_id) for row in rows if row.email is not None})
    ctx.session.execute(delete(Subscriber).where(Subscriber.user_id == event.user_id))
    tombstone(ctx.session, event)
    ctx.emit(slice_report(
        event,
        SERVICE,
        erased=[ERASED_CATEGORY] if rows else [],
        recipients_notified=[RECIPIENT] if rows else [],
    ))
    ctx.log.info("subscriber erased" if rows else "no subscription held", user_id=event.user_id,
                 replay=event.replay)


HANDLERS: Handlers[Audiences] = with_legal_hold({
    PurchaseCompleted: subscribe_buyer,
    NewsletterConsentChanged: apply_consent_change,
    UserDeregistered: erase_subscriber,
})
