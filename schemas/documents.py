"""JSON Schema and AsyncAPI 3.0 documents derived from the pydantic models, so docs cannot drift."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any
from uuid import NAMESPACE_URL, uuid5

from pydantic.json_schema import models_json_schema

from schemas.catalog import EVENT_MODELS, PUBLICATIONS, SEALED_FIELDS, SUBSCRIPTIONS, envelope_for
from schemas.envelope import CLOUDEVENTS_CONTENT_TYPE, SCHEMA_BASE_URI, CloudEvent
from schemas.events import EventData, UserDeregistered
from schemas.examples import example_for
from shared.codec import DEAD_LETTER_REASONS, DEFAULT_MAX_CLOCK_SKEW_S, encode_envelope
from shared.settings import DEV_SIGNING_KEY
from shared.signing import HEADER as SIGNATURE_HEADER
from shared.topology import Names

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
ASYNCAPI_VERSION = "3.0.0"
API_VERSION = "1.0.0"
AMQP_BINDING_VERSION = "0.3.0"
SIGNATURE_PATTERN = r"^v1=[A-Za-z0-9_-]+:[0-9a-f]{64}$"
# Names under the default namespace, which is also the production virtual host (deploy/rabbitmq/definitions.json);
# every exchange and queue name starts with the namespace, so another namespace renames them all alike.
NAMESPACE = Names().namespace
EVENTS_EXCHANGE = Names().events_exchange
VHOST = NAMESPACE
# Rules the consumers enforce that JSON Schema cannot express: the document lists them, the property-based
# schema test (tests/contract/test_schema_parity.py) excludes exactly these from its comparison.
RUNTIME_ONLY_RULES: dict[str, str] = {
    "purchase_totals": "PurchaseCompleted: total_excl_vat is the sum of quantity x unit_price over the lines, "
                       "vat_amount the sum of quantity x unit_price x vat_rate rounded half up to 2 decimals once, "
                       "total_incl_vat their sum.",
    "email": "E-mail addresses must be valid by RFC 5322/6531 as the email-validator library checks them (no DNS "
             "lookup); the schema's `format: email` is a weaker check.",
    "phone": "Phone numbers: Swedish numbers have 7-9 digits after the area code (mobiles 9), international ones "
             "7-15 digits after the country code; the schema gives the allowed characters only.",
    "corporate_id": "Organisation numbers and personnummer carry a Luhn check digit, and a personnummer a real "
                    "date of birth; the schema gives their shape only.",
    "calendar": "Dates and date-times name days that exist (no 30 February).",
    "clock_skew": f"No instant (the event time, requested_at, purchased_at, changed_at, reported_at, completed_at) "
                  f"lies more than the allowed clock skew in the future (ERASURE_MAX_CLOCK_SKEW, "
                  f"{DEFAULT_MAX_CLOCK_SKEW_S:.0f} s by default).",
    "subject": "The CloudEvent subject, when present, equals the data's user_id.",
    "amqp_properties": "The routing key is the type without 'se.loggamera.'; the AMQP message_id equals the "
                       "CloudEvent id; the AMQP type property, when set, equals the CloudEvent type.",
}
_COMPONENT_REF = "#/components/schemas/{model}"
_EXAMPLE_TIME = datetime(2026, 4, 14, 8, 0, tzinfo=UTC)


def cloudevent_schema() -> dict[str, Any]:
    """The JSON Schema of the CloudEvents envelope."""
    return {
        "$schema": JSON_SCHEMA_DIALECT,
        "$id": f"{SCHEMA_BASE_URI}/cloudevent.json",
        **CloudEvent.model_json_schema(),
    }


# What a sealed field's value is instead of its clear form (docs/CONTRACT.md, "Sealed personal data"). Written as
# an annotation on the field: a validator checks the clear form; the consumers open the sealed one first.
SEALED_FORM: dict[str, Any] = {
    "type": "string",
    "pattern": r"^[A-Za-z0-9_-]+\.\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$",
    "description": "The field's JSON value sealed: a compact JWE (alg dir, enc A256GCM) under the data key of the "
                   "event's user, named by its kid. Our own publishers always send it so; the clear form is "
                   "accepted for compatibility.",
}


def event_schema(model: type[EventData]) -> dict[str, Any]:
    """The JSON Schema of one event's `data`, published at the model's dataschema URI; a field that may travel
    sealed says so (`x-sealed-form`)."""
    schema = model.model_json_schema()
    sealed = SEALED_FIELDS.get(model.event_type)
    if sealed is not None:
        schema["properties"][sealed] = {**schema["properties"][sealed], "x-sealed-form": SEALED_FORM}
    return {
        "$schema": JSON_SCHEMA_DIALECT,
        "$id": model.dataschema(),
        **schema,
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
        "required": [SIGNATURE_HEADER],
        "properties": {
            SIGNATURE_HEADER: {
                "type": "string",
                "pattern": SIGNATURE_PATTERN,
                "description": "v1=<key id>:<lower-case hex HMAC-SHA256, keyed with the secret's UTF-8 bytes, of "
                               "the exact body bytes>. See x-signing for a worked example.",
                "examples": [signing_example()["header"]],
            }
        },
    }
    return schemas


def signing_example() -> dict[str, str]:
    """A worked signature: the development key, an example body, and the header the codec computes for it."""
    key_id, _, secret = DEV_SIGNING_KEY.partition(":")
    envelope = CloudEvent.model_validate(example_envelope(UserDeregistered))
    out = encode_envelope(envelope, keyring={key_id: secret.encode()}, key_id=key_id)
    return {"key_id": key_id, "secret": secret, "body": out.body.decode(), "header": out.signature}


def _amqp_properties(model: type[EventData]) -> str:
    """What every message of `model` must carry besides its body."""
    return (
        f"AMQP properties: content_type `{CLOUDEVENTS_CONTENT_TYPE}`; message_id = the CloudEvent `id` "
        f"(required); delivery_mode 2 (persistent); type `{model.event_type}` (optional; when set it must equal "
        f"the CloudEvent type); header `{SIGNATURE_HEADER}` (required). Publish with routing key "
        f"`{model.routing_key()}` to the `{EVENTS_EXCHANGE}` exchange; anything else is dead-lettered."
    )


def _message(model: type[EventData]) -> dict[str, Any]:
    """components.messages entry of one event."""
    return {
        "name": model.__name__,
        "title": _title(model),
        "summary": _summary(model),
        "description": _amqp_properties(model),
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
                    "vhost": VHOST,
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
                "structured mode (UTF-8), signed with an HMAC-SHA256 over the exact body bytes in the x-signature "
                f"header, published persistently (delivery_mode 2) on the {EVENTS_EXCHANGE} topic exchange of the "
                f"`{VHOST}` virtual host, with the event type minus 'se.loggamera.' as routing key, the CloudEvent "
                "id as AMQP message_id and content_type application/cloudevents+json. Exchange and queue names "
                f"start with a namespace (`{NAMESPACE}` unless ERASURE_NAMESPACE says otherwise; tests use their "
                f"own): `<namespace>.events`. Wire values are parsed strictly: no type is coerced, instants are "
                "RFC 3339 strings, unknown fields are refused. A message that breaks any rule is dead-lettered "
                "with one of x-dead-letter-reasons in its x-error-kind header and never acted on. "
                "x-runtime-only-rules lists what the consumers check beyond the JSON Schemas. The repository's "
                "docs/CONTRACT.md explains all of it."
            ),
        },
        "defaultContentType": CLOUDEVENTS_CONTENT_TYPE,
        "servers": {
            "production": {
                "host": "rabbitmq:5672",
                "pathname": f"/{VHOST}",
                "protocol": "amqp",
                "protocolVersion": "0-9-1",
                "description": f"The RabbitMQ broker of the pipeline: virtual host `{VHOST}`, one account per "
                               "producer (deploy/rabbitmq/definitions.json); upstream publishers may write to "
                               f"{EVENTS_EXCHANGE} only.",
            },
            "development": {
                "host": "127.0.0.1:5672",
                "pathname": "/",
                "protocol": "amqp",
                "protocolVersion": "0-9-1",
                "description": "`make run` and the tests: the default virtual host and the guest account; the same "
                               "exchange and queue names.",
            },
        },
        "channels": {model.__name__: _channel(model) for model in EVENT_MODELS},
        "operations": operations,
        "components": {
            "schemas": _components(EVENT_MODELS),
            "messages": {model.__name__: _message(model) for model in EVENT_MODELS},
        },
        "x-signing": {
            "header": SIGNATURE_HEADER,
            "format": "v1=<key id>:<hex digest>",
            "algorithm": "HMAC-SHA256 over the exact body bytes as published, keyed with the UTF-8 bytes of the "
                         "secret; lower-case hex. Consumers accept every key in ERASURE_SIGNING_KEYS (two during a "
                         "rotation).",
            "example": signing_example(),
        },
        "x-dead-letter-reasons": dict(DEAD_LETTER_REASONS),
        "x-runtime-only-rules": dict(RUNTIME_ONLY_RULES),
    }


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def contract_sections() -> dict[str, str]:
    """The parts of docs/CONTRACT.md computed from the code, by the name of their marker."""
    events = _table(
        ("CloudEvent type", "routing key", "published by", "consumed by"),
        [(f"`{m.event_type}`", f"`{m.routing_key()}`",
          ", ".join(p for p, sent in PUBLICATIONS.items() if m in sent),
          ", ".join(c for c, heard in SUBSCRIPTIONS.items() if m in heard)) for m in EVENT_MODELS],
    )
    reasons = _table(("x-error-kind", "why the message was dead-lettered"),
                     [(f"`{kind}`", text) for kind, text in DEAD_LETTER_REASONS.items()])
    rules = "\n".join(f"- **{name}**: {text}" for name, text in RUNTIME_ONLY_RULES.items())
    example = signing_example()
    signing = "\n".join([
        f"- key id `{example['key_id']}`, secret `{example['secret']}` (the development key; never in production)",
        "- body (these exact bytes, UTF-8, no trailing newline):",
        "",
        "```json",
        example["body"],
        "```",
        "",
        f"- header: `{SIGNATURE_HEADER}: {example['header']}`",
    ])
    return {"events": events, "reasons": reasons, "runtime-rules": rules, "signing-example": signing}


def render_contract(text: str) -> str:
    """docs/CONTRACT.md with every generated section replaced by what the code says now."""
    for name, body in contract_sections().items():
        begin, end = f"<!-- generated: {name} -->", f"<!-- end: {name} -->"
        start, stop = text.find(begin), text.find(end)
        if start < 0 or stop < start:
            raise ValueError(f"docs/CONTRACT.md lacks the markers {begin} ... {end}")
        text = text[: start + len(begin)] + "\n" + body + "\n" + text[stop:]
    return text
