"""Event contracts: models, envelope, catalogue, and the generated JSON Schema and AsyncAPI files."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any
from uuid import UUID, uuid4

import pytest
import yaml
from pydantic import BaseModel, TypeAdapter, ValidationError

from schemas import (
    EVENT_MODELS,
    EVENT_TYPES,
    PUBLICATIONS,
    SLICE_SERVICES,
    SUBSCRIPTIONS,
    CloudEvent,
    ErasureCompleted,
    ErasureSliceReported,
    EventData,
    LegalHoldChanged,
    PurchaseCompleted,
    UnknownEventType,
    UserDeregistered,
    data_model_for,
    envelope_for,
    parse_data,
    routing_key_for,
)
from schemas.documents import SIGNATURE_PATTERN, asyncapi_document
from schemas.envelope import EVENT_TYPE_PATTERN
from schemas.examples import (
    example_completion,
    example_consent_change,
    example_deregistration,
    example_for,
    example_purchase,
    example_slice_report,
)
from schemas.generate import PACKAGE_DIR, check, expected_files, generate


def _models_under(model: type[BaseModel]) -> Iterator[type[BaseModel]]:
    """The model and every model nested in its fields."""
    yield model
    for field in model.model_fields.values():
        for candidate in _types_in(field.annotation):
            yield from _models_under(candidate)


def _types_in(annotation: Any) -> Iterator[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
    for argument in getattr(annotation, "__args__", ()):
        yield from _types_in(argument)


EVENT_TYPES_BY_NAME = {model.__name__: model for model in EVENT_TYPES.values()}
ALL_MODELS = sorted({m for event in EVENT_MODELS for m in _models_under(event)}, key=lambda m: m.__name__)


# --- the catalogue -----------------------------------------------------------------------------------


def test_catalogue_knows_every_event_by_type() -> None:
    assert set(EVENT_TYPES) == {
        "se.loggamera.user.deregistered.v1",
        "se.loggamera.purchase.completed.v1",
        "se.loggamera.newsletter.consent_changed.v1",
        "se.loggamera.erasure.slice_reported.v1",
        "se.loggamera.erasure.completed.v1",
        "se.loggamera.legal_hold.changed.v1",
        "se.loggamera.erasure.slice_retrying.v1",
        "se.loggamera.access.requested.v1",
        "se.loggamera.access.slice_answered.v1",
        "se.loggamera.personal_data.corrected.v1",
        "se.loggamera.correction.slice_reported.v1",
    }
    assert all(EVENT_TYPES[model.event_type] is model for model in EVENT_MODELS)


@pytest.mark.parametrize("model", EVENT_MODELS, ids=lambda m: m.__name__)
def test_every_event_type_is_a_valid_cloudevents_type(model: type[EventData]) -> None:
    assert re.fullmatch(EVENT_TYPE_PATTERN, model.event_type)


def test_routing_key_and_schema_uri_derive_from_the_type() -> None:
    assert UserDeregistered.routing_key() == "user.deregistered.v1"
    assert routing_key_for("se.loggamera.erasure.slice_reported.v1") == "erasure.slice_reported.v1"
    assert UserDeregistered.dataschema() == "https://schemas.loggamera.se/erasure/user.deregistered.v1.json"


@pytest.mark.parametrize("event_type", ["user.deregistered.v1", "se.loggamera.", "com.example.thing.v1"])
def test_routing_key_refuses_foreign_types(event_type: str) -> None:
    with pytest.raises(ValueError, match="does not start with"):
        routing_key_for(event_type)


def test_unknown_type_is_a_key_error_naming_the_known_types() -> None:
    assert data_model_for("se.loggamera.purchase.completed.v1") is PurchaseCompleted
    with pytest.raises(UnknownEventType) as info:
        data_model_for("se.loggamera.user.renamed.v1")
    assert isinstance(info.value, KeyError)
    assert info.value.event_type == "se.loggamera.user.renamed.v1"
    assert "se.loggamera.user.deregistered.v1" in str(info.value)


def test_every_slice_service_and_the_ledger_hear_of_every_deregistration() -> None:
    assert set(SLICE_SERVICES) == {"account", "installer_sharing", "payment", "bookkeeping", "newsletter"}
    assert set(SUBSCRIPTIONS) == {*SLICE_SERVICES, "ledger"}
    assert all(UserDeregistered in events for events in SUBSCRIPTIONS.values())
    assert ErasureSliceReported in SUBSCRIPTIONS["ledger"]
    assert ErasureCompleted in SUBSCRIPTIONS["account"]


def test_every_slice_hears_of_legal_holds_from_the_ledger() -> None:
    assert all(LegalHoldChanged in SUBSCRIPTIONS[service] for service in SLICE_SERVICES)
    assert LegalHoldChanged not in SUBSCRIPTIONS["ledger"]
    assert [p for p, events in PUBLICATIONS.items() if LegalHoldChanged in events] == ["ledger"]


def test_every_event_has_a_producer_and_a_consumer() -> None:
    consumed = {event for events in SUBSCRIPTIONS.values() for event in events}
    produced = {event for events in PUBLICATIONS.values() for event in events}
    assert consumed == produced == set(EVENT_MODELS)
    assert all(ErasureSliceReported in PUBLICATIONS[service] for service in SLICE_SERVICES)


# --- event models ------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", EVENT_MODELS, ids=lambda m: m.__name__)
def test_each_event_round_trips_through_json(model: type[EventData]) -> None:
    event = example_for(model)
    assert model.model_validate_json(event.model_dump_json()) == event
    assert model.model_validate(event.model_dump(mode="json")) == event


@pytest.mark.parametrize("model", ALL_MODELS, ids=lambda m: m.__name__)
def test_every_field_is_documented_with_examples_that_validate(model: type[BaseModel]) -> None:
    for name, field in model.model_fields.items():
        assert field.description, f"{model.__name__}.{name} has no description"
        assert field.examples, f"{model.__name__}.{name} has no examples"
        annotation = Annotated[field.annotation, *field.metadata] if field.metadata else field.annotation
        adapter = TypeAdapter(annotation)
        for example in field.examples:
            adapter.validate_python(example)


@pytest.mark.parametrize("model", EVENT_MODELS, ids=lambda m: m.__name__)
def test_events_refuse_unknown_fields_and_cannot_be_changed(model: type[EventData]) -> None:
    event = example_for(model)
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        model.model_validate({**event.model_dump(mode="json"), "email_hint": "x"})
    with pytest.raises(ValidationError, match="frozen"):
        event.user_id = "u-2"  # type: ignore[misc]


@pytest.mark.parametrize("model", EVENT_MODELS, ids=lambda m: m.__name__)
def test_no_event_accepts_an_email_address_as_user_id(model: type[EventData]) -> None:
    payload = {**example_for(model).model_dump(mode="json"), "user_id": "anna.lindqvist@kund.loggamera.se"}
    with pytest.raises(ValidationError, match="never an e-mail address"):
        model.model_validate(payload)


@pytest.mark.parametrize("model", EVENT_MODELS, ids=lambda m: m.__name__)
def test_event_times_must_carry_a_timezone(model: type[EventData]) -> None:
    payload = example_for(model).model_dump(mode="json")
    time_field = next(name for name, value in payload.items() if name.endswith("_at"))
    with pytest.raises(ValidationError, match="timezone"):
        model.model_validate({**payload, time_field: "2026-03-02T09:15:00"})
    moved = model.model_validate({**payload, time_field: "2026-03-02T10:15:00+01:00"})
    assert getattr(moved, time_field) == datetime(2026, 3, 2, 9, 15, tzinfo=UTC)
    assert json.loads(moved.model_dump_json())[time_field] == "2026-03-02T09:15:00Z"


def test_purchase_money_travels_as_exact_strings() -> None:
    purchase = example_purchase()
    wire = json.loads(purchase.model_dump_json())
    assert wire["total_excl_vat"] == "5175.00"
    assert wire["vat_amount"] == "1293.75"
    assert wire["total_incl_vat"] == "6468.75"
    assert wire["lines"][0]["unit_price"] == "2490.00"
    assert purchase.total_incl_vat == Decimal("6468.75")


def test_purchase_normalises_the_contact_details() -> None:
    purchase = example_purchase("u-7")
    assert purchase.customer.phone is not None
    assert purchase.customer.phone.startswith("+467017406")
    assert purchase.customer.address.postal_code[3] == " "
    assert purchase.customer.email.endswith("@kund.loggamera.se")


def test_a_sole_trader_purchase_carries_the_personnummer_normalised() -> None:
    customer = {**example_purchase().customer.model_dump(mode="json")}
    customer.update(company_name="Lindqvist El", corporate_id="811218-9876")
    assert example_purchase(customer=customer).customer.corporate_id == "198112189876"


@pytest.mark.parametrize(
    ("field", "value"),
    [("total_excl_vat", "5175.01"), ("vat_amount", "1293.74"), ("total_incl_vat", "6468.76")],
)
def test_purchase_totals_that_do_not_add_up_are_rejected(field: str, value: str) -> None:
    with pytest.raises(ValidationError, match=field):
        example_purchase(**{field: value})


def test_vat_is_rounded_half_up_once_over_all_lines() -> None:
    lines = [
        {"sku": "A", "description": "Sensor", "quantity": 1, "unit_price": "9.99", "vat_rate": "0.25"},
        {"sku": "B", "description": "Handbok", "quantity": 1, "unit_price": "0.10", "vat_rate": "0.06"},
    ]
    purchase = example_purchase(lines=lines)  # 2.4975 + 0.006 = 2.5035
    assert purchase.vat_amount == Decimal("2.50")
    with pytest.raises(ValidationError, match="vat_amount"):
        example_purchase(lines=lines, vat_amount="2.51", total_incl_vat="12.60")


def test_purchase_needs_at_least_one_line() -> None:
    with pytest.raises(ValidationError, match="lines"):
        PurchaseCompleted.model_validate({**example_purchase().model_dump(mode="json"), "lines": []})


def test_paypal_method_without_references_is_rejected() -> None:
    with pytest.raises(ValidationError, match="paypal references are required"):
        example_purchase(payment={"method": "paypal"})


def test_invoice_method_with_paypal_references_is_rejected() -> None:
    paypal = {"payer_id": "7XKQZ3LMN8P2A", "order_id": "5O190127TN364715T"}
    with pytest.raises(ValidationError, match="forbidden otherwise"):
        example_purchase(payment={"method": "invoice", "paypal": paypal})
    assert example_purchase(payment={"method": "invoice"}).payment.paypal is None


def test_replay_without_original_request_is_rejected() -> None:
    with pytest.raises(ValidationError, match="must name its original_request_id"):
        example_deregistration(replay=True)


def test_original_request_without_replay_is_rejected() -> None:
    with pytest.raises(ValidationError, match="only allowed on a replay"):
        example_deregistration(original_request_id=str(uuid4()))


def test_replay_naming_its_original_request_is_accepted() -> None:
    original = uuid4()
    replay = example_deregistration(replay=True, original_request_id=str(original), reason="admin")
    assert replay.original_request_id == original


@pytest.mark.parametrize("service", SLICE_SERVICES)
def test_each_service_has_a_valid_example_slice_report(service: str) -> None:
    report = example_slice_report(service)
    assert report.service == service
    assert (report.outcome == "retained") == bool(report.retained)


def test_retained_outcome_needs_retained_categories() -> None:
    with pytest.raises(ValidationError, match="requires retained categories"):
        example_slice_report("bookkeeping", retained=[])


def test_retained_categories_need_the_retained_outcome() -> None:
    with pytest.raises(ValidationError, match="requires retained categories"):
        example_slice_report("payment", outcome="erased")


def test_nothing_held_cannot_list_erased_categories() -> None:
    assert example_slice_report("account", outcome="nothing_held", erased=[]).erased == []
    with pytest.raises(ValidationError, match="nothing_held"):
        example_slice_report("account", outcome="nothing_held")


def test_slice_report_names_one_of_the_five_services() -> None:
    with pytest.raises(ValidationError, match="service"):
        ErasureSliceReported.model_validate({**example_slice_report().model_dump(mode="json"), "service": "ledger"})


@pytest.mark.parametrize("receipt_hash", ["ABC", "A" * 64, "g" * 64, "0" * 63])
def test_receipt_hash_must_be_lower_case_sha256_hex(receipt_hash: str) -> None:
    with pytest.raises(ValidationError, match="receipt_hash"):
        example_completion(receipt_hash=receipt_hash)


def test_completion_lists_what_was_kept_by_law() -> None:
    kept = {(item.held_by, item.retain_until.isoformat()) for item in example_completion().retained}
    assert kept == {("PayPal", "2033-12-31"), ("Visma eAccounting", "2033-12-31")}


def test_examples_are_deterministic_per_user_and_distinct_between_users() -> None:
    assert example_purchase("u-1") == example_purchase("u-1")
    assert example_purchase("u-1").customer.email != example_purchase("u-2").customer.email
    assert example_consent_change("u-1").email == example_purchase("u-1").customer.email


# --- the envelope ------------------------------------------------------------------------------------


def test_envelope_defaults_to_a_fresh_id_now_the_user_and_the_schema() -> None:
    before = datetime.now(UTC)
    envelope = envelope_for(example_deregistration("u-42"), source="/loggamera/account")
    assert isinstance(envelope.id, UUID)
    assert envelope.specversion == "1.0"
    assert envelope.type == "se.loggamera.user.deregistered.v1"
    assert before <= envelope.time <= datetime.now(UTC)
    assert envelope.subject == "u-42"
    assert envelope.dataschema == UserDeregistered.dataschema()
    assert envelope.datacontenttype == "application/json"


def test_envelope_takes_the_given_id_time_and_subject() -> None:
    event_id, at = uuid4(), datetime(2026, 1, 1, tzinfo=UTC)
    envelope = envelope_for(example_purchase(), source="/upstream", subject="other", id=event_id, time=at)
    assert (envelope.id, envelope.time, envelope.subject) == (event_id, at, "other")


@pytest.mark.parametrize("model", EVENT_MODELS, ids=lambda m: m.__name__)
def test_events_survive_the_wire_inside_their_envelope(model: type[EventData]) -> None:
    event = example_for(model)
    body = envelope_for(event, source="/loggamera/test").model_dump_json(exclude_none=True)
    received = CloudEvent.model_validate_json(body)
    assert parse_data(received) == event


def test_parse_data_refuses_unknown_types_and_invalid_payloads() -> None:
    envelope = envelope_for(example_deregistration(), source="/loggamera/account")
    with pytest.raises(UnknownEventType):
        parse_data(envelope.model_copy(update={"type": "se.loggamera.user.renamed.v1"}))
    with pytest.raises(ValidationError):
        parse_data(envelope.model_copy(update={"data": {"user_id": "u-1"}}))


def _wire_envelope(**changes: Any) -> dict[str, Any]:
    envelope = envelope_for(example_deregistration(), source="/loggamera/account")
    return {**envelope.model_dump(mode="json", exclude_none=True), **changes}


@pytest.mark.parametrize(
    "changes",
    [
        {"specversion": "0.3"},
        {"id": "not-a-uuid"},
        {"source": ""},
        {"source": "has space"},
        {"type": "user.deregistered.v1"},
        {"type": "se.loggamera.user.deregistered"},
        {"type": "se.loggamera.User.deregistered.v1"},
        {"time": "2026-03-02T09:15:00"},
        {"datacontenttype": "text/plain"},
        {"traceparent": "00-abc"},
        {"data": "not an object"},
    ],
    ids=lambda changes: next(iter(changes)),
)
def test_malformed_envelopes_are_rejected(changes: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        CloudEvent.model_validate(_wire_envelope(**changes))


def test_envelope_is_validated_without_its_optional_attributes() -> None:
    envelope = CloudEvent.model_validate(
        {k: v for k, v in _wire_envelope().items() if k not in {"subject", "dataschema", "datacontenttype"}}
    )
    assert envelope.subject is None
    assert envelope.datacontenttype == "application/json"


def test_envelope_time_is_normalised_to_utc() -> None:
    envelope = CloudEvent.model_validate(_wire_envelope(time="2026-03-02T10:15:00+01:00"))
    assert envelope.time == datetime(2026, 3, 2, 9, 15, tzinfo=UTC)
    assert envelope.time.utcoffset() is not None
    assert envelope.time.utcoffset().total_seconds() == 0


# --- generated files ---------------------------------------------------------------------------------


def test_generated_schemas_are_up_to_date() -> None:
    assert check(PACKAGE_DIR) == [], "run `python -m schemas.generate` and commit the result"


def test_generation_is_deterministic_and_check_sees_every_kind_of_staleness(tmp_path: Path) -> None:
    assert check(tmp_path) == sorted(expected_files())
    written = generate(tmp_path)
    assert {p.relative_to(tmp_path).as_posix() for p in written} == set(expected_files())
    assert check(tmp_path) == []
    assert all(p.read_text(encoding="utf-8").endswith("\n") for p in written)

    (tmp_path / "json" / "user.deregistered.v1.json").write_text("{}\n", encoding="utf-8")
    (tmp_path / "json" / "user.deregistered.v0.json").write_text("{}\n", encoding="utf-8")
    assert check(tmp_path) == ["json/user.deregistered.v0.json", "json/user.deregistered.v1.json"]
    generate(tmp_path)
    assert check(tmp_path) == []
    assert not (tmp_path / "json" / "user.deregistered.v0.json").exists()


@pytest.mark.parametrize("model", EVENT_MODELS, ids=lambda m: m.__name__)
def test_each_event_schema_file_is_published_at_its_dataschema_uri(model: type[EventData]) -> None:
    schema = json.loads((PACKAGE_DIR / "json" / f"{model.routing_key()}.json").read_text(encoding="utf-8"))
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == model.dataschema()
    assert schema["additionalProperties"] is False
    example = schema["examples"][0]
    assert set(schema["required"]) <= set(example) <= set(schema["properties"])
    assert model.model_validate(example) == example_for(model)


def test_cloudevent_schema_file_describes_the_envelope() -> None:
    schema = json.loads((PACKAGE_DIR / "json" / "cloudevent.json").read_text(encoding="utf-8"))
    assert set(schema["required"]) == {"specversion", "id", "source", "type", "time", "data"}
    assert schema["properties"]["type"]["pattern"] == r"^se\.loggamera\.[a-z_]+\.[a-z_]+\.v[0-9]+$"


@pytest.fixture(scope="module")
def asyncapi() -> dict[str, Any]:
    return yaml.safe_load((PACKAGE_DIR / "asyncapi.yaml").read_text(encoding="utf-8"))


def _resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = document
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            yield node["$ref"]
        for value in node.values():
            yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def test_asyncapi_file_is_the_document_built_from_the_models(asyncapi: dict[str, Any]) -> None:
    assert asyncapi == json.loads(json.dumps(asyncapi_document()))
    assert asyncapi["asyncapi"] == "3.0.0"
    assert asyncapi["defaultContentType"] == "application/cloudevents+json"
    assert asyncapi["info"]["title"] == "Loggamera erasure pipeline"
    server = asyncapi["servers"]["production"]
    assert (server["host"], server["protocol"]) == ("rabbitmq:5672", "amqp")


def test_asyncapi_has_one_channel_per_event_type_on_the_topic_exchange(asyncapi: dict[str, Any]) -> None:
    channels = asyncapi["channels"].values()
    assert sorted(channel["address"] for channel in channels) == sorted(m.routing_key() for m in EVENT_MODELS)
    for channel in channels:
        amqp = channel["bindings"]["amqp"]
        assert amqp["is"] == "routingKey"
        assert amqp["exchange"] == {
            "name": "erasure.events",
            "type": "topic",
            "durable": True,
            "autoDelete": False,
            "vhost": "erasure",
        }


def test_every_reference_in_the_asyncapi_document_resolves(asyncapi: dict[str, Any]) -> None:
    refs = list(_refs(asyncapi))
    assert refs
    for ref in refs:
        _resolve(asyncapi, ref)


def test_operations_mirror_the_subscription_and_publication_maps(asyncapi: dict[str, Any]) -> None:
    seen: dict[tuple[str, str], set[str]] = {}
    for operation_id, operation in asyncapi["operations"].items():
        service, action, _ = operation_id.split(".")
        assert operation["action"] == action
        channel = _resolve(asyncapi, operation["channel"]["$ref"])
        for message_ref in operation["messages"]:
            assert message_ref["$ref"].startswith(operation["channel"]["$ref"] + "/messages/")
            message = _resolve(asyncapi, _resolve(asyncapi, message_ref["$ref"])["$ref"])
            seen.setdefault((service, action), set()).add(message["bindings"]["amqp"]["messageType"])
        assert channel["address"]
    expected = {
        **{(s, "receive"): {m.event_type for m in events} for s, events in SUBSCRIPTIONS.items()},
        **{(s, "send"): {m.event_type for m in events} for s, events in PUBLICATIONS.items()},
    }
    assert seen == expected


def test_asyncapi_messages_carry_signature_headers_and_valid_example_envelopes(asyncapi: dict[str, Any]) -> None:
    for name, message in asyncapi["components"]["messages"].items():
        assert message["contentType"] == "application/cloudevents+json"
        headers = _resolve(asyncapi, message["headers"]["$ref"])
        assert headers["properties"]["x-signature"]["pattern"] == SIGNATURE_PATTERN
        assert re.fullmatch(SIGNATURE_PATTERN, "v1=k2026-a:" + hashlib.sha256(b"body").hexdigest())
        payload = _resolve(asyncapi, message["payload"]["$ref"])
        assert payload["allOf"][1]["properties"]["type"]["const"] == EVENT_TYPES_BY_NAME[name].event_type
        example = CloudEvent.model_validate(message["examples"][0]["payload"])
        assert parse_data(example) == example_for(EVENT_TYPES_BY_NAME[name])
