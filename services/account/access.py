"""The account slice's answer to an access request: the account, its preferences, sign-ins and devices."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from schemas import AccessItem, AccessRequested
from services.account.models import Device, Preference, SignInSession, User
from shared.access import answer, row_data
from shared.service import Context

if TYPE_CHECKING:
    from services.account.main import AccountDeps

SERVICE = "account"
KEPT = "until deregistration, and no more than three years after the last sign-in"
CONTRACT = "contract, GDPR Art. 6(1)(b)"
# The user's rows of each further table: (model, category, key in the data, purpose, columns left out).
# A session's token hash is a secret, not data about the user.
LISTS: tuple[tuple[Any, str, str, str, frozenset[str]], ...] = (
    (Preference, "notification preferences", "preferences", "sending only the notifications the user chose",
     frozenset()),
    (SignInSession, "sign-in sessions", "sessions", "keeping the user signed in, and signing them out",
     frozenset({"token_sha256"})),
    (Device, "devices and their descriptions", "devices", "monitoring the devices the user connected", frozenset()),
)


def answer_access(event: AccessRequested, ctx: Context[AccountDeps]) -> None:
    """Everything the account holds on the user."""
    session, user_id = ctx.session, event.user_id
    items = []
    user = session.get(User, user_id)
    if user is not None:
        items.append(AccessItem(category="account and contact details", held_by="Loggamera", data=row_data(user),
                                purpose="the user's Loggamera account: signing in, purchases, installation",
                                retention=KEPT, legal_basis=CONTRACT))
    for model, category, key, purpose, leave_out in LISTS:
        rows = session.scalars(select(model).where(model.user_id == user_id)).all()
        if rows:
            items.append(AccessItem(category=category, held_by="Loggamera",
                                    data={key: [row_data(r, leave_out={"user_id", *leave_out}) for r in rows]},
                                    purpose=purpose, retention=KEPT, legal_basis=CONTRACT))
    ctx.emit(answer(event, SERVICE, items))
    ctx.log.info("access request answered", categories=len(items))
