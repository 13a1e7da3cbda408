"""What the account service does with each event it consumes."""

from __future__ import annotations

from sqlalchemy import select

from schemas import ErasureCompleted, UserDeregistered
from services.account.accounts import erase_user
from services.account.models import CompletedErasure
from shared.erasure import slice_report, tombstone
from shared.service import Context

SERVICE = "account"


def erase_account(event: UserDeregistered, ctx: Context) -> None:
    """Delete the user's profile, preferences, sessions and devices; keep nothing personal; report it."""
    categories = erase_user(ctx.session, event.user_id)
    tombstone(ctx.session, event)
    ctx.emit(slice_report(event, SERVICE, erased=categories))
    ctx.log.info("account erased" if categories else "account held nothing",
                 user_id=event.user_id, categories=categories, replay=event.replay)


def record_completed_erasure(event: ErasureCompleted, ctx: Context) -> None:
    """Remember, once per request, that an erasure was completed (ids and times only)."""
    request_id = str(event.request_id)
    known = ctx.session.execute(
        select(CompletedErasure.request_id).where(CompletedErasure.request_id == request_id)).first()
    if known is not None:
        ctx.log.info("erasure completion already recorded", user_id=event.user_id)
        return
    ctx.session.add(CompletedErasure(
        request_id=request_id, user_id=event.user_id, completed_at=event.completed_at, replay=event.replay))
    ctx.session.flush()
    ctx.log.info("erasure completion recorded", user_id=event.user_id, replay=event.replay)


HANDLERS = {
    UserDeregistered: erase_account,
    ErasureCompleted: record_completed_erasure,
}
