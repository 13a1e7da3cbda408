"""Realistic, fictitious sample events for tests, the demo and the publish command.

Every value is deterministic for a given user id, so the same call gives the same event. Names and
addresses are made up; e-mail addresses are under kund.loggamera.se, a subdomain Loggamera owns and that
receives no mail (so no stranger is ever written to, and the vendors accept it: Mailchimp refuses the
reserved example.com domain as fake), and phone numbers the range PTS reserves for fiction
(070-174 06 05 to 070-174 06 99).
"""

from __future__ import annotations

import hashlib
import re
import zlib
from typing import Any
from uuid import UUID

from schemas.events import (
    SLICE_SERVICES,
    AccessRequested,
    AccessSliceAnswered,
    CorrectionSliceReported,
    ErasureCompleted,
    ErasureSliceReported,
    ErasureSliceRetrying,
    EventData,
    LegalHoldChanged,
    NewsletterConsentChanged,
    PersonalDataCorrected,
    PurchaseCompleted,
    PurchaseLine,
    UserDeregistered,
    purchase_totals,
)

# (name, street, postal code, city), all fictitious.
_PEOPLE = (
    ("Anna Lindqvist", "Storgatan 12", "114 55", "Stockholm"),
    ("Erik Johansson", "Kungsgatan 4 B", "411 19", "Göteborg"),
    ("Maria Karlsson", "Södra Förstadsgatan 31", "211 43", "Malmö"),
    ("Lars Nilsson", "Järnvägsgatan 7", "903 26", "Umeå"),
    ("Karin Andersson", "Drottninggatan 55", "753 10", "Uppsala"),
    ("Johan Eriksson", "Skolgatan 3", "831 31", "Östersund"),
)
_RETENTION_BASIS = "Bokföringslagen (1999:1078) 7 kap. 2 §"
# A purchase in 2026 (calendar financial year) is kept through the seventh year after: 31 Dec 2033.
_RETAIN_UNTIL = "2033-12-31"
_REQUEST_ID = UUID("6f1c2b9e-3d4a-4e5f-8a7b-9c0d1e2f3a4b")


def _pick(user_id: str) -> int:
    """A stable number derived from the user id, to vary the sample person."""
    return zlib.crc32(user_id.encode())


def _email(name: str, user_id: str) -> str:
    """A unique kund.loggamera.se address per user, so subscriber lists do not collide."""
    local = name.lower().replace(" ", ".").translate(str.maketrans("åäöé", "aaoe"))
    tag = re.sub(r"[^a-z0-9]+", "-", user_id.lower()).strip("-")
    return f"{local}+{tag}@kund.loggamera.se"


def example_customer(user_id: str = "u-1001") -> dict[str, Any]:
    """A private customer's contact details, as a JSON-ready dict."""
    index = _pick(user_id)
    name, street, postal_code, city = _PEOPLE[index % len(_PEOPLE)]
    return {
        "name": name,
        "email": _email(name, user_id),
        "phone": f"070-174 06 {5 + index % 95:02d}",
        "address": {"street": street, "postal_code": postal_code, "city": city, "country": "SE"},
    }


def _totals(lines: list[dict[str, Any]]) -> dict[str, str]:
    """Totals that add up for the given lines, as PurchaseCompleted demands."""
    excl, vat, incl = purchase_totals(PurchaseLine.model_validate(line) for line in lines)
    return {"total_excl_vat": str(excl), "vat_amount": str(vat), "total_incl_vat": str(incl)}


def _line(sku: str, description: str, quantity: int, unit_price: str) -> dict[str, Any]:
    """An order line at the standard 25 % VAT rate."""
    return {
        "sku": sku,
        "description": description,
        "quantity": quantity,
        "unit_price": unit_price,
        "vat_rate": "0.25",
    }


def example_purchase(user_id: str = "u-1001", **overrides: Any) -> PurchaseCompleted:
    """A completed PayPal purchase of a gateway, sensors and installation; totals follow the lines."""
    lines = overrides.get("lines") or [
        _line("LGM-GW-4G", "Loggamera gateway 4G", 1, "2490.00"),
        _line("LGM-T-WL", "Wireless temperature sensor", 3, "395.00"),
        _line("SRV-INST", "Installation on site", 1, "1500.00"),
    ]
    fields: dict[str, Any] = {
        "purchase_id": f"P-2026-{user_id}"[:64],
        "user_id": user_id,
        "purchased_at": "2026-03-02T09:15:00Z",
        "customer": example_customer(user_id),
        "installer": {"id": "inst-1", "name": "Exempel Elinstallation AB"},
        "lines": lines,
        "currency": "SEK",
        **_totals(lines),
        "payment": {
            "method": "paypal",
            "paypal": {
                "payer_id": "7XKQZ3LMN8P2A",
                "order_id": "5O190127TN364715T",
                "capture_id": "3C679366HH908993F",
                "vault_token_ids": ["8kk8451t"],
            },
        },
        "newsletter_consent": True,
    }
    return PurchaseCompleted.model_validate({**fields, **overrides})


def example_deregistration(user_id: str = "u-1001", **overrides: Any) -> UserDeregistered:
    """The user asked to be deregistered."""
    fields = {
        "user_id": user_id,
        "request_id": str(_REQUEST_ID),
        "reason": "user_request",
        "requested_at": "2026-04-14T08:00:00Z",
    }
    return UserDeregistered.model_validate({**fields, **overrides})


def example_consent_change(user_id: str = "u-1001", **overrides: Any) -> NewsletterConsentChanged:
    """The user consented to newsletters from the settings page."""
    fields = {
        "user_id": user_id,
        "email": example_customer(user_id)["email"],
        "consented": True,
        "changed_at": "2026-03-05T18:30:00Z",
    }
    return NewsletterConsentChanged.model_validate({**fields, **overrides})


def _retained(held_by: str, category: str) -> dict[str, str]:
    """A category kept under the Bookkeeping Act."""
    return {"category": category, "legal_basis": _RETENTION_BASIS, "retain_until": _RETAIN_UNTIL, "held_by": held_by}


_SLICE_DEFAULTS: dict[str, dict[str, Any]] = {
    "account": {
        "outcome": "erased",
        "erased": ["contact details", "mail-dispatch preferences", "sign-in sessions", "devices and plants"],
    },
    "installer_sharing": {
        "outcome": "erased",
        "erased": ["contact details sent to installers"],
        "recipients_notified": ["installer:inst-1"],
    },
    "payment": {
        "outcome": "retained",
        "erased": ["PayPal vault payment tokens", "payer contact details"],
        "retained": [_retained("PayPal", "payment transaction record")],
        "recipients_notified": ["PayPal"],
    },
    "bookkeeping": {
        "outcome": "retained",
        "erased": ["e-mail", "phone", "notes"],
        "retained": [_retained("Visma eAccounting", "sales transaction details")],
        "recipients_notified": ["Visma eAccounting"],
    },
    "newsletter": {
        "outcome": "erased",
        "erased": ["newsletter subscription"],
        "recipients_notified": ["Mailchimp"],
    },
}


def example_slice_report(
    service: str = "bookkeeping", user_id: str = "u-1001", **overrides: Any
) -> ErasureSliceReported:
    """What `service` typically reports after erasing its slice of the example user."""
    if service not in SLICE_SERVICES:
        raise ValueError(f"unknown slice service {service!r}; expected one of {', '.join(SLICE_SERVICES)}")
    fields = {
        "request_id": str(_REQUEST_ID),
        "user_id": user_id,
        "service": service,
        "reported_at": "2026-04-14T08:00:07Z",
        **_SLICE_DEFAULTS[service],
    }
    return ErasureSliceReported.model_validate({**fields, **overrides})


def example_completion(user_id: str = "u-1001", **overrides: Any) -> ErasureCompleted:
    """The ledger closed the example request after all five slices reported."""
    retained = [item for service in SLICE_SERVICES for item in _SLICE_DEFAULTS[service].get("retained", [])]
    fields = {
        "request_id": str(_REQUEST_ID),
        "user_id": user_id,
        "completed_at": "2026-04-14T08:00:09Z",
        "receipt_hash": hashlib.sha256(f"{_REQUEST_ID}:{user_id}".encode()).hexdigest(),
        "retained": retained,
    }
    return ErasureCompleted.model_validate({**fields, **overrides})


def example_hold_change(user_id: str = "u-1001", **overrides: Any) -> LegalHoldChanged:
    """An operator placed the first legal hold on the example user's erasure."""
    fields = {"user_id": user_id, "hold_id": 1, "held": True, "changed_at": "2026-04-14T08:00:00Z"}
    return LegalHoldChanged.model_validate({**fields, **overrides})


def example_slice_retrying(user_id: str = "u-1001", **overrides: Any) -> ErasureSliceRetrying:
    """The newsletter slice of the example request failed twice at Mailchimp and waits a minute."""
    fields = {
        "request_id": str(_REQUEST_ID),
        "user_id": user_id,
        "service": "newsletter",
        "system": "Mailchimp",
        "error": "mailchimp POST /3.0/lists/abc/members/8d1f/actions/delete-permanent answered 503: unavailable",
        "attempts": 2,
        "failed_at": "2026-04-14T08:00:12Z",
        "retry_in_seconds": 60.0,
    }
    return ErasureSliceRetrying.model_validate({**fields, **overrides})


_ACCESS_ID = UUID("8b0e7f2a-1c3d-4e5f-9a6b-7c8d9e0f1a2b")


def example_access_request(user_id: str = "u-1001", **overrides: Any) -> AccessRequested:
    """The example user asks for a copy of their personal data."""
    fields = {"user_id": user_id, "request_id": str(_ACCESS_ID), "requested_at": "2026-04-14T08:00:00Z"}
    return AccessRequested.model_validate({**fields, **overrides})


def example_access_answer(user_id: str = "u-1001", **overrides: Any) -> AccessSliceAnswered:
    """The newsletter slice's part of the example access request: the Mailchimp member."""
    fields = {
        "request_id": str(_ACCESS_ID),
        "user_id": user_id,
        "service": "newsletter",
        "items": [{"category": "newsletter subscription", "held_by": "Mailchimp",
                   "data": {"email_address": f"{user_id}@kund.loggamera.se", "status": "subscribed"},
                   "purpose": "sending the newsletter the user asked for", "recipients": ["Mailchimp"],
                   "retention": "until consent is withdrawn", "legal_basis": "consent, GDPR Art. 6(1)(a)"}],
        "answered_at": "2026-04-14T08:00:05Z",
    }
    return AccessSliceAnswered.model_validate({**fields, **overrides})


_CORRECTION_ID = UUID("5d4c3b2a-1f0e-4d9c-8b7a-6f5e4d3c2b1a")


def example_correction(user_id: str = "u-1001", **overrides: Any) -> PersonalDataCorrected:
    """The example user corrects their e-mail address and phone number."""
    fields = {"user_id": user_id, "request_id": str(_CORRECTION_ID), "requested_at": "2026-04-14T08:00:00Z",
              "corrected": {"email": f"{user_id}.new@kund.loggamera.se", "phone": "+46701740606"}}
    return PersonalDataCorrected.model_validate({**fields, **overrides})


def example_correction_report(user_id: str = "u-1001", **overrides: Any) -> CorrectionSliceReported:
    """The newsletter slice changed the member's address at Mailchimp."""
    fields = {"request_id": str(_CORRECTION_ID), "user_id": user_id, "service": "newsletter",
              "outcome": "corrected", "corrected": ["email"], "recipients_notified": ["Mailchimp"],
              "reported_at": "2026-04-14T08:00:07Z"}
    return CorrectionSliceReported.model_validate({**fields, **overrides})


def example_for(model: type[EventData], user_id: str = "u-1001") -> EventData:
    """The example event of a given event model."""
    factories = {
        UserDeregistered: example_deregistration,
        PurchaseCompleted: example_purchase,
        NewsletterConsentChanged: example_consent_change,
        ErasureSliceReported: lambda user_id: example_slice_report(user_id=user_id),
        ErasureCompleted: example_completion,
        LegalHoldChanged: example_hold_change,
        ErasureSliceRetrying: example_slice_retrying,
        AccessRequested: example_access_request,
        AccessSliceAnswered: example_access_answer,
        PersonalDataCorrected: example_correction,
        CorrectionSliceReported: example_correction_report,
    }
    return factories[model](user_id)
