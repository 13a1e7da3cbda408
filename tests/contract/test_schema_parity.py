"""The generated JSON Schemas are exactly as strict as the runtime: generated bodies pass both, mutants both or neither.

Bodies come from each `schemas/json/<routing key>.json` (hypothesis-jsonschema); the runtime is the consumers'
own `shared.codec.decode`. What JSON Schema cannot express is listed in the AsyncAPI document's
`x-runtime-only-rules` (`RUNTIME_ONLY_RULES`) and excluded here by name, nowhere else:

- `email`, `phone`, `corporate_id`: generated values are replaced by valid ones and never mutated;
- `purchase_totals`: the totals are recomputed from the lines after generation and after each mutation;
- `subject`, `amqp_properties`: the envelope carries no subject and the AMQP properties are not given;
- `clock_skew`: decoded without the clock bound; `calendar`: generated instants name real days.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import uuid4

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema

from schemas import EVENT_MODELS, CloudEvent, EventData
from schemas.documents import RUNTIME_ONLY_RULES
from schemas.events import PurchaseLine, purchase_totals
from shared.codec import CONTENT_TYPE, decode
from shared.errors import BadInput
from shared.signing import HEADER, sign

pytestmark = pytest.mark.slow  # about two minutes: hypothesis-jsonschema needs about a second per purchase body
SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas" / "json"
KEYRING = {"k": b"parity"}
# Excluded fields (by the rule that excludes them): their generated values are replaced, never mutated.
EXCLUDED_FIELDS = {"email": "email", "phone": "phone", "corporate_id": "corporate_id",
                   "total_excl_vat": "purchase_totals", "vat_amount": "purchase_totals",
                   "total_incl_vat": "purchase_totals"}
MONEY_LIMIT = Decimal("1000000000000")  # the money pattern's twelve digits
VALID = {"email": "anna.lindqvist@loggamera.se", "phone": "+46701740605", "corporate_id": "559123-4561"}


def _schema(model: type[EventData]) -> dict[str, Any]:
    return json.loads((SCHEMA_DIR / f"{model.routing_key()}.json").read_text(encoding="utf-8"))


def _ecma_patterns(validator_class: Any) -> Any:
    """JSON Schema patterns are ECMA-262 regexes, where `$` ends the input; Python's `$` also matches before a
    final newline. Checked with `\\Z` instead, as the runtime's (Rust) regex engine reads them."""

    def pattern(validator: Any, value: str, instance: Any, schema: Any) -> Any:
        if isinstance(instance, str) and not re.search(re.sub(r"(?<!\\)\$", r"\\Z", value), instance):
            yield jsonschema.ValidationError(f"{instance!r} does not match {value!r}")

    return jsonschema.validators.extend(validator_class, {"pattern": pattern})


SchemaValidator = _ecma_patterns(jsonschema.Draft202012Validator)
# Examples per model (generated, mutated): hypothesis-jsonschema needs about a second per purchase body.
BUDGET = {"PurchaseCompleted": (10, 25)}
DEFAULT_BUDGET = (40, 80)


def _instants() -> st.SearchStrategy[str]:
    """RFC 3339 date-times as the schema's pattern allows them, on days that exist."""
    offsets = st.one_of(st.just("Z"), st.builds(lambda sign_, h, m: f"{sign_}{h:02d}:{m:02d}",
                                                st.sampled_from("+-"), st.integers(0, 23), st.integers(0, 59)))
    fraction = st.one_of(st.just(""), st.integers(0, 999_999).map(lambda us: f".{us:06d}"))
    return st.builds(lambda d, f, o: d.strftime("%Y-%m-%dT%H:%M:%S") + f + o,
                     st.datetimes(min_value=datetime(2000, 1, 2), max_value=datetime(2999, 12, 30)),
                     fraction, offsets)


FORMATS = {
    "email": st.from_regex(r"\A[a-z]{1,12}(\.[a-z]{1,8})?@[a-z]{2,12}\.(se|com|org)\Z"),
    "date-time": _instants(),
}


def _walk(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[tuple[Any, ...], Any]]:
    """Every (path, value) in a JSON value, containers included."""
    found = [(path, node)]
    if isinstance(node, dict):
        for key, value in node.items():
            found += _walk(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _walk(value, (*path, index))
    return found


def _apply_exclusions(data: Any) -> Any:
    """Replace values only the runtime can judge (see the module docstring) by valid ones."""
    for path, value in _walk(data):
        if path and path[-1] in VALID and isinstance(value, str):
            _set(data, path, VALID[path[-1]])
    lines = data.get("lines") if isinstance(data, dict) else None
    if isinstance(lines, list):
        try:
            parsed = [PurchaseLine.model_validate(line, strict=True) for line in lines]
        except (ValueError, ArithmeticError):  # malformed lines: the schema and the runtime both refuse them
            return data
        excl, vat, incl = purchase_totals(parsed)
        if incl >= MONEY_LIMIT:  # lines no total can express: made smaller, as the totals rule is runtime-only
            for line in lines:
                line.update(quantity=min(line["quantity"], 1000),
                            unit_price=f"{Decimal(line['unit_price']) % 1_000_000:.2f}")
            return _apply_exclusions(data)
        data.update(total_excl_vat=str(excl), vat_amount=str(vat), total_incl_vat=str(incl))
    return data


def _set(data: Any, path: tuple[Any, ...], value: Any) -> None:
    target = data
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value


def _runtime_accepts(model: type[EventData], data: Any) -> bool:
    """The consumers' decode of a signed envelope around `data`, without the clock bound."""
    envelope = {"specversion": "1.0", "id": str(uuid4()), "source": "urn:loggamera:parity", "type": model.event_type,
                "time": "2026-03-02T09:15:00Z", "data": data}
    body = json.dumps(envelope).encode()
    try:
        decode(body, content_type=CONTENT_TYPE, headers={HEADER: sign(body, "k", KEYRING)}, keyring=KEYRING,
               max_bytes=1 << 22, max_clock_skew=None)
    except BadInput as exc:
        kind = exc.kind
    else:
        return True
    assert kind == "schema", kind
    return False


_json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-3, 10**12), st.floats(allow_nan=False),
                          st.text(max_size=70), st.sampled_from(["true", "1", "1.0", "0.25", "2490", "2490.00",
                                                                 "2026-03-02T09:15:00Z", "2026-03-02", "SEK\n", "",
                                                                 " ", "paypal", "retained", "u-1001"]))
_mutations = st.tuples(st.sampled_from(["replace", "delete", "add", "wrap"]), st.integers(0, 10**6), _json_scalars)


def _mutate(data: dict[str, Any], mutation: tuple[str, int, Any]) -> dict[str, Any] | None:
    """Apply one mutation to a copy of `data` at a path chosen by index, away from excluded fields."""
    action, index, value = mutation
    data = json.loads(json.dumps(data))
    paths = [(p, v) for p, v in _walk(data) if p and not any(part in EXCLUDED_FIELDS for part in p)]
    if action == "add":
        containers = [(p, v) for p, v in _walk(data) if isinstance(v, dict)]
        path, target = containers[index % len(containers)]
        target[f"x_unknown_{index % 3}"] = value
        return _apply_exclusions(data)
    if not paths:
        return None
    path, old = paths[index % len(paths)]
    if action == "delete":
        parent = data
        for part in path[:-1]:
            parent = parent[part]
        del parent[path[-1]]
    elif action == "wrap":
        _set(data, path, [old])
    else:
        _set(data, path, value)
    return _apply_exclusions(data)


@pytest.mark.filterwarnings("ignore:Overriding standard format")  # the email and date-time exclusions
@pytest.mark.parametrize("model", EVENT_MODELS, ids=lambda m: m.__name__)
def test_every_body_the_schema_generates_is_accepted_by_the_runtime(model: type[EventData]) -> None:
    schema = _schema(model)
    SchemaValidator.check_schema(schema)

    @settings(max_examples=BUDGET.get(model.__name__, DEFAULT_BUDGET)[0], deadline=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large])
    @given(from_schema(schema, custom_formats=FORMATS))
    def check(data: Any) -> None:
        data = _apply_exclusions(data)
        assert SchemaValidator(schema, format_checker=jsonschema.FormatChecker()).is_valid(data)
        assert _runtime_accepts(model, data), data

    check()


@pytest.mark.filterwarnings("ignore:Overriding standard format")
@pytest.mark.parametrize("model", EVENT_MODELS, ids=lambda m: m.__name__)
def test_mutated_bodies_are_refused_by_both_or_by_neither(model: type[EventData]) -> None:
    schema = _schema(model)
    validator = SchemaValidator(schema, format_checker=jsonschema.FormatChecker())
    seen = {True: 0, False: 0}

    @settings(max_examples=BUDGET.get(model.__name__, DEFAULT_BUDGET)[1], deadline=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large])
    @given(from_schema(schema, custom_formats=FORMATS), st.lists(_mutations, min_size=1, max_size=3))
    def check(data: Any, mutations: list[tuple[str, int, Any]]) -> None:
        mutated = _apply_exclusions(data)
        for mutation in mutations:
            mutated = _mutate(mutated, mutation) or mutated
        by_schema = validator.is_valid(mutated)
        assert _runtime_accepts(model, mutated) == by_schema, (by_schema, mutated)
        seen[by_schema] += 1

    check()
    assert seen[False] > 0, "mutations produced invalid bodies"


def test_every_exclusion_names_a_documented_runtime_only_rule() -> None:
    assert set(EXCLUDED_FIELDS.values()) | {"subject", "amqp_properties", "clock_skew", "calendar"} == \
        set(RUNTIME_ONLY_RULES)


def test_the_schema_and_the_runtime_agree_on_the_cross_field_rules() -> None:
    """The rules the issue found missing from the schema: replay and its original, both directions."""
    from schemas.examples import example_deregistration

    base = example_deregistration("u-1").model_dump(mode="json")
    schema = _schema(EVENT_MODELS[0])
    validator = SchemaValidator(schema, format_checker=jsonschema.FormatChecker())
    cases = {
        "replay without original": {**base, "replay": True},
        "original without replay": {**base, "original_request_id": str(uuid4())},
        "replay as a string": {**base, "replay": "yes"},
    }
    for name, data in cases.items():
        assert not validator.is_valid(data), name
        assert not _runtime_accepts(EVENT_MODELS[0], data), name
    good = {**base, "replay": True, "original_request_id": str(uuid4())}
    assert validator.is_valid(good) and _runtime_accepts(EVENT_MODELS[0], good)


@pytest.mark.filterwarnings("ignore:Overriding standard format")
def test_the_envelope_schema_is_as_strict_as_the_envelope_model() -> None:
    """cloudevent.json against the model decode validates every envelope with (strict, before the data)."""
    schema = json.loads((SCHEMA_DIR / "cloudevent.json").read_text(encoding="utf-8"))
    validator = SchemaValidator(schema, format_checker=jsonschema.FormatChecker())

    def model_accepts(raw: Any) -> bool:
        try:
            CloudEvent.model_validate(raw, strict=True)
        except ValueError:
            return False
        return True

    @settings(max_examples=40, deadline=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large])
    @given(from_schema(schema, custom_formats=FORMATS), st.lists(_mutations, max_size=2))
    def check(raw: Any, mutations: list[tuple[str, int, Any]]) -> None:
        assert model_accepts(raw), raw
        for mutation in mutations:
            raw = _mutate(raw, mutation) or raw
        assert model_accepts(raw) == validator.is_valid(raw), raw

    check()
