"""payment's handlers: record PayPal references; on erasure delete vault tokens at PayPal, keep what law needs.

PayPal customer id: PayPal's vault `customer.id` must match `^[0-9a-zA-Z_-]+$` and be 7-36 characters, which
our user ids do not. When the web shop vaults a payment method it passes `paypal_customer_id(user id)`
(services.vendors.rules: `lg` + 32 hex digits of a SHA-256 of the user id, no personal data), and this service
keeps the pair (`paypal_customers`), so `GET /v3/vault/payment-tokens?customer_id=…` finds every token the
user saved, including any this service never saw in an event.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from schemas import PurchaseCompleted, RetainedCategory, UserDeregistered
from services.common.retention import LEGAL_BASIS, accounting_date, retain_until_for
from services.payment.models import PaymentRecord, PayPalCustomer, VaultToken
from services.vendors.paypal import PayPalClient
from services.vendors.rules import paypal_customer_id
from shared.erasure import is_erased, slice_report, tombstone
from shared.hold import with_legal_hold
from shared.service import Context, Handlers

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
        for token_id in refs.vault_token_ids:
            gateways.paypal.delete_payment_token(token_id)
        ctx.log.info("payment of an erased user recorded minimised", purchase_id=event.purchase_id,
                     user_id=event.user_id, tokens_deleted=len(refs.vault_token_ids))
        return
    for token_id in refs.vault_token_ids:
        session.merge(VaultToken(token_id=token_id, user_id=event.user_id, purchase_id=event.purchase_id))
    _customer_id(session, event.user_id)
    ctx.log.info("payment recorded", purchase_id=event.purchase_id, user_id=event.user_id)


def erase_payer_data(event: UserDeregistered, ctx: Context[Gateways]) -> None:
    """Delete the user's vault tokens at PayPal, erase payer data here, keep transaction records by law."""
    gateways = ctx.deps
    session = ctx.session
    erased: list[str] = []
    tokens = session.scalars(select(VaultToken).where(VaultToken.user_id == event.user_id)).all()
    for token in tokens:
        gateways.paypal.delete_payment_token(token.token_id)
    # Known tokens first, then whatever else PayPal holds under the user's customer id.
    leftovers = gateways.paypal.list_payment_tokens(customer_id=_customer_id(session, event.user_id))
    for token_id in leftovers:
        gateways.paypal.delete_payment_token(token_id)
    told_paypal = bool(tokens or leftovers)
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
    ctx.log.info("payer data erased", user_id=event.user_id, tokens_deleted=len(tokens) + len(leftovers),
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
