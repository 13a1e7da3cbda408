"""What the account service does with each event it consumes."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import select

from schemas import ErasureCompleted, UserDeregistered
from services.account.accounts import erase_user
from services.account.intake import drop_pending_requests
from services.account.models import CompletedErasure
from services.account.notices import cleanup, keep_address_for_notice, send_completion_notice
from shared.erasure import slice_report, tombstone
from shared.hold import with_legal_hold
from shared.service import Context, Handlers

if TYPE_CHECKING:
    from services.account.main import AccountDeps  # main builds the service from these handlers

SERVICE = "account"


def _housekeeping(ctx: Context[AccountDeps]) -> None:
    """Delete expired notice addresses and intake codes when due (see `notices`), not on every event."""
    if ctx.deps.cleanup_timer.due():
        cleanup(ctx.session)


def erase_account(event: UserDeregistered, ctx: Context[AccountDeps]) -> None:
    """Delete the user's profile, preferences, sessions and devices; keep nothing personal; report it.

    The one exception: a request that came by e-mail keeps the address aside, for the completion notice
    only, and reports it as retained with its purpose and end date.
    """
    _housekeeping(ctx)
    kept = keep_address_for_notice(ctx.session, event, ctx.deps.settings)
    categories = erase_user(ctx.session, event.user_id)
    dropped = drop_pending_requests(ctx.session, event.user_id)
    tombstone(ctx.session, event)
    ctx.emit(slice_report(event, SERVICE, erased=categories, retained=[kept] if kept else []))
    ctx.log.info("account erased" if categories else "account held nothing",
                 user_id=event.user_id, categories=categories, replay=event.replay,
                 completion_notice=kept is not None, pending_requests_dropped=dropped)


def record_completed_erasure(event: ErasureCompleted, ctx: Context[AccountDeps]) -> None:
    """Remember, once per request, that an erasure was completed; tell a user who asked by e-mail.

    The completion notice goes out once per request and never for a replay (the user was told the first
    time); if the relay cannot take it, the event is retried and nothing is recorded meanwhile.
    """
    request_id = str(event.request_id)
    _housekeeping(ctx)
    known = ctx.session.execute(
        select(CompletedErasure.request_id).where(CompletedErasure.request_id == request_id)).first()
    if known is not None:
        ctx.log.info("erasure completion already recorded", user_id=event.user_id)
        return
    ctx.session.add(CompletedErasure(
        request_id=request_id, user_id=event.user_id, completed_at=event.completed_at, replay=event.replay))
    ctx.session.flush()
    notified = False if event.replay else send_completion_notice(ctx.session, event, ctx.deps.settings)
    ctx.log.info("erasure completion recorded", user_id=event.user_id, replay=event.replay,
                 completion_notice_sent=notified)


HANDLERS: Handlers[AccountDeps] = with_legal_hold({
    UserDeregistered: erase_account,
    ErasureCompleted: record_completed_erasure,
})
