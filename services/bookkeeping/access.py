"""The bookkeeping slice's answer to an access request: the customer and sales kept here, and the customer as
Visma eAccounting holds it, read back from Visma (in an outside step, before the answer's transaction)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from schemas import AccessItem, AccessRequested
from services.bookkeeping.handlers import LOGGAMERA, SERVICE, VISMA, Gateways, asked_visma
from services.bookkeeping.models import CustomerRecord, Sale
from services.common.retention import LEGAL_BASIS
from services.vendors.rules import visma_customer_number
from shared.access import answer, row_data
from shared.errors import OutsideOutdated
from shared.service import Context, Outside

PURPOSE = "book-keeping of the user's purchases, as the Bookkeeping Act requires"


@dataclass(frozen=True)
class FoundAtVisma:
    """What an access request's outside step read at Visma: the customer under the user's customer number."""

    customer_number: str
    customer: dict[str, Any] | None


def find_customer_at_visma(event: AccessRequested, out: Outside[Gateways]) -> FoundAtVisma:
    """Outside step of an access request: Visma's customer for the user's customer number, as it is now."""
    with out.read() as session:
        kept = session.get(CustomerRecord, event.user_id)
        number = kept.customer_number if kept is not None else visma_customer_number(event.user_id)
    return FoundAtVisma(number, out.deps.visma.find_customer(number))


def answer_access(event: AccessRequested, ctx: Context[Gateways]) -> None:
    """The customer record, the sales (kept by law), and Visma's customer for the user's customer number."""
    session, user_id = ctx.session, event.user_id
    items = []
    customer = session.get(CustomerRecord, user_id)
    sales = session.scalars(select(Sale).where(Sale.user_id == user_id).order_by(Sale.sale_date)).all()
    retention = f"until {max(s.retain_until for s in sales).isoformat()}" if sales else "as long as the account"
    if customer is not None:
        items.append(AccessItem(category="customer details", held_by=LOGGAMERA,
                                data=row_data(customer, leave_out={"user_id"}), purpose=PURPOSE,
                                recipients=[VISMA], retention=retention, legal_basis=LEGAL_BASIS))
    if sales:
        items.append(AccessItem(category="sales", held_by=LOGGAMERA,
                                data={"sales": [row_data(s, leave_out={"user_id"}) for s in sales]},
                                purpose=PURPOSE, recipients=[VISMA], retention=retention, legal_basis=LEGAL_BASIS))
    number = customer.customer_number if customer is not None else visma_customer_number(user_id)
    found = asked_visma(ctx, FoundAtVisma)
    if found.customer_number != number:
        raise OutsideOutdated("the user's Visma customer number changed after Visma was asked; asking again")
    at_visma = found.customer
    if at_visma is not None:
        items.append(AccessItem(category="customer in the book-keeping system", held_by=VISMA, data=at_visma,
                                purpose=PURPOSE, recipients=[VISMA], retention=retention, legal_basis=LEGAL_BASIS))
    ctx.emit(answer(event, SERVICE, items))
    ctx.log.info("access request answered", categories=len(items))
