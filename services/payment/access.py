"""The payment slice's answer to an access request: the payment references kept here, and the vaulted payment
methods PayPal holds for the user, read back from PayPal (in an outside step, before the answer's transaction)."""

from __future__ import annotations

from sqlalchemy import select

from schemas import AccessItem, AccessRequested
from services.common.retention import LEGAL_BASIS
from services.payment.handlers import PAYPAL, SERVICE, Gateways
from services.payment.models import PaymentRecord, PayPalCustomer, VaultToken
from services.vendors.rules import paypal_customer_id
from shared.access import answer, row_data
from shared.errors import OutsideOutdated
from shared.service import Context, Outside


def list_tokens_at_paypal(event: AccessRequested, out: Outside[Gateways]) -> list[str]:
    """Outside step of an access request: the vault tokens PayPal holds under the user's customer id now."""
    with out.read() as session:
        kept = session.get(PayPalCustomer, event.user_id)
    return sorted(out.deps.paypal.list_payment_tokens(
        customer_id=kept.customer_id if kept is not None else paypal_customer_id(event.user_id)))


def answer_access(event: AccessRequested, ctx: Context[Gateways]) -> None:
    """Payments (kept by law) and the vault tokens, both as recorded here and as PayPal lists them now."""
    session, user_id = ctx.session, event.user_id
    items = []
    payments = session.scalars(select(PaymentRecord).where(PaymentRecord.user_id == user_id)
                               .order_by(PaymentRecord.paid_at)).all()
    if payments:
        items.append(AccessItem(
            category="payment transaction references", held_by="Loggamera",
            data={"payments": [row_data(p, leave_out={"user_id", "event_id"}) for p in payments]},
            purpose="handling the payment of the user's purchases, and the accounts the law requires",
            recipients=[PAYPAL], retention=f"until {max(p.retain_until for p in payments).isoformat()}",
            legal_basis=LEGAL_BASIS))
    kept = session.get(PayPalCustomer, user_id)
    customer_id = kept.customer_id if kept is not None else paypal_customer_id(user_id)
    at_paypal = ctx.outside
    if not isinstance(at_paypal, list):
        raise OutsideOutdated("PayPal has not been asked for this access request yet; asking on the next attempt")
    known = session.scalars(select(VaultToken.token_id).where(VaultToken.user_id == user_id)).all()
    if at_paypal or known:
        items.append(AccessItem(
            category="saved payment methods (vault payment tokens)", held_by=PAYPAL,
            data={"paypal_customer_id": customer_id, "payment_tokens_at_paypal": sorted(at_paypal),
                  "payment_tokens_recorded_here": sorted(known)},
            purpose="paying later purchases with the payment method the user saved", recipients=[PAYPAL],
            retention="until the user removes it or deregisters", legal_basis="contract, GDPR Art. 6(1)(b)"))
    ctx.emit(answer(event, SERVICE, items))
    ctx.log.info("access request answered", categories=len(items))
