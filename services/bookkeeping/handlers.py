"""bookkeeping's handlers: book each sale at Visma and keep it; on erasure keep the sale, strip the person.

Visma is called in outside steps (`OUTSIDE`), a batch's calls concurrently before its transaction; each handler
writes what its step did at Visma, and raises OutsideOutdated when the database changed in between so that the
step's calls no longer cover it (the user was erased, or a purchase booked, earlier in the same batch): the runtime
then runs step and handler again once the rest has committed. So the service is database-only: its batches take the
runtime's fast path.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, TypeVar, cast

from sqlalchemy import CursorResult, delete, select
from sqlalchemy.orm import Session

from schemas import EventData, PurchaseCompleted, RetainedCategory, UserDeregistered
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
from shared.errors import OutsideOutdated
from shared.hold import outside_with_legal_hold, with_legal_hold
from shared.service import Context, Handlers, Outside, OutsideStep

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


@dataclass(frozen=True)
class Booked:
    """What a purchase's outside step did at Visma: the customer and invoice it booked the sale on.

    `sent` is False when the sale was booked already (nothing sent); `sales_seen` are the user's sales the step
    saw, so that the handler knows whether another purchase of the user was booked since.
    """

    sent: bool
    customer_number: str = ""
    customer_id: str = ""
    invoice_id: str = ""
    anonymous: bool = False
    sales_seen: frozenset[str] = frozenset()


@dataclass(frozen=True)
class ErasedAtVisma:
    """What an erasure's outside step did at Visma: the customer it erased (None: none was kept), and whether
    it is gone there (False: an anonymised, inactive record stays for its invoices)."""

    customer_id: str | None
    gone: bool
    sales_seen: frozenset[str] = frozenset()


Done = TypeVar("Done")


def asked_visma(ctx: Context[Gateways], done: type[Done]) -> Done:
    """What the event's outside step did at Visma; a retry if it did not run for this event (the user was
    under a legal hold when it ran, and released since)."""
    if not isinstance(ctx.outside, done):
        raise OutsideOutdated("Visma has not been asked for this event yet; asking on the next attempt")
    return ctx.outside


def sales_of(session: Session, user_id: str) -> frozenset[str]:
    """The purchase ids of the user's sales kept here."""
    return frozenset(session.scalars(select(Sale.purchase_id).where(Sale.user_id == user_id)))


def book_sale_at_visma(event: PurchaseCompleted, out: Outside[Gateways]) -> Booked:
    """Outside step of a purchase: the customer and the invoice at Visma (once per event).

    For a user we have erased, on the anonymous customer and without any contact details; a named customer an
    earlier attempt may have created is erased first.
    """
    with out.read() as session:
        if session.get(Sale, event.purchase_id) is not None:
            return Booked(sent=False)
        erased = is_erased(session, event.user_id)
        kept = session.get(CustomerRecord, event.user_id)
        number = kept.customer_number if kept is not None else visma_customer_number(event.user_id)
        seen = sales_of(session, event.user_id)
    visma, settings = out.deps.visma, out.deps.settings
    if erased:
        if out.tried_before:
            erase_named_customer_of_earlier_attempt(out, visma, event.user_id)
        number = settings.anonymous_customer_number
        customer_id = visma.upsert_customer(number, anonymous_customer_fields(settings))
    else:
        customer_id = visma.upsert_customer(number, customer_fields(event.customer, event.currency, settings))
    invoice_id = visma.create_invoice(customer_id, invoice_rows(event, settings), your_reference=out.event_id,
                                      invoice_date=accounting_date(event.purchased_at))
    return Booked(sent=True, customer_number=number, customer_id=customer_id, invoice_id=invoice_id,
                  anonymous=erased, sales_seen=seen)


def record_sale(event: PurchaseCompleted, ctx: Context[Gateways]) -> None:
    """Keep the sale its outside step booked at Visma (customer and invoice) until retention ends.

    For a user we have erased, the sale is still booked, as the law requires, but on the anonymous
    customer and without any contact details: no named customer is created again.
    """
    session = ctx.session
    if session.get(Sale, event.purchase_id) is not None:
        ctx.log.info("sale already booked; nothing sent", purchase_id=event.purchase_id)
        return
    booked = asked_visma(ctx, Booked)
    erased = is_erased(session, event.user_id)
    if not booked.sent:
        raise OutsideOutdated("the sale was gone after Visma was asked; booking it on the next attempt")
    if erased and not booked.anonymous:
        raise OutsideOutdated("the user was erased after Visma was asked; the named customer is erased and the "
                             "sale booked on the anonymous customer on the next attempt")
    if not erased:
        if booked.anonymous:
            raise OutsideOutdated("the sale was booked on the anonymous customer of a user not erased here; "
                                 "booking it again on the next attempt")
        customer = _customer_record(session, event.user_id)
        if customer.customer_number != booked.customer_number or sales_of(session, event.user_id) - booked.sales_seen:
            raise OutsideOutdated("another purchase of the user was booked after Visma was asked; booking this "
                                 "one on the next attempt")
        _keep_customer(customer, event, booked.customer_id)
    settings = ctx.deps.settings
    sale_date = accounting_date(event.purchased_at)
    year_end = (settings.fiscal_year_end_month, settings.fiscal_year_end_day)
    session.add(Sale(
        purchase_id=event.purchase_id,
        user_id=event.user_id,
        visma_invoice_id=booked.invoice_id,
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


def erase_named_customer_of_earlier_attempt(out: Outside[Gateways], visma: VismaClient, user_id: str) -> None:
    """An earlier attempt at this event may have created (or restored) the named customer at Visma before its
    answer was lost or its handler found the user erased, and the user's erasure knew nothing of it: erase that
    customer now."""
    found = visma.find_customer(visma_customer_number(user_id))
    if found is None or not (found.get("IsActive") or any(found.get(f) for f in ERASED_FIELDS)):
        return
    erase_visma_customer(visma, str(found["Id"]))
    out.log.info("erased the Visma customer an earlier attempt may have created", user_id=user_id)


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


def erase_customer_at_visma(event: UserDeregistered, out: Outside[Gateways]) -> ErasedAtVisma:
    """Outside step of an erasure: delete the user's customer at Visma, or deactivate and anonymise it."""
    with out.read() as session:
        customer = session.get(CustomerRecord, event.user_id)
        customer_id = customer.visma_customer_id if customer is not None else None
        seen = sales_of(session, event.user_id)
    if not customer_id:
        return ErasedAtVisma(customer_id=None, gone=False, sales_seen=seen)
    return ErasedAtVisma(customer_id=str(customer_id), gone=erase_visma_customer(out.deps.visma, customer_id),
                         sales_seen=seen)


def erase_customer(event: UserDeregistered, ctx: Context[Gateways]) -> None:
    """Keep the user's sales the law requires; erase every contact detail here and, by its outside step, at
    Visma; report it."""
    session = ctx.session
    done = asked_visma(ctx, ErasedAtVisma)
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
    customer_id = customer.visma_customer_id if customer is not None else None
    if (customer_id or None) != done.customer_id or {sale.purchase_id for sale in sales} - done.sales_seen:
        raise OutsideOutdated("a purchase was booked after Visma was asked to erase the customer; erasing it "
                             "there on the next attempt")
    if customer is not None:
        if customer.visma_customer_id:
            if done.gone:
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
OUTSIDE: dict[type[EventData], OutsideStep[Gateways]] = outside_with_legal_hold(
    {PurchaseCompleted: book_sale_at_visma, UserDeregistered: erase_customer_at_visma})
