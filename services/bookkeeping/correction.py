"""The bookkeeping slice's part of a correction: the customer record is updated, and so is the customer in
Visma eAccounting (Art. 19), by an outside step before the correction's transaction. An anonymised (erased)
customer is never given its details back."""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from schemas import Address, Customer, PersonalDataCorrected
from services.bookkeeping.handlers import (
    SERVICE,
    VISMA,
    Gateways,
    asked_visma,
    erase_named_customer_of_earlier_attempt,
    sales_of,
)
from services.bookkeeping.models import CustomerRecord, Sale
from services.bookkeeping.settings import BookkeepingSettings
from services.bookkeeping.visma_records import customer_fields
from shared.correction import apply_contact, correction_report, erased_report
from shared.erasure import is_erased
from shared.errors import OutsideOutdated
from shared.service import Context, Outside


@dataclass(frozen=True)
class CorrectedAtVisma:
    """What a correction's outside step sent to Visma: the corrected customer's fields, or None (not told);
    and the user's sales it saw, so that the handler knows whether a purchase was booked since."""

    fields: dict[str, Any] | None
    sales_seen: frozenset[str] = frozenset()


def _visma_fields(session: Session, customer: Any, corrected: list[str],
                  settings: BookkeepingSettings) -> dict[str, Any] | None:
    """The Visma customer for a corrected customer record (an ORM row or a detached copy of one); None when
    Visma is not told: nothing corrected, no customer at Visma, or a detail Visma requires is missing."""
    if not (corrected and customer.visma_customer_id and customer.name and customer.email and customer.street
            and customer.postal_code and customer.city):
        return None
    currency = session.scalars(select(Sale.currency).where(Sale.user_id == customer.user_id)
                               .order_by(Sale.sale_date.desc())).first() or "SEK"
    return customer_fields(Customer(
        name=customer.name, email=customer.email, phone=customer.phone,
        address=Address(street=customer.street, postal_code=customer.postal_code, city=customer.city,
                        country=customer.country or "SE"),
        company_name=customer.company_name, corporate_id=customer.corporate_id), currency, settings)


def correct_customer_at_visma(event: PersonalDataCorrected, out: Outside[Gateways]) -> CorrectedAtVisma:
    """Outside step of a correction: the corrected customer sent to Visma, worked out on a copy of the record.

    For an erased user, a named customer an earlier attempt may have restored at Visma is erased again.
    """
    fields, number = None, ""
    with out.read() as session:
        seen = sales_of(session, event.user_id)
        erased = is_erased(session, event.user_id)
        customer = None if erased else session.get(CustomerRecord, event.user_id)
        if customer is not None and customer.anonymised_at is None:
            copy = SimpleNamespace(**{column.key: getattr(customer, column.key)
                                      for column in CustomerRecord.__table__.columns})
            fields = _visma_fields(session, copy, apply_contact(copy, event), out.deps.settings)
            number = customer.customer_number
    if erased and out.tried_before:
        erase_named_customer_of_earlier_attempt(out, out.deps.visma, event.user_id)
    if fields is not None:
        out.deps.visma.upsert_customer(number, fields)
    return CorrectedAtVisma(fields, seen)


def correct_customer(event: PersonalDataCorrected, ctx: Context[Gateways]) -> None:
    """Update the customer here (and, by its outside step, at Visma); an erased, anonymised or unknown customer
    is left as is."""
    told_visma = asked_visma(ctx, CorrectedAtVisma)
    erased = erased_report(ctx.session, event, SERVICE)
    customer = ctx.session.get(CustomerRecord, event.user_id) if erased is None else None
    if erased is not None or customer is None or customer.anonymised_at is not None:
        if told_visma.fields is not None:
            raise OutsideOutdated("the customer was erased after Visma was told of the correction; erasing it "
                                 "there again on the next attempt")
        ctx.emit(erased or correction_report(event, SERVICE, erased=customer is not None))
        return
    corrected = apply_contact(customer, event)
    if _visma_fields(ctx.session, customer, corrected, ctx.deps.settings) != told_visma.fields \
            or sales_of(ctx.session, event.user_id) - told_visma.sales_seen:
        raise OutsideOutdated("the customer changed after Visma was told of the correction; telling it again on "
                             "the next attempt")
    told = [VISMA] if told_visma.fields is not None else []
    ctx.emit(correction_report(event, SERVICE, corrected=corrected, recipients_notified=told))
    ctx.log.info("customer corrected", fields=corrected, recipients=told)
