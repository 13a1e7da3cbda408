"""The bookkeeping slice's part of a correction: the customer record is updated, and so is the customer in
Visma eAccounting (Art. 19). An anonymised (erased) customer is never given its details back."""

from __future__ import annotations

from sqlalchemy import select

from schemas import Address, Customer, PersonalDataCorrected
from services.bookkeeping.handlers import SERVICE, VISMA, Gateways
from services.bookkeeping.models import CustomerRecord, Sale
from services.bookkeeping.visma_records import customer_fields
from shared.correction import apply_contact, correction_report, erased_report
from shared.service import Context


def correct_customer(event: PersonalDataCorrected, ctx: Context[Gateways]) -> None:
    """Update the customer here and at Visma; an erased, anonymised or unknown customer is left as is."""
    erased = erased_report(ctx.session, event, SERVICE)
    customer = ctx.session.get(CustomerRecord, event.user_id) if erased is None else None
    if erased is not None or customer is None or customer.anonymised_at is not None:
        ctx.emit(erased or correction_report(event, SERVICE, erased=customer is not None))
        return
    corrected = apply_contact(customer, event)
    told = []
    if corrected and customer.visma_customer_id and customer.name and customer.email and customer.street \
            and customer.postal_code and customer.city:
        currency = ctx.session.scalars(select(Sale.currency).where(Sale.user_id == event.user_id)
                                       .order_by(Sale.sale_date.desc())).first() or "SEK"
        fields = customer_fields(Customer(
            name=customer.name, email=customer.email, phone=customer.phone,
            address=Address(street=customer.street, postal_code=customer.postal_code, city=customer.city,
                            country=customer.country or "SE"),
            company_name=customer.company_name, corporate_id=customer.corporate_id), currency, ctx.deps.settings)
        ctx.deps.visma.upsert_customer(customer.customer_number, fields)
        told.append(VISMA)
    ctx.emit(correction_report(event, SERVICE, corrected=corrected, recipients_notified=told))
    ctx.log.info("customer corrected", fields=corrected, recipients=told)
