"""Which events exist, who consumes and who sends each, and how payloads go into and out of envelopes."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID, uuid4

from schemas.envelope import CloudEvent
from schemas.events import (
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
    UserDeregistered,
)

EVENT_MODELS: tuple[type[EventData], ...] = (
    UserDeregistered,
    PurchaseCompleted,
    NewsletterConsentChanged,
    ErasureSliceReported,
    ErasureCompleted,
    LegalHoldChanged,
    ErasureSliceRetrying,
    AccessRequested,
    AccessSliceAnswered,
    PersonalDataCorrected,
    CorrectionSliceReported,
)
EVENT_TYPES: dict[str, type[EventData]] = {model.event_type: model for model in EVENT_MODELS}

# Event type -> the field of its data that carries personal data, and may travel sealed (a compact JWE of the
# field's JSON value under the user's data key; docs/CONTRACT.md). Our own publishers always seal these fields.
SEALED_FIELDS: dict[str, str] = {
    PurchaseCompleted.event_type: "customer",
    NewsletterConsentChanged.event_type: "email",
    AccessSliceAnswered.event_type: "items",
    PersonalDataCorrected.event_type: "corrected",
}

# Service name -> events it consumes. The broker bindings of each service queue are derived from this.
SUBSCRIPTIONS: dict[str, tuple[type[EventData], ...]] = {
    "account": (UserDeregistered, ErasureCompleted, LegalHoldChanged, AccessRequested, PersonalDataCorrected),
    "installer_sharing": (PurchaseCompleted, UserDeregistered, LegalHoldChanged, AccessRequested,
                          PersonalDataCorrected),
    "payment": (PurchaseCompleted, UserDeregistered, LegalHoldChanged, AccessRequested, PersonalDataCorrected),
    "bookkeeping": (PurchaseCompleted, UserDeregistered, LegalHoldChanged, AccessRequested, PersonalDataCorrected),
    "newsletter": (PurchaseCompleted, NewsletterConsentChanged, UserDeregistered, LegalHoldChanged, AccessRequested,
                   PersonalDataCorrected),
    "ledger": (UserDeregistered, ErasureSliceReported, ErasureSliceRetrying, AccessRequested, AccessSliceAnswered,
               PersonalDataCorrected, CorrectionSliceReported),
}

# Producer name -> events it sends. "upstream" stands for the web shop and portal outside this repository;
# account sends UserDeregistered itself for the intake mailbox and the inactivity sweep, and AccessRequested for
# access requests by mail; the ledger sends AccessRequested and PersonalDataCorrected for operators' requests.
PUBLICATIONS: dict[str, tuple[type[EventData], ...]] = {
    "account": (UserDeregistered, ErasureSliceReported, ErasureSliceRetrying, AccessRequested, AccessSliceAnswered,
                CorrectionSliceReported),
    "installer_sharing": (ErasureSliceReported, ErasureSliceRetrying, AccessSliceAnswered, CorrectionSliceReported),
    "payment": (ErasureSliceReported, ErasureSliceRetrying, AccessSliceAnswered, CorrectionSliceReported),
    "bookkeeping": (ErasureSliceReported, ErasureSliceRetrying, AccessSliceAnswered, CorrectionSliceReported),
    "newsletter": (ErasureSliceReported, ErasureSliceRetrying, AccessSliceAnswered, CorrectionSliceReported),
    "ledger": (ErasureCompleted, LegalHoldChanged, AccessRequested, PersonalDataCorrected),
    "upstream": (UserDeregistered, PurchaseCompleted, NewsletterConsentChanged),
}


class UnknownEventType(KeyError):
    """An envelope names an event type this code does not know."""

    def __init__(self, event_type: str) -> None:
        super().__init__(event_type)
        self.event_type = event_type

    def __str__(self) -> str:
        known = ", ".join(sorted(EVENT_TYPES))
        return f"unknown event type {self.event_type!r}; known types: {known}"


def data_model_for(event_type: str) -> type[EventData]:
    """The payload model of an event type; UnknownEventType if there is none."""
    try:
        return EVENT_TYPES[event_type]
    except KeyError:
        raise UnknownEventType(event_type) from None


def envelope_for(
    data: EventData,
    *,
    source: str,
    subject: str | None = None,
    id: UUID | None = None,
    time: datetime | None = None,
) -> CloudEvent:
    """A CloudEvents envelope around `data`: fresh id, now (UTC), the user as subject, the model's schema."""
    return CloudEvent(
        specversion="1.0",
        id=id if id is not None else uuid4(),
        source=source,
        type=data.event_type,
        time=time if time is not None else datetime.now(UTC),
        subject=subject if subject is not None else getattr(data, "user_id", None),
        dataschema=data.dataschema(),
        data=data.model_dump(mode="json"),
    )


def parse_data(envelope: CloudEvent) -> EventData:
    """The validated payload of an envelope; UnknownEventType or pydantic.ValidationError otherwise."""
    return data_model_for(envelope.type).model_validate(envelope.data)
