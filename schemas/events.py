"""Event payloads (the CloudEvents `data`) of the erasure pipeline; the source of truth for the wire."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Annotated, Any, ClassVar, Literal, Self, get_args

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from schemas.envelope import SCHEMA_BASE_URI, routing_key_for
from schemas.validators import (
    CorporateId,
    Email,
    Money,
    Phone,
    SwedishPostalCode,
    UserId,
    UtcDateTime,
    VatRate,
    WireDate,
    WireUUID,
    round_money,
)

SliceService = Literal["account", "installer_sharing", "payment", "bookkeeping", "newsletter"]
SLICE_SERVICES: tuple[str, ...] = get_args(SliceService)

# Text is taken as sent: lengths are bounded, nothing is stripped, so the JSON Schema says exactly what is accepted.
ShortText = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Text = Annotated[str, StringConstraints(min_length=1, max_length=200)]
LongText = Annotated[str, StringConstraints(min_length=1, max_length=500)]


def _if_then(condition: dict[str, Any], then: dict[str, Any], otherwise: dict[str, Any]) -> dict[str, Any]:
    """A JSON Schema `if/then/else` over an object's properties (the model validators' cross-field rules)."""
    return {"if": condition, "then": then, "else": otherwise}


def _user_id_field() -> Any:
    """The user_id field every event carries."""
    return Field(description="Opaque id of the user; never an e-mail address.", examples=["u-1001"])


def _request_id_field() -> Any:
    """The request_id field of erasure reports."""
    return Field(
        description="Id of the erasure request this belongs to.",
        examples=["6f1c2b9e-3d4a-4e5f-8a7b-9c0d1e2f3a4b"],
    )


class _Part(BaseModel):
    """A nested value inside an event: immutable, unknown fields refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class EventData(_Part):
    """Payload of one event type; each subclass names its CloudEvents `type`."""

    event_type: ClassVar[str]

    @classmethod
    def routing_key(cls) -> str:
        """The topic routing key this event is published under."""
        return routing_key_for(cls.event_type)

    @classmethod
    def dataschema(cls) -> str:
        """The stable URI of this event's JSON Schema."""
        return f"{SCHEMA_BASE_URI}/{cls.routing_key()}.json"


class UserDeregistered(EventData):
    """A user's account is to be erased: on request, after three years without sign-in, or by an admin."""

    event_type: ClassVar[str] = "se.loggamera.user.deregistered.v1"
    model_config = ConfigDict(json_schema_extra={"allOf": [_if_then(
        {"required": ["replay"], "properties": {"replay": {"const": True}}},
        {"required": ["original_request_id"], "properties": {"original_request_id": {"type": "string"}}},
        {"properties": {"original_request_id": {"type": "null"}}},
    )]})

    user_id: UserId = _user_id_field()
    request_id: WireUUID = Field(
        description="Id of the erasure request; every slice report and the receipt refer to it.",
        examples=["6f1c2b9e-3d4a-4e5f-8a7b-9c0d1e2f3a4b"],
    )
    reason: Literal["user_request", "inactivity", "admin"] = Field(
        description="Why: the user asked, three years passed since the last sign-in, or an admin decided.",
        examples=["user_request"],
    )
    requested_at: UtcDateTime = Field(
        description="When the request was received; the one-month deadline (GDPR Art. 12(3)) runs from here.",
        examples=["2026-03-02T09:15:00Z"],
    )
    replay: bool = Field(
        default=False,
        description="True when the erasure is re-applied after a backup restore.",
        examples=[False],
    )
    original_request_id: WireUUID | None = Field(
        default=None,
        description="For a replay, the request being re-applied; absent otherwise.",
        examples=["2a7d9c41-5b3e-4f60-9e18-7c2b4d6a8f05"],
    )

    @model_validator(mode="after")
    def _replay_names_its_original(self) -> Self:
        if self.replay and self.original_request_id is None:
            raise ValueError("a replayed deregistration must name its original_request_id")
        if not self.replay and self.original_request_id is not None:
            raise ValueError("original_request_id is only allowed on a replay")
        return self


class Address(_Part):
    """A Swedish postal address."""

    street: Text = Field(description="Street and number.", examples=["Storgatan 12"])
    postal_code: SwedishPostalCode = Field(description="Postal code, 'NNN NN'.", examples=["114 55"])
    city: Text = Field(description="Post town.", examples=["Stockholm"])
    country: str = Field(
        default="SE",
        pattern=r"^[A-Z]{2}$",
        description="ISO 3166-1 alpha-2 country code.",
        examples=["SE"],
    )


class Customer(_Part):
    """Who bought: the contact details the policy lets us forward."""

    name: Text = Field(description="Full name of the customer.", examples=["Anna Lindqvist"])
    email: Email = Field(description="Customer e-mail address.", examples=["anna.lindqvist@kund.loggamera.se"])
    phone: Phone | None = Field(default=None, description="Customer phone number, E.164.", examples=["+46701740605"])
    address: Address = Field(
        description="Installation and invoice address.",
        examples=[{"street": "Storgatan 12", "postal_code": "114 55", "city": "Stockholm", "country": "SE"}],
    )
    company_name: Text | None = Field(
        default=None,
        description="Company name when buying as a business.",
        examples=["Lindqvist Fastigheter AB"],
    )
    corporate_id: CorporateId | None = Field(
        default=None,
        description="Organisation number, or a sole trader's personnummer (which is personal data).",
        examples=["559123-4561"],
    )


class InstallerRef(_Part):
    """The installation company that performs the physical installation."""

    id: ShortText = Field(description="Id of the installer in the installer directory.", examples=["inst-42"])
    name: Text = Field(description="Name of the installation company.", examples=["Exempel Elinstallation AB"])


class PurchaseLine(_Part):
    """One line of the order; prices exclude VAT."""

    sku: ShortText = Field(description="Article number.", examples=["LGM-GW-4G"])
    description: LongText = Field(description="What was sold.", examples=["Loggamera gateway 4G"])
    quantity: int = Field(gt=0, le=1_000_000, description="Number of units.", examples=[1])
    unit_price: Money = Field(description="Price per unit excluding VAT.", examples=["2490.00"])
    vat_rate: VatRate = Field(description="VAT rate for this line.", examples=["0.25"])


class PayPalRefs(_Part):
    """References to an online payment at PayPal; no card data ever passes through us."""

    payer_id: ShortText = Field(description="PayPal payer id.", examples=["7XKQZ3LMN8P2A"])
    order_id: ShortText = Field(description="PayPal order id.", examples=["5O190127TN364715T"])
    capture_id: ShortText | None = Field(
        default=None, description="PayPal capture id, once captured.", examples=["3C679366HH908993F"]
    )
    vault_token_ids: list[ShortText] = Field(
        default_factory=list,
        description="Vault v3 payment-token ids saved for the payer; deleted on erasure.",
        examples=[["8kk8451t"]],
    )


class Payment(_Part):
    """How the purchase was paid."""

    model_config = ConfigDict(json_schema_extra={"allOf": [_if_then(
        {"required": ["method"], "properties": {"method": {"const": "paypal"}}},
        {"required": ["paypal"], "properties": {"paypal": {"type": "object"}}},
        {"properties": {"paypal": {"type": "null"}}},
    )]})

    method: Literal["paypal", "invoice"] = Field(
        description="Online payment through PayPal, or invoice.", examples=["paypal"]
    )
    paypal: PayPalRefs | None = Field(
        default=None,
        description="PayPal references; present exactly when the method is paypal.",
        examples=[{"payer_id": "7XKQZ3LMN8P2A", "order_id": "5O190127TN364715T"}],
    )

    @model_validator(mode="after")
    def _paypal_refs_iff_paypal(self) -> Self:
        if (self.method == "paypal") != (self.paypal is not None):
            raise ValueError("paypal references are required for method 'paypal' and forbidden otherwise")
        return self


def purchase_totals(lines: Iterable[PurchaseLine]) -> tuple[Decimal, Decimal, Decimal]:
    """(excl. VAT, VAT, incl. VAT) of the lines; VAT is rounded half up once, over all lines."""
    items = list(lines)
    excl = round_money(sum((line.quantity * line.unit_price for line in items), Decimal(0)))
    vat = round_money(sum((line.quantity * line.unit_price * line.vat_rate for line in items), Decimal(0)))
    return excl, vat, excl + vat


class PurchaseCompleted(EventData):
    """A purchase completed: forward exactly the contact data the policy names to exactly its recipients."""

    event_type: ClassVar[str] = "se.loggamera.purchase.completed.v1"

    purchase_id: ShortText = Field(description="Id of the purchase in the web shop.", examples=["P-2026-000123"])
    user_id: UserId = _user_id_field()
    purchased_at: UtcDateTime = Field(description="When the purchase completed.", examples=["2026-03-02T09:15:00Z"])
    customer: Customer = Field(
        description="Customer contact details and address.",
        examples=[
            {
                "name": "Anna Lindqvist",
                "email": "anna.lindqvist@kund.loggamera.se",
                "phone": "+46701740605",
                "address": {"street": "Storgatan 12", "postal_code": "114 55", "city": "Stockholm"},
            }
        ],
    )
    installer: InstallerRef = Field(
        description="The installation company that receives the contact details.",
        examples=[{"id": "inst-42", "name": "Exempel Elinstallation AB"}],
    )
    lines: list[PurchaseLine] = Field(
        min_length=1,
        description="Order lines.",
        examples=[
            [
                {
                    "sku": "LGM-GW-4G",
                    "description": "Loggamera gateway 4G",
                    "quantity": 1,
                    "unit_price": "2490.00",
                    "vat_rate": "0.25",
                }
            ]
        ],
    )
    currency: str = Field(default="SEK", pattern=r"^[A-Z]{3}$", description="ISO 4217 currency code.", examples=["SEK"])
    total_excl_vat: Money = Field(description="Sum of quantity x unit_price over the lines.", examples=["2490.00"])
    vat_amount: Money = Field(
        description="Sum of quantity x unit_price x vat_rate over the lines, rounded half up to 2 decimals.",
        examples=["622.50"],
    )
    total_incl_vat: Money = Field(description="total_excl_vat + vat_amount.", examples=["3112.50"])
    payment: Payment = Field(
        description="Payment method and, for PayPal, its references.",
        examples=[{"method": "invoice"}],
    )
    newsletter_consent: bool = Field(
        description="The customer agreed to newsletters and offers by e-mail.", examples=[False]
    )

    @model_validator(mode="after")
    def _totals_add_up(self) -> Self:
        excl, vat, incl = purchase_totals(self.lines)
        if self.total_excl_vat != excl:
            raise ValueError(f"total_excl_vat {self.total_excl_vat} differs from the sum of the lines {excl}")
        if self.vat_amount != vat:
            raise ValueError(f"vat_amount {self.vat_amount} differs from the VAT of the lines {vat}")
        if self.total_incl_vat != incl:
            raise ValueError(f"total_incl_vat {self.total_incl_vat} is not total_excl_vat + vat_amount {incl}")
        return self


class NewsletterConsentChanged(EventData):
    """A user gave or withdrew consent to newsletters and offers by e-mail."""

    event_type: ClassVar[str] = "se.loggamera.newsletter.consent_changed.v1"

    user_id: UserId = _user_id_field()
    email: Email = Field(
        description="The address the consent applies to.", examples=["anna.lindqvist@kund.loggamera.se"]
    )
    consented: bool = Field(description="True when consent was given, false when withdrawn.", examples=[True])
    changed_at: UtcDateTime = Field(description="When the consent changed.", examples=["2026-03-02T09:15:00Z"])


class RetainedCategory(_Part):
    """A category of personal data kept after erasure because the law requires it."""

    category: Text = Field(description="What is kept.", examples=["sales transaction details"])
    legal_basis: Text = Field(
        description="The law that requires keeping it.", examples=["Bokföringslagen (1999:1078) 7 kap. 2 §"]
    )
    retain_until: WireDate = Field(description="Last day it is kept; erased the day after.", examples=["2033-12-31"])
    held_by: Text = Field(description="Who holds it.", examples=["Loggamera", "PayPal", "Visma eAccounting"])


class ErasureSliceReported(EventData):
    """One service reports what it erased, kept by law, and which recipients it told (GDPR Art. 17, 19)."""

    event_type: ClassVar[str] = "se.loggamera.erasure.slice_reported.v1"
    model_config = ConfigDict(json_schema_extra={"allOf": [
        _if_then(
            {"required": ["outcome"], "properties": {"outcome": {"const": "retained"}}},
            {"required": ["retained"], "properties": {"retained": {"minItems": 1}}},
            {"properties": {"retained": {"maxItems": 0}}},
        ),
        _if_then(
            {"required": ["outcome"], "properties": {"outcome": {"const": "nothing_held"}}},
            {"properties": {"erased": {"maxItems": 0}}},
            {},
        ),
    ]})

    request_id: WireUUID = _request_id_field()
    user_id: UserId = _user_id_field()
    service: SliceService = Field(description="The service reporting its slice.", examples=["bookkeeping"])
    outcome: Literal["erased", "nothing_held", "retained"] = Field(
        description="erased: all gone; nothing_held: there was nothing; retained: some is kept by law.",
        examples=["retained"],
    )
    erased: list[Text] = Field(
        default_factory=list,
        description="Categories of personal data erased.",
        examples=[["contact details", "e-mail", "phone"]],
    )
    retained: list[RetainedCategory] = Field(
        default_factory=list,
        description="Categories kept by law, with legal basis and retain-until date.",
        examples=[
            [
                {
                    "category": "sales transaction details",
                    "legal_basis": "Bokföringslagen (1999:1078) 7 kap. 2 §",
                    "retain_until": "2033-12-31",
                    "held_by": "Visma eAccounting",
                }
            ]
        ],
    )
    recipients_notified: list[Text] = Field(
        default_factory=list,
        description="Outside recipients told to erase (Art. 19).",
        examples=[["Visma eAccounting", "installer:inst-42", "Mailchimp"]],
    )
    reported_at: UtcDateTime = Field(description="When the slice finished.", examples=["2026-03-02T09:15:07Z"])
    replay: bool = Field(
        default=False,
        description="True when reporting a re-applied erasure after a backup restore.",
        examples=[False],
    )

    @model_validator(mode="after")
    def _outcome_matches_lists(self) -> Self:
        if (self.outcome == "retained") != bool(self.retained):
            raise ValueError("outcome 'retained' requires retained categories, and only it may list them")
        if self.outcome == "nothing_held" and self.erased:
            raise ValueError("outcome 'nothing_held' cannot list erased categories")
        return self


class ErasureCompleted(EventData):
    """Every slice has reported: the request is closed and its receipt is in the chain."""

    event_type: ClassVar[str] = "se.loggamera.erasure.completed.v1"

    request_id: WireUUID = _request_id_field()
    user_id: UserId = _user_id_field()
    completed_at: UtcDateTime = Field(description="When the last slice reported.", examples=["2026-03-02T09:15:09Z"])
    receipt_hash: str = Field(
        pattern=r"^[0-9a-f]{64}$",
        description="SHA-256 (lower-case hex) of the receipt in the tamper-evident chain.",
        examples=["9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"],
    )
    retained: list[RetainedCategory] = Field(
        default_factory=list,
        description="Union of what the slices kept by law, for the confirmation e-mail.",
        examples=[
            [
                {
                    "category": "sales transaction details",
                    "legal_basis": "Bokföringslagen (1999:1078) 7 kap. 2 §",
                    "retain_until": "2033-12-31",
                    "held_by": "Loggamera",
                }
            ]
        ],
    )
    replay: bool = Field(
        default=False,
        description="True when closing a re-applied erasure after a backup restore.",
        examples=[False],
    )


class LegalHoldChanged(EventData):
    """A legal hold on a user's erasure was placed or released: slices defer (or resume) erasing that user."""

    event_type: ClassVar[str] = "se.loggamera.legal_hold.changed.v1"

    user_id: UserId = _user_id_field()
    hold_id: int = Field(ge=1, description="Number of the hold in the ledger; a release names the hold it ends.",
                         examples=[1])
    held: bool = Field(description="True when the hold is placed, False when it is released.", examples=[True])
    changed_at: UtcDateTime = Field(description="When the operator placed or released the hold.",
                                    examples=["2026-04-14T08:00:00Z"])


class ErasureSliceRetrying(EventData):
    """A slice's erasure failed and waits for a retry (or was dead-lettered): which outside system, why, when next.

    Sent by the runtime's retry path after the failed delivery went to a delay tier or the dead-letter queue, so
    the ledger can name the failing slice and system while the request is open. Not a report: the request stays
    open until the slice reports.
    """

    event_type: ClassVar[str] = "se.loggamera.erasure.slice_retrying.v1"

    request_id: WireUUID = _request_id_field()
    user_id: UserId = _user_id_field()
    service: SliceService = Field(description="The slice whose erasure failed.", examples=["newsletter"])
    system: Text | None = Field(
        default=None,
        description="The outside system that failed, when the error names one; absent for an internal failure.",
        examples=["Mailchimp"],
    )
    error: LongText = Field(
        description="The last error, masked of personal data and cut to 500 characters.",
        examples=["mailchimp POST /3.0/lists/abc/members/8d1f/actions/delete-permanent answered 503: unavailable"],
    )
    attempts: int = Field(ge=1, description="How many times the erasure has failed so far.", examples=[2])
    failed_at: UtcDateTime = Field(description="When this attempt failed.", examples=["2026-04-14T08:00:12Z"])
    retry_in_seconds: float | None = Field(
        default=None, ge=0,
        description="Seconds from failed_at until the next automatic try; absent once it was dead-lettered "
                    "(an operator replays it or runs `erasure retry`).",
        examples=[60.0],
    )


class AccessRequested(EventData):
    """A data subject asked for a copy of their personal data (GDPR Art. 15): every slice answers with its part."""

    event_type: ClassVar[str] = "se.loggamera.access.requested.v1"

    user_id: UserId = _user_id_field()
    request_id: WireUUID = Field(
        description="Id of the access request; every slice's answer and the export refer to it.",
        examples=["8b0e7f2a-1c3d-4e5f-9a6b-7c8d9e0f1a2b"],
    )
    requested_at: UtcDateTime = Field(
        description="When the request was received; the one-month deadline (GDPR Art. 12(3)) runs from here.",
        examples=["2026-04-14T08:00:00Z"],
    )


class AccessItem(_Part):
    """One category of personal data a slice holds (or an outside system holds for it), with what Art. 15 asks."""

    category: Text = Field(description="What the data is.", examples=["newsletter subscription"])
    held_by: Text = Field(description="Who holds it.", examples=["Mailchimp"])
    data: dict[str, Any] = Field(
        description="The data itself, as held (personal data: the export is the only place it goes).",
        examples=[{"email_address": "anna.lindqvist@kund.loggamera.se", "status": "subscribed"}],
    )
    purpose: Text = Field(description="Why it is processed.", examples=["sending the newsletter the user asked for"])
    recipients: list[Text] = Field(
        default_factory=list, description="Who it was disclosed to.", examples=[["Mailchimp"]],
    )
    retention: Text = Field(description="How long it is kept.", examples=["until consent is withdrawn"])
    legal_basis: Text = Field(description="The legal basis of the processing.",
                              examples=["consent, GDPR Art. 6(1)(a)"])


class AccessSliceAnswered(EventData):
    """One slice's part of an access request: everything it (and the outside systems it feeds) holds on the user."""

    event_type: ClassVar[str] = "se.loggamera.access.slice_answered.v1"

    request_id: WireUUID = Field(description="Id of the access request answered.",
                                 examples=["8b0e7f2a-1c3d-4e5f-9a6b-7c8d9e0f1a2b"])
    user_id: UserId = _user_id_field()
    service: SliceService = Field(description="The service answering for its slice.", examples=["newsletter"])
    items: list[AccessItem] = Field(
        default_factory=list,
        description="What the slice holds; empty when it holds nothing on the user.",
        examples=[[{"category": "newsletter subscription", "held_by": "Mailchimp",
                    "data": {"email_address": "anna.lindqvist@kund.loggamera.se", "status": "subscribed"},
                    "purpose": "sending the newsletter the user asked for", "recipients": ["Mailchimp"],
                    "retention": "until consent is withdrawn", "legal_basis": "consent, GDPR Art. 6(1)(a)"}]],
    )
    answered_at: UtcDateTime = Field(description="When the slice answered.", examples=["2026-04-14T08:00:05Z"])


class CorrectedFields(_Part):
    """The corrected values of a user's personal data (GDPR Art. 16); only the fields that change are given."""

    model_config = ConfigDict(json_schema_extra={"anyOf": [
        {"required": [name], "properties": {name: {"type": kind}}}
        for name, kind in (("name", "string"), ("email", "string"), ("phone", "string"), ("address", "object"))
    ]})

    name: Text | None = Field(default=None, description="The corrected full name.", examples=["Anna Lindqvist"])
    email: Email | None = Field(default=None, description="The corrected e-mail address.",
                                examples=["anna.lindqvist@kund.loggamera.se"])
    phone: Phone | None = Field(default=None, description="The corrected phone number, E.164.",
                                examples=["+46701740606"])
    address: Address | None = Field(
        default=None, description="The corrected postal address (all of it).",
        examples=[{"street": "Storgatan 14", "postal_code": "114 55", "city": "Stockholm", "country": "SE"}],
    )

    @model_validator(mode="after")
    def _something_corrected(self) -> Self:
        if not self.names():
            raise ValueError("a correction names at least one corrected field")
        return self

    def names(self) -> list[str]:
        """The names of the corrected fields (no values: safe for logs and the ledger)."""
        return [name for name in type(self).model_fields if getattr(self, name) is not None]


class PersonalDataCorrected(EventData):
    """A user's personal data was corrected: every slice updates what it holds and tells its recipients (Art. 19)."""

    event_type: ClassVar[str] = "se.loggamera.personal_data.corrected.v1"

    user_id: UserId = _user_id_field()
    request_id: WireUUID = Field(description="Id of the correction request; every slice's report refers to it.",
                                 examples=["5d4c3b2a-1f0e-4d9c-8b7a-6f5e4d3c2b1a"])
    corrected: CorrectedFields = Field(
        description="The corrected values.", examples=[{"email": "anna.lindqvist@kund.loggamera.se"}])
    requested_at: UtcDateTime = Field(
        description="When the correction was asked for; the one-month deadline runs from here.",
        examples=["2026-04-14T08:00:00Z"],
    )


class CorrectionSliceReported(EventData):
    """One slice reports what it corrected and which recipients it told; `erased` for a user it has erased."""

    event_type: ClassVar[str] = "se.loggamera.correction.slice_reported.v1"

    request_id: WireUUID = Field(description="Id of the correction request.",
                                 examples=["5d4c3b2a-1f0e-4d9c-8b7a-6f5e4d3c2b1a"])
    user_id: UserId = _user_id_field()
    service: SliceService = Field(description="The service reporting its slice.", examples=["newsletter"])
    outcome: Literal["corrected", "nothing_held", "erased"] = Field(
        description="corrected: updated; nothing_held: it holds none of the fields; erased: the user was erased "
                    "here and is not re-created.",
        examples=["corrected"],
    )
    corrected: list[ShortText] = Field(default_factory=list, description="Names of the fields updated here.",
                                       examples=[["email"]])
    recipients_notified: list[Text] = Field(default_factory=list, description="Outside recipients told (Art. 19).",
                                            examples=[["Mailchimp"]])
    reported_at: UtcDateTime = Field(description="When the slice finished.", examples=["2026-04-14T08:00:07Z"])
