"""What bookkeeping sends to Visma eAccounting: customer fields, invoice rows, and the erasure of a customer."""

from __future__ import annotations

from typing import Any

from schemas import Customer, PurchaseCompleted
from services.bookkeeping.settings import BookkeepingSettings
from services.vendors.rules import VISMA_CUSTOMER_MAX, VISMA_ROW_TEXT_MAX, fit
from services.vendors.visma import VismaClient

ANONYMOUS_CUSTOMER_NAME = "Anonymised customer"
# Kept on a deactivated customer: Visma requires city and postal code on every customer, and the country
# decides the VAT treatment of the invoices that stay; none of them names the person.
KEPT_ON_ANONYMISED_CUSTOMER = ("InvoiceCity", "InvoicePostalCode", "InvoiceCountryCode")
# Free text Visma keeps shorter than our events allow; shortened rather than refused.
SHORTENED_FIELDS = ("Name", "InvoiceAddress1", "InvoiceCity", "ContactPersonName")


def customer_fields(customer: Customer, currency: str, settings: BookkeepingSettings) -> dict[str, Any]:
    """The Visma customer for a buyer: a company with its contact person, or a private person.

    Free text longer than Visma keeps (Name and address lines 50 characters, contact person 100) is shortened
    to fit: the invoice still reaches the person, and the full text stays in the sale's own record. Values
    that cannot be shortened without becoming wrong (postal code, e-mail, phone, identity number) are sent as
    they are and refused by the client's rule check if too long.
    """
    business = customer.company_name is not None
    fields: dict[str, Any] = {
        "Name": customer.company_name if business else customer.name,
        "IsPrivatePerson": not business,
        "IsActive": True,
        "EmailAddress": customer.email,
        "MobilePhone": customer.phone,
        "InvoiceAddress1": customer.address.street,
        "InvoicePostalCode": customer.address.postal_code,
        "InvoiceCity": customer.address.city,
        "InvoiceCountryCode": customer.address.country,
        "CurrencyCode": currency,
        "TermsOfPaymentId": settings.visma_terms_of_payment_id,
    }
    if business:
        fields["ContactPersonName"] = customer.name
    if customer.corporate_id is not None:
        fields["CorporateIdentityNumber"] = customer.corporate_id
    for name in SHORTENED_FIELDS:
        fields[name] = fit(fields.get(name), VISMA_CUSTOMER_MAX[name])
    return {name: value for name, value in fields.items() if value is not None}


def anonymous_customer_fields(settings: BookkeepingSettings) -> dict[str, Any]:
    """The one customer that sales for erased users are booked on: no person behind it."""
    return {
        "Name": ANONYMOUS_CUSTOMER_NAME,
        "IsPrivatePerson": True,
        "IsActive": True,
        "InvoicePostalCode": settings.anonymous_customer_postal_code,
        "InvoiceCity": settings.anonymous_customer_city,
        "InvoiceCountryCode": "SE",
        "TermsOfPaymentId": settings.visma_terms_of_payment_id,
    }


def invoice_rows(event: PurchaseCompleted, settings: BookkeepingSettings) -> list[dict[str, Any]]:
    """The purchase lines as Visma invoice rows on the company's sales article (prices excluding VAT)."""
    return [
        {
            "LineNumber": number,
            "IsTextRow": False,
            "ArticleId": settings.visma_article_id,
            "Text": fit(f"{line.sku} {line.description}", VISMA_ROW_TEXT_MAX),
            "Quantity": line.quantity,
            "UnitPrice": float(line.unit_price),
            "IsVatFree": line.vat_rate == 0,
        }
        for number, line in enumerate(event.lines, start=1)
    ]


def erase_visma_customer(visma: VismaClient, customer_id: str) -> bool:
    """Delete the customer at Visma, or, if its invoices forbid that, deactivate and anonymise it.

    Returns True if the customer is gone, False if an anonymised, inactive record stays for its invoices.
    """
    if visma.delete_customer(customer_id):
        return True
    current = visma.get_customer(customer_id)
    keep = {name: current[name] for name in KEPT_ON_ANONYMISED_CUSTOMER if current.get(name) not in (None, "")}
    visma.deactivate_and_anonymise(customer_id, keep=keep)
    return False
