"""The CloudEvents 1.0 envelope every event travels in (docs/CONTRACT.md), and how types map to routing keys."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.validators import UserId, UtcDateTime, WireUUID

EVENT_TYPE_PREFIX = "se.loggamera."
EVENT_TYPE_PATTERN = r"^se\.loggamera\.[a-z_]+\.[a-z_]+\.v[0-9]+$"
SCHEMA_BASE_URI = "https://schemas.loggamera.se/erasure"
CLOUDEVENTS_CONTENT_TYPE = "application/cloudevents+json"


def routing_key_for(event_type: str) -> str:
    """The topic routing key of an event type: the type without its `se.loggamera.` prefix."""
    if not event_type.startswith(EVENT_TYPE_PREFIX) or len(event_type) == len(EVENT_TYPE_PREFIX):
        raise ValueError(f"event type {event_type!r} does not start with {EVENT_TYPE_PREFIX!r}")
    return event_type.removeprefix(EVENT_TYPE_PREFIX)


class CloudEvent(BaseModel):
    """A CloudEvents 1.0 envelope in JSON structured mode; unknown attributes are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True, title="CloudEvent")

    specversion: Literal["1.0"] = Field(description="CloudEvents specification version.", examples=["1.0"])
    id: WireUUID = Field(
        description="Unique id of this event; consumers de-duplicate on it.",
        examples=["0b4f6a52-8d0e-4c4b-9a57-2f1c3e8d9a10"],
    )
    source: str = Field(
        min_length=1,
        max_length=256,
        pattern=r"^\S+$",
        description="URI-reference naming the producer of the event.",
        examples=["/loggamera/account", "urn:loggamera:upstream:webshop"],
    )
    type: str = Field(
        pattern=EVENT_TYPE_PATTERN,
        description="Event type, se.loggamera.<noun>.<verb>.v<N>; the version changes on breaking change.",
        examples=["se.loggamera.user.deregistered.v1"],
    )
    time: UtcDateTime = Field(
        description="When the event happened (RFC 3339, timezone required, normalised to UTC).",
        examples=["2026-03-02T09:15:00Z"],
    )
    subject: UserId | None = Field(
        default=None,
        description="The opaque user id the event is about; equal to the data's user_id where it has one.",
        examples=["u-1001"],
    )
    datacontenttype: Literal["application/json"] = Field(
        default="application/json",
        description="Media type of `data`.",
        examples=["application/json"],
    )
    dataschema: str | None = Field(
        default=None,
        min_length=1,
        max_length=256,
        description="URI of the JSON Schema that `data` adheres to.",
        examples=[f"{SCHEMA_BASE_URI}/user.deregistered.v1.json"],
    )
    data: dict[str, Any] = Field(
        description="The event payload; its shape is given by `type` and `dataschema`.",
        examples=[{"user_id": "u-1001"}],
    )
