"""payment's handlers: record PayPal references; on erasure delete vault tokens at PayPal, keep what law needs.

PayPal customer id: PayPal's vault `customer.id` must match `^[0-9a-zA-Z_-]+$` and be 7-36 characters, which
our user ids do not. When the web shop vaults a payment method it passes `paypal_customer_id(user id)`
(services.vendors.rules: `lg` + 32 hex digits of a SHA-256 of the user id, no personal data), and this service
keeps the pair (`paypal_customers`), so `GET /v3/vault/payment-tokens?customer_id=…` finds every token the
user saved, including any this service never saw in an event.

PayPal is called in outside steps (`OUTSIDE`), a batch's calls concurrently before its transaction; each handler
writes what its step did at PayPal, and raises OutsideOutdated when the database changed in between so that the
step's call no longer covers it (a purchase recorded tokens, or the user was erased, earlier in the same batch):
the runtime then runs step and handler again once the rest has committed. So the service is database-only: its
batches take the runtime's fast path.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from schemas import EventData, PurchaseCompleted, RetainedCategory, UserDeregistered
from services.common.retention import LEGAL_BASIS, accounting_date, retain_until_for
from services.payment.models import PaymentRecord, PayPalCustomer, VaultToken
from services.vendors.paypal import PayPalClient
from services.vendors.rules import paypal_customer_id
from shared.erasure import is_erased, slice_report, tombstone
from shared.errors import OutsideOutdated
from shared.hold import outside_with_legal_hold, with_legal_hold
from shared.service import Context, Handlers, Outside, OutsideStep

SERVICE = "payment"
PAYPAL = "PayPal"
LOGGAMERA = "Loggamera"
TRANSACTION_CATEGORY = "payment transaction references"
PAYPAL_CATEGORY = "financial transaction information at PayPal"
# PayPal decides how long it keeps its own records; our own retain-until date is our best statement of it.
PAYPAL_BASIS = "PayPal's legal obligation to keep financial records (GDPR Art. 17(3)(b))"


@dataclass
class Gateways:
    """What the handlers reach outside the database: PayPal, and the company's financial-year end."""

    paypal: PayPalClient
    fiscal_year_end: tuple[int, int] = (12, 31)


@dataclass(frozen=True)
class AtPayPal:
    """What an outside step did at PayPal for one event: the vault tokens it deleted."""

    deleted: frozenset[str] = frozenset()


def asked_paypal(ctx: Context[Gateways]) -> AtPayPal:
    """What the event's outside step did at PayPal; a retry if it did not run for this event (the user was
    under a legal hold when it ran, and released since)."""
    if not isinstance(ctx.outside, AtPayPal):
        raise OutsideOutdated("PayPal has not been asked for this event yet; asking on the next attempt")
    return ctx.outside


def delete_tokens_of_erased_buyer(event: PurchaseCompleted, out: Outside[Gateways]) -> AtPayPal:
    """Outside step of a purchase: the vault tokens a late purchase of an erased user saved, deleted at PayPal."""
    refs = event.payment.paypal
    if event.payment.method != "paypal" or refs is None or not refs.vault_token_ids:
        return AtPayPal()
    with out.read() as session:
        if not is_erased(session, event.user_id) or session.get(PaymentRecord, event.purchase_id) is not None:
            return AtPayPal()
    for token_id in refs.vault_token_ids:
        out.deps.paypal.delete_payment_token(token_id)
    return AtPayPal(frozenset(refs.vault_token_ids))


def delete_tokens_at_paypal(event: UserDeregistered, out: Outside[Gateways]) -> AtPayPal:
    """Outside step of an erasure: delete the user's vault tokens at PayPal, those recorded here first, then
    whatever else PayPal holds under the user's customer id."""
    with out.read() as session:
        known = sorted(session.scalars(select(VaultToken.token_id).where(VaultToken.user_id == event.user_id)))
        kept = session.get(PayPalCustomer, event.user_id)
    paypal = out.deps.paypal
    for token_id in known:
        paypal.delete_payment_token(token_id)
    leftovers = paypal.list_payment_tokens(
        customer_id=kept.customer_id if kept is not None else paypal_customer_id(event.user_id))
    for token_id in leftovers:
        paypal.delete_payment_token(token_id)
    return AtPayPal(frozenset(known) | frozenset(leftovers))


def record_payment_references(event: PurchaseCompleted, ctx: Context[Gateways]) -> None:
    """Keep the PayPal references of an online payment; an invoice payment leaves nothing here.

    For a user we have erased, only the transaction reference the law requires is kept (no payer id, no
    vault tokens), and any token the late purchase saved at PayPal is deleted there.
    """
    refs = event.payment.paypal
    if event.payment.method != "paypal" or refs is None:
        return
    gateways = ctx.deps
    session = ctx.session
    if session.get(PaymentRecord, event.purchase_id) is not None:
        ctx.log.info("payment already recorded", purchase_id=event.purchase_id)
        return
    erased = is_erased(session, event.user_id)
    session.add(PaymentRecord(
        purchase_id=event.purchase_id,
        user_id=event.user_id,
        payer_id=None if erased else refs.payer_id,
        order_id=refs.order_id,
        capture_id=refs.capture_id,
        amount=event.total_incl_vat,
        currency=event.currency,
        paid_at=event.purchased_at,
        recorded_at=datetime.now(UTC),
        retain_until=retain_until_for(accounting_date(event.purchased_at), *gateways.fiscal_year_end),
        event_id=ctx.event_id,
    ))
    if erased:
        if set(refs.vault_token_ids) - asked_paypal(ctx).deleted:
            raise OutsideOutdated("the user was erased after PayPal was asked; the purchase's vault tokens are "
                                 "deleted on the next attempt")
        ctx.log.info("payment of an erased user recorded minimised", purchase_id=event.purchase_id,
                     user_id=event.user_id, tokens_deleted=len(refs.vault_token_ids))
        return
    for token_id in refs.vault_token_ids:
        session.merge(VaultToken(token_id=token_id, user_id=event.user_id, purchase_id=event.purchase_id))
    _customer_id(session, event.user_id)
    ctx.log.info("payment recorded", purchase_id=event.purchase_id, user_id=event.user_id)


def erase_payer_data(event: UserDeregistered, ctx: Context[Gateways]) -> None:
    """Delete the user's vault tokens at PayPal, erase payer data here, keep transaction records by law."""
    session = ctx.session
    erased: list[str] = []
    done = asked_paypal(ctx)  # the tokens deleted at PayPal by the outside step
    tokens = session.scalars(select(VaultToken.token_id).where(VaultToken.user_id == event.user_id)).all()
    if set(tokens) - done.deleted:
        raise OutsideOutdated("vault tokens were recorded after PayPal was asked; deleting them on the next attempt")
    told_paypal = bool(done.deleted)
    if told_paypal:
        erased.append("PayPal vault payment tokens")
    session.execute(delete(VaultToken).where(VaultToken.user_id == event.user_id))
    session.execute(delete(PayPalCustomer).where(PayPalCustomer.user_id == event.user_id))

    payments = session.scalars(select(PaymentRecord).where(PaymentRecord.user_id == event.user_id)).all()
    if any(payment.payer_id for payment in payments):
        erased.append("PayPal payer id")
    today = datetime.now(UTC).date()
    kept: list[PaymentRecord] = []
    for payment in payments:
        if payment.retain_until < today:
            session.delete(payment)
        else:
            payment.payer_id = None
            kept.append(payment)
    if len(kept) < len(payments):
        erased.append("payment transaction references past their retention period")
    tombstone(session, event)
    ctx.emit(slice_report(event, SERVICE, erased=erased, retained=_retained(kept),
                          recipients_notified=[PAYPAL] if told_paypal else []))
    ctx.log.info("payer data erased", user_id=event.user_id, tokens_deleted=len(done.deleted),
                 payments_kept=len(kept), replay=event.replay)


def _customer_id(session: Session, user_id: str) -> str:
    """The user's PayPal customer id: the one kept for them, else the derived one (kept from now on)."""
    kept = session.get(PayPalCustomer, user_id)
    if kept is None:
        kept = PayPalCustomer(user_id=user_id, customer_id=paypal_customer_id(user_id))
        session.add(kept)
        session.flush()
    return kept.customer_id


def _retained(kept: Sequence[PaymentRecord]) -> list[RetainedCategory]:
    if not kept:
        return []
    until: date = max(payment.retain_until for payment in kept)
    return [
        RetainedCategory(category=TRANSACTION_CATEGORY, legal_basis=LEGAL_BASIS, retain_until=until,
                         held_by=LOGGAMERA),
        RetainedCategory(category=PAYPAL_CATEGORY, legal_basis=PAYPAL_BASIS, retain_until=until, held_by=PAYPAL),
    ]


HANDLERS: Handlers[Gateways] = with_legal_hold(
    {PurchaseCompleted: record_payment_references, UserDeregistered: erase_payer_data})
OUTSIDE: dict[type[EventData], OutsideStep[Gateways]] = outside_with_legal_hold(
    {PurchaseCompleted: delete_tokens_of_erased_buyer, UserDeregistered: delete_tokens_at_paypal})
