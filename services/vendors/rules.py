"""The outside vendors' documented input rules (ids, lengths, required fields), checked before every call.

Each rule names its source; services/sandbox/RULES.md lists them with the sandbox test that enforces each.
The clients raise `VendorRuleError` (a PermanentError: retrying cannot make a value fit) naming the field and
the rule, never the value, so a dead-letter reason carries no personal data.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from email_validator import EmailNotValidError, validate_email

from shared.errors import PermanentError

PAYPAL_SOURCE = "developer.paypal.com, Payment Method Tokens v3 (vault) reference"
VISMA_SOURCE = "eaccountingapi.vismaonline.com swagger (v2): CustomerApi, CustomerInvoiceApi, CustomerInvoiceRowApi"
MAILCHIMP_SOURCE = "mailchimp.com/developer/marketing: members, error glossary"


class VendorRuleError(PermanentError):
    """A value we were about to send breaks a vendor's documented rule."""


@dataclass(frozen=True)
class IdRule:
    """A string id: a full-match pattern and a length range."""

    vendor: str
    field: str
    pattern: re.Pattern[str]
    min_length: int
    max_length: int

    def problem(self, value: object) -> str | None:
        """What is wrong with the value (never quoting it), or None when it fits."""
        if not isinstance(value, str):
            return f"{self.vendor} {self.field} must be a string"
        if not self.min_length <= len(value) <= self.max_length:
            return (f"{self.vendor} {self.field} must be {self.min_length}-{self.max_length} characters "
                    f"(is {len(value)})")
        if not self.pattern.fullmatch(value):
            return f"{self.vendor} {self.field} must match {self.pattern.pattern}"
        return None

    def check(self, value: object) -> str:
        """The value if it fits, else VendorRuleError."""
        problem = self.problem(value)
        if problem is not None:
            raise VendorRuleError(f"refused before sending: {problem}")
        return str(value)


_PAYPAL_ID = re.compile(r"[0-9a-zA-Z_-]+")
# Vault v3 `customer.id`: ^[0-9a-zA-Z_-]+$, 7-36 characters.
PAYPAL_CUSTOMER_ID = IdRule("paypal", "customer_id", _PAYPAL_ID, 7, 36)
# Vault v3 payment token `id` (vault_id): ^[0-9a-zA-Z_-]+$, 1-36 characters.
PAYPAL_TOKEN_ID = IdRule("paypal", "payment token id", _PAYPAL_ID, 1, 36)
# Mailchimp's member id: the MD5 hex digest of the lower-cased address.
MAILCHIMP_SUBSCRIBER_HASH = IdRule("mailchimp", "subscriber_hash", re.compile(r"[0-9a-f]{32}"), 32, 32)


# Visma eAccounting field lengths (CustomerApi "Max length"), and the fields its model marks required.
VISMA_CUSTOMER_MAX = {
    "CustomerNumber": 16,
    "Name": 50,
    "InvoiceAddress1": 50,
    "InvoiceAddress2": 50,
    "InvoiceCity": 50,
    "InvoicePostalCode": 10,
    "InvoiceCountryCode": 2,
    "CurrencyCode": 3,
    "EmailAddress": 255,
    "MobilePhone": 50,
    "Telephone": 50,
    "ContactPersonName": 100,
    "ContactPersonEmail": 255,
    "ContactPersonPhone": 50,
    "ContactPersonMobile": 50,
    "CorporateIdentityNumber": 20,
    "VatNumber": 20,
    "DeliveryCustomerName": 100,
    "DeliveryAddress1": 50,
    "DeliveryAddress2": 50,
    "DeliveryCity": 50,
    "DeliveryPostalCode": 10,
    "DeliveryCountryCode": 2,
    "Note": 4000,
    "WwwAddress": 255,
}
VISMA_CUSTOMER_REQUIRED = ("Name", "InvoiceCity", "InvoicePostalCode", "TermsOfPaymentId", "IsPrivatePerson",
                           "IsActive")
VISMA_INVOICE_MAX = {"YourReference": 100, "OurReference": 100}
VISMA_INVOICE_REQUIRED = ("CustomerId", "EuThirdParty", "RotReducedInvoicingType", "Rows")
VISMA_ROT_TYPES = (0, 1, 2)  # 0 = normal, 1 = ROT, 2 = RUT
VISMA_ROW_TEXT_MAX = 2000
VISMA_CUSTOMER_NUMBER = IdRule("visma", "CustomerNumber", re.compile(r"\S(?:.*\S)?"), 1, 16)


def _missing(body: Mapping[str, Any], required: Iterable[str]) -> list[str]:
    return [name for name in required if body.get(name) in (None, "")]


def _too_long(body: Mapping[str, Any], limits: Mapping[str, int]) -> list[str]:
    return [f"{name} is too long (at most {limit})" for name, limit in limits.items()
            if isinstance(body.get(name), str) and len(body[name]) > limit]


def visma_customer_problems(body: Mapping[str, Any]) -> list[str]:
    """What Visma would refuse in a customer body: missing required fields, over-long fields."""
    problems = [f"{name} is required" for name in _missing(body, VISMA_CUSTOMER_REQUIRED)]
    problems += _too_long(body, VISMA_CUSTOMER_MAX)
    return problems


def visma_row_problems(row: Mapping[str, Any], number: int) -> list[str]:
    """What Visma would refuse in one invoice row."""
    problems = []
    if not isinstance(row.get("IsTextRow"), bool):
        problems.append(f"row {number}: IsTextRow is required")
    elif not row["IsTextRow"] and not row.get("ArticleId"):
        problems.append(f"row {number}: ArticleId is required unless IsTextRow")
    if isinstance(row.get("Text"), str) and len(row["Text"]) > VISMA_ROW_TEXT_MAX:
        problems.append(f"row {number}: Text is too long (at most {VISMA_ROW_TEXT_MAX})")
    return problems


def visma_invoice_problems(body: Mapping[str, Any]) -> list[str]:
    """What Visma would refuse in a customer invoice body."""
    problems = [f"{name} is required" for name in _missing(body, VISMA_INVOICE_REQUIRED)]
    if "EuThirdParty" in body and not isinstance(body["EuThirdParty"], bool):
        problems.append("EuThirdParty must be true or false")
    if body.get("RotReducedInvoicingType") not in (None, *VISMA_ROT_TYPES):
        problems.append("RotReducedInvoicingType must be 0, 1 or 2")
    problems += _too_long(body, VISMA_INVOICE_MAX)
    rows = body.get("Rows")
    if rows is not None and not isinstance(rows, list):
        problems.append("Rows must be a list")
    for number, row in enumerate(rows if isinstance(rows, list) else [], start=1):
        problems += visma_row_problems(row, number) if isinstance(row, Mapping) else [f"row {number}: not an object"]
    return problems


def refuse(vendor: str, what: str, problems: list[str]) -> None:
    """VendorRuleError listing the problems, if there are any."""
    if problems:
        raise VendorRuleError(f"refused before sending: {vendor} would reject the {what}: {'; '.join(problems)}")


def fit(value: str | None, limit: int) -> str | None:
    """The value shortened to the vendor's limit (at a word boundary where one is near), or None."""
    if value is None or len(value) <= limit:
        return value
    cut = value[:limit]
    space = cut.rfind(" ")
    return (cut[:space] if space >= limit * 2 // 3 else cut).rstrip()


# Mailchimp refuses addresses that "look fake or invalid". Its exact list is not published; these are the
# domains reserved so that no one can receive mail at them (RFC 2606, RFC 6761), which it refuses.
RESERVED_MAIL_DOMAINS = ("example.com", "example.net", "example.org")
RESERVED_MAIL_TLDS = ("example", "invalid", "localhost", "test")


def mail_address_problem(address: str) -> str | None:
    """Why Mailchimp would refuse the address as fake or invalid, or None (never quoting the address)."""
    try:
        checked = validate_email(address, check_deliverability=False)
    except EmailNotValidError:
        return "the address is not a valid e-mail address"
    domain = checked.ascii_domain.lower()
    if domain in RESERVED_MAIL_DOMAINS or domain.endswith(tuple(f".{d}" for d in RESERVED_MAIL_DOMAINS)):
        return "the address is at a reserved example domain, which looks fake"
    if domain.rpartition(".")[2] in RESERVED_MAIL_TLDS:
        return "the address is at a reserved top-level domain, which looks fake"
    return None


def subscriber_hash(email: str) -> str:
    """Mailchimp's member id: MD5 of the lower-cased, stripped e-mail address."""
    return hashlib.md5(email.strip().lower().encode(), usedforsecurity=False).hexdigest()


def paypal_customer_id(user_id: str) -> str:
    """The PayPal vault customer id for one of our users: stable, free of personal data, fits the pattern.

    `lg` and the first 32 hex digits of SHA-256 over `loggamera:paypal-customer:<user id>` (34 characters).
    The web shop vaults payment methods under this id; the payment service keeps the pair it used.
    """
    digest = hashlib.sha256(f"loggamera:paypal-customer:{user_id}".encode()).hexdigest()
    return PAYPAL_CUSTOMER_ID.check(f"lg{digest[:32]}")


def visma_customer_number(user_id: str) -> str:
    """The Visma CustomerNumber for one of our users: stable, free of personal data, at most 16 characters.

    `LG` and the first 14 hex digits (upper case) of SHA-256 over `loggamera:visma-customer:<user id>`:
    56 bits, so two users meeting on one number needs about 2^28 customers.
    """
    digest = hashlib.sha256(f"loggamera:visma-customer:{user_id}".encode()).hexdigest()
    return VISMA_CUSTOMER_NUMBER.check(f"LG{digest[:14].upper()}")


# Installer endpoints: contact details cross the internet to another company, so TLS, and a bearer token.
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def installer_endpoint_problem(url: str, plain_http_hosts: frozenset[str] = frozenset()) -> str | None:
    """Why contact details must not go to this endpoint (plain http off this machine), or None.

    `plain_http_hosts`: hosts besides this machine a development setup allows plain http to (the sandbox's
    service name in compose, from ERASURE_INSTALLER_SHARING_PLAIN_HTTP_HOSTS); empty in production."""
    parts = urlsplit(url)
    if parts.scheme == "https":
        return None
    if parts.scheme == "http" and (parts.hostname or "") in LOOPBACK_HOSTS | plain_http_hosts:
        return None
    return ("an installer endpoint must be https:// (plain http only on localhost, or on a host listed in "
            "ERASURE_INSTALLER_SHARING_PLAIN_HTTP_HOSTS)")
