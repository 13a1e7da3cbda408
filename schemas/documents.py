"""JSON Schema and AsyncAPI 3.0 documents derived from the pydantic models, so docs cannot drift."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any
from uuid import NAMESPACE_URL, uuid5

from pydantic.json_schema import models_json_schema

from schemas.catalog import EVENT_MODELS, PUBLICATIONS, SUBSCRIPTIONS, envelope_for
from schemas.envelope import CLOUDEVENTS_CONTENT_TYPE, SCHEMA_BASE_URI, CloudEvent
from schemas.events import EventData
from schemas.examples import example_for

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
ASYNCAPI_VERSION = "3.0.0"
API_VERSION = "1.0.0"
AMQP_BINDING_VERSION = "0.3.0"
SIGNATURE_PATTERN = r"^v1=[A-Za-z0-9_-]+:[0-9a-f]{64}$"
# The topic exchange under the default namespace (DESIGN §3); test runs use other namespaces.
EVENTS_EXCHANGE = "erasure.events"
_COMPONENT_REF = "#/components/schemas/{model}"
_EXAMPLE_TIME = datetime(2026, 4, 14, 8, 0, tzinfo=UTC)


def cloudevent_schema() -> dict[str, Any]:
    """The JSON Schema of the CloudEvents envelope."""
    return {
        "$schema": JSON_SCHEMA_DIALECT,
        "$id": f"{SCHEMA_BASE_URI}/cloudevent.json",
        **CloudEvent.model_json_schema(),
    }


def event_schema(model: type[EventData]) -> dict[str, Any]:
    """The JSON Schema of one event's `data`, published at the model's dataschema URI."""
    return {
        "$schema": JSON_SCHEMA_DIALECT,
        "$id": model.dataschema(),
        **model.model_json_schema(),
        "x-cloudevents-type": model.event_type,
        "examples": [example_for(model).model_dump(mode="json")],
    }


def _title(model: type[EventData]) -> str:
    """'UserDeregistered' -> 'User deregistered'."""
    words = re.findall(r"[A-Z][a-z]*", model.__name__)
    return " ".join([words[0], *(word.lower() for word in words[1:])])


def _summary(model: type[EventData]) -> str:
    """The first line of the model's docstring."""
    return (model.__doc__ or "").strip().splitlines()[0]


def _producer(model: type[EventData]) -> str:
    """The first producer that sends `model`, used as the example's source."""
    return next(producer for producer, sent in PUBLICATIONS.items() if model in sent)


def example_envelope(model: type[EventData]) -> dict[str, Any]:
    """A complete example envelope for `model`, as it appears on the wire."""
    envelope = envelope_for(
        example_for(model),
        source=f"/loggamera/{_producer(model)}",
        id=uuid5(NAMESPACE_URL, model.dataschema()),
        time=_EXAMPLE_TIME,
    )
    return envelope.model_dump(mode="json", exclude_none=True)


def _components(models: tuple[type[EventData], ...]) -> dict[str, Any]:
    """components.schemas: every model once, plus one envelope schema per event and the signature header."""
    _, top = models_json_schema(
        [(CloudEvent, "validation"), *((model, "validation") for model in models)],
        ref_template=_COMPONENT_REF,
    )
    schemas: dict[str, Any] = dict(top["$defs"])
    for model in models:
        schemas[f"{model.__name__}Envelope"] = {
            "title": f"{model.__name__} envelope",
            "description": f"CloudEvents envelope carrying {model.__name__} as data.",
            "allOf": [
                {"$ref": _COMPONENT_REF.format(model="CloudEvent")},
                {
                    "type": "object",
                    "required": ["type", "data"],
                    "properties": {
                        "type": {"const": model.event_type},
                        "dataschema": {"const": model.dataschema()},
                        "data": {"$ref": _COMPONENT_REF.format(model=model.__name__)},
                    },
                },
            ],
        }
    schemas["SignatureHeaders"] = {
        "type": "object",
        "required": ["x-signature"],
        "properties": {
            "x-signature": {
                "type": "string",
                "pattern": SIGNATURE_PATTERN,
                "description": "v1=<key id>:<hex HMAC-SHA256 of the exact body bytes>.",
                "examples": ["v1=k2026a:" + "0" * 64],
            }
        },
    }
    return schemas


def _message(model: type[EventData]) -> dict[str, Any]:
    """components.messages entry of one event."""
    return {
        "name": model.__name__,
        "title": _title(model),
        "summary": _summary(model),
        "contentType": CLOUDEVENTS_CONTENT_TYPE,
        "payload": {"$ref": _COMPONENT_REF.format(model=f"{model.__name__}Envelope")},
        "headers": {"$ref": _COMPONENT_REF.format(model="SignatureHeaders")},
        "bindings": {"amqp": {"messageType": model.event_type, "bindingVersion": AMQP_BINDING_VERSION}},
        "examples": [{"name": "example", "payload": example_envelope(model)}],
    }


def _channel(model: type[EventData]) -> dict[str, Any]:
    """The channel of one event type: its routing key on the events topic exchange."""
    name = model.__name__
    return {
        "address": model.routing_key(),
        "title": _title(model),
        "description": f"{model.event_type} on the {EVENTS_EXCHANGE} topic exchange.",
        "messages": {name: {"$ref": f"#/components/messages/{name}"}},
        "bindings": {
            "amqp": {
                "is": "routingKey",
                "exchange": {
                    "name": EVENTS_EXCHANGE,
                    "type": "topic",
                    "durable": True,
                    "autoDelete": False,
                    "vhost": "/",
                },
                "bindingVersion": AMQP_BINDING_VERSION,
            }
        },
    }


def _operation(service: str, action: str, model: type[EventData]) -> dict[str, Any]:
    """What one service does with one event: receive from its queue, or publish persistently."""
    name = model.__name__
    if action == "receive":
        summary = f"{service} consumes {name}."
        amqp: dict[str, Any] = {"ack": True}
    else:
        summary = f"{service} publishes {name}."
        # deliveryMode lives on the operation binding in the AMQP bindings spec, not on the message.
        amqp = {"deliveryMode": 2, "mandatory": True, "timestamp": True}
    return {
        "action": action,
        "title": f"{service} {action}s {_title(model).lower()}",
        "summary": summary,
        "channel": {"$ref": f"#/channels/{name}"},
        "messages": [{"$ref": f"#/channels/{name}/messages/{name}"}],
        "bindings": {"amqp": {**amqp, "bindingVersion": AMQP_BINDING_VERSION}},
    }


def asyncapi_document() -> dict[str, Any]:
    """The AsyncAPI 3.0 description of every channel, message and service operation."""
    operations: dict[str, Any] = {}
    for action, table in (("receive", SUBSCRIPTIONS), ("send", PUBLICATIONS)):
        for service, models in table.items():
            for model in models:
                operations[f"{service}.{action}.{model.__name__}"] = _operation(service, action, model)
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "Loggamera erasure pipeline",
            "version": API_VERSION,
            "description": (
                "Events of the GDPR erasure pipeline. Every message is a CloudEvents 1.0 envelope in JSON "
                "structured mode, signed with an HMAC-SHA256 over the exact body bytes in the x-signature "
                "header, published persistently on the erasure.events topic exchange with the event type "
                "minus 'se.loggamera.' as routing key."
            ),
        },
        "defaultContentType": CLOUDEVENTS_CONTENT_TYPE,
        "servers": {
            "production": {
                "host": "rabbitmq:5672",
                "protocol": "amqp",
                "protocolVersion": "0-9-1",
                "description": "The RabbitMQ broker of the pipeline.",
            }
        },
        "channels": {model.__name__: _channel(model) for model in EVENT_MODELS},
        "operations": operations,
        "components": {
            "schemas": _components(EVENT_MODELS),
            "messages": {model.__name__: _message(model) for model in EVENT_MODELS},
        },
    }
