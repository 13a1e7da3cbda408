"""bookkeeping's handlers: book each sale at Visma and keep it; on erasure keep the sale, strip the person."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, cast

from sqlalchemy import CursorResult, delete, select
from sqlalchemy.orm import Session

from schemas import PurchaseCompleted, RetainedCategory, UserDeregistered
from services.bookkeeping.models import CustomerRecord, Sale
from services.bookkeeping.settings import BookkeepingSettings
from services.bookkeeping.tokens import TokenStore
from services.bookkeeping.visma_records import (
    anonymous_customer_fields,
    customer_fields,
    erase_visma_customer,
    invoice_rows,
)
from services.common.retention import LEGAL_BASIS, accounting_date, fiscal_year_end_for, retain_until_for
from services.vendors.rules import visma_customer_number
from services.vendors.visma import ERASED_FIELDS, VismaClient
from shared.erasure import is_erased, slice_report, tombstone
from shared.hold import with_legal_hold
from shared.service import Context, Handlers

SERVICE = "bookkeeping"
VISMA = "Visma eAccounting"
LOGGAMERA = "Loggamera"
SALES_CATEGORY = "sales transaction details (amounts, VAT, dates, invoice lines)"


@dataclass
class Gateways:
    """What the handlers reach outside the database: the Visma company, and the settings they book by."""

    visma: VismaClient
    settings: BookkeepingSettings
    tokens: TokenStore  # where Visma's newest refresh token is kept


def record_sale(event: PurchaseCompleted, ctx: Context[Gateways]) -> None:
    """Book the sale at Visma (customer and invoice, once per event) and keep it until retention ends.

    For a user we have erased, the sale is still booked, as the law requires, but on the anonymous
    customer and without any contact details: no named customer is created again.
    """
    gateways = ctx.deps
    session = ctx.session
    if session.get(Sale, event.purchase_id) is not None:
        ctx.log.info("sale already booked; nothing sent", purchase_id=event.purchase_id)
        return
    settings = gateways.settings
    erased = is_erased(session, event.user_id)
    if erased:
        if ctx.tried_before:
            _erase_named_customer_of_earlier_attempt(ctx, gateways.visma, event.user_id)
        customer_id = gateways.visma.upsert_customer(
            settings.anonymous_customer_number, anonymous_customer_fields(settings)
        )
    else:
        customer = _customer_record(session, event.user_id)
        customer_id = gateways.visma.upsert_customer(
            customer.customer_number, customer_fields(event.customer, event.currency, settings)
        )
        _keep_customer(customer, event, customer_id)
    sale_date = accounting_date(event.purchased_at)
    invoice_id = gateways.visma.create_invoice(
        customer_id, invoice_rows(event, settings), your_reference=ctx.event_id, invoice_date=sale_date
    )
    year_end = (settings.fiscal_year_end_month, settings.fiscal_year_end_day)
    session.add(Sale(
        purchase_id=event.purchase_id,
        user_id=event.user_id,
        visma_invoice_id=invoice_id,
        sale_date=sale_date,
        fiscal_year_end=fiscal_year_end_for(sale_date, *year_end),
        currency=event.currency,
        total_excl_vat=event.total_excl_vat,
        vat_amount=event.vat_amount,
        total_incl_vat=event.total_incl_vat,
        lines=[line.model_dump(mode="json") for line in event.lines],
        retain_until=retain_until_for(sale_date, *year_end),
    ))
    ctx.log.info("sale booked", purchase_id=event.purchase_id, user_id=event.user_id,
                 anonymous_customer=erased)


def _erase_named_customer_of_earlier_attempt(
    ctx: Context[Gateways], visma: VismaClient, user_id: str
) -> None:
    """An earlier attempt at this sale may have created the named customer at Visma before its answer was
    lost, and the user's erasure, handled meanwhile, knew nothing of it: erase that customer now."""
    found = visma.find_customer(visma_customer_number(user_id))
    if found is None or not (found.get("IsActive") or any(found.get(f) for f in ERASED_FIELDS)):
        return
    erase_visma_customer(visma, str(found["Id"]))
    ctx.log.info("erased the Visma customer an earlier attempt may have created", user_id=user_id)


def _customer_record(session: Session, user_id: str) -> CustomerRecord:
    """The user's customer row; a new one gets the user's Visma customer number (kept from then on)."""
    customer = session.get(CustomerRecord, user_id)
    if customer is None:
        customer = CustomerRecord(user_id=user_id, customer_number=visma_customer_number(user_id))
        session.add(customer)
    return customer


def _keep_customer(customer: CustomerRecord, event: PurchaseCompleted, visma_customer_id: str) -> None:
    buyer = event.customer
    customer.visma_customer_id = visma_customer_id
    customer.name = buyer.name
    customer.email = buyer.email
    customer.phone = buyer.phone
    customer.street = buyer.address.street
    customer.postal_code = buyer.address.postal_code
    customer.city = buyer.address.city
    customer.country = buyer.address.country
    customer.company_name = buyer.company_name
    customer.corporate_id = buyer.corporate_id
    customer.active = True
    customer.anonymised_at = None


def erase_customer(event: UserDeregistered, ctx: Context[Gateways]) -> None:
    """Keep the user's sales the law requires; erase every contact detail here and at Visma; report it."""
    gateways = ctx.deps
    session = ctx.session
    today = datetime.now(UTC).date()
    erased: list[str] = []
    notified: list[str] = []
    expired = cast("CursorResult[Any]", session.execute(  # DML answers with a CursorResult
        delete(Sale).where(Sale.user_id == event.user_id, Sale.retain_until < today)
    )).rowcount
    if expired:
        erased.append("sales past their retention period")
    sales = session.scalars(select(Sale).where(Sale.user_id == event.user_id)).all()
    customer = session.get(CustomerRecord, event.user_id)
    if customer is not None:
        if customer.visma_customer_id:
            if erase_visma_customer(gateways.visma, customer.visma_customer_id):
                customer.visma_customer_id = None
            erased.append("customer contact details at Visma eAccounting")
            notified.append(VISMA)
        erased.extend(_contact_categories(customer))
        if sales or customer.visma_customer_id:
            _anonymise(customer)
        else:
            session.delete(customer)
    retained = _retained(sales)
    tombstone(session, event)
    ctx.emit(slice_report(event, SERVICE, erased=erased, retained=retained, recipients_notified=notified))
    ctx.log.info("customer erased", user_id=event.user_id, sales_kept=len(sales), replay=event.replay)


def _contact_categories(customer: CustomerRecord) -> list[str]:
    present = {
        "name": customer.name,
        "e-mail": customer.email,
        "phone": customer.phone,
        "postal address": customer.street or customer.postal_code or customer.city,
        "company name and organisation number": customer.company_name or customer.corporate_id,
    }
    return [category for category, value in present.items() if value]


def _anonymise(customer: CustomerRecord) -> None:
    # The row stays only to link the kept sales to the (anonymised) Visma customer; the country stays
    # because it decides the VAT treatment of those sales.
    customer.name = customer.email = customer.phone = None
    customer.street = customer.postal_code = customer.city = None
    customer.company_name = customer.corporate_id = None
    customer.active = False
    customer.anonymised_at = datetime.now(UTC)


def _retained(sales: Sequence[Sale]) -> list[RetainedCategory]:
    if not sales:
        return []
    until: date = max(sale.retain_until for sale in sales)
    holders = [LOGGAMERA] + ([VISMA] if any(sale.visma_invoice_id for sale in sales) else [])
    return [
        RetainedCategory(category=SALES_CATEGORY, legal_basis=LEGAL_BASIS, retain_until=until, held_by=holder)
        for holder in holders
    ]


HANDLERS: Handlers[Gateways] = with_legal_hold({PurchaseCompleted: record_sale, UserDeregistered: erase_customer})
