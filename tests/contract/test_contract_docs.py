"""The published contract agrees with itself and with the code: AsyncAPI, definitions.json, topology, reasons."""

from __future__ import annotations

import ast
import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from schemas import EVENT_MODELS
from schemas.catalog import SUBSCRIPTIONS
from schemas.documents import render_contract
from schemas.generate import CONTRACT_DOC
from shared.codec import CONTENT_TYPE, DEAD_LETTER_REASONS, Wire, decode
from shared.consumer import full_topology
from shared.settings import DEV_SIGNING_KEY, RuntimeSettings
from shared.topology import Names

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def asyncapi() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "schemas" / "asyncapi.yaml").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def definitions() -> dict[str, Any]:
    return json.loads((ROOT / "deploy" / "rabbitmq" / "definitions.json").read_text(encoding="utf-8"))


def _declared_bindings() -> dict[str, set[str]]:
    """Queue -> routing keys on the events exchange, as the services declare them (shared/topology.py)."""
    names = Names()
    topology = full_topology(RuntimeSettings())
    return {q.name: {key for exchange, key in q.bindings if exchange == names.events_exchange}
            for q in topology.queues if any(exchange == names.events_exchange for exchange, _ in q.bindings)}


def test_asyncapi_definitions_and_the_declared_topology_name_the_same_vhost_exchange_and_keys(
    asyncapi: dict[str, Any], definitions: dict[str, Any]
) -> None:
    names = Names()
    [vhost] = [v["name"] for v in definitions["vhosts"]]
    [events] = [e for e in definitions["exchanges"] if e["name"] == names.events_exchange]
    assert (events["vhost"], events["type"], events["durable"], events["auto_delete"]) == (vhost, "topic", True, False)
    assert asyncapi["servers"]["production"]["pathname"] == f"/{vhost}"
    for channel in asyncapi["channels"].values():
        exchange = channel["bindings"]["amqp"]["exchange"]
        assert exchange == {"name": events["name"], "type": events["type"], "durable": events["durable"],
                            "autoDelete": events["auto_delete"], "vhost": vhost}
    assert sorted(c["address"] for c in asyncapi["channels"].values()) == sorted(m.routing_key() for m in EVENT_MODELS)

    in_definitions: dict[str, set[str]] = {}
    for binding in definitions["bindings"]:
        if binding["source"] == names.events_exchange:
            in_definitions.setdefault(binding["destination"], set()).add(binding["routing_key"])
    in_asyncapi: dict[str, set[str]] = {}
    for operation in asyncapi["operations"].values():
        if operation["action"] == "receive":
            service = operation["title"].split(" ")[0]
            channel = asyncapi["channels"][operation["channel"]["$ref"].rsplit("/", 1)[1]]
            in_asyncapi.setdefault(names.queue(service), set()).add(channel["address"])
    assert in_asyncapi == in_definitions == _declared_bindings()
    assert set(in_asyncapi) == {names.queue(service) for service in SUBSCRIPTIONS}


def test_upstream_may_publish_to_the_events_exchange_the_asyncapi_names(definitions: dict[str, Any]) -> None:
    [upstream] = [p for p in definitions["permissions"] if p["user"] == "erasure-upstream"]
    assert upstream["write"] == "^erasure\\.events$"


def test_every_message_names_its_required_amqp_properties(asyncapi: dict[str, Any]) -> None:
    for model in EVENT_MODELS:
        message = asyncapi["components"]["messages"][model.__name__]
        assert message["contentType"] == CONTENT_TYPE
        assert message["bindings"]["amqp"]["messageType"] == model.event_type
        for phrase in ("message_id = the CloudEvent `id`", "delivery_mode 2", f"`{model.routing_key()}`",
                       "x-signature"):
            assert phrase in message["description"], (model.__name__, phrase)
    sends = [o for o in asyncapi["operations"].values() if o["action"] == "send"]
    assert sends and all(o["bindings"]["amqp"]["deliveryMode"] == 2 for o in sends)


def test_the_worked_signature_example_is_the_hmac_of_its_body_under_the_development_key(
    asyncapi: dict[str, Any]
) -> None:
    example = asyncapi["x-signing"]["example"]
    key_id, _, secret = DEV_SIGNING_KEY.partition(":")
    assert (example["key_id"], example["secret"]) == (key_id, secret)
    digest = hmac.new(secret.encode(), example["body"].encode(), hashlib.sha256).hexdigest()
    assert example["header"] == f"v1={key_id}:{digest}"
    body = example["body"].encode()
    event = json.loads(body)
    inbound = decode(body, content_type=CONTENT_TYPE, headers={"x-signature": example["header"]},
                     keyring={key_id: secret.encode()}, max_bytes=65536,
                     wire=Wire(routing_key=event["type"].removeprefix("se.loggamera."), message_id=event["id"]))
    assert inbound.event_id == event["id"]
    contract = CONTRACT_DOC.read_text(encoding="utf-8")
    assert example["body"] in contract and example["header"] in contract


def _reasons_used_in_code() -> set[str]:
    """Every literal kind the runtime dead-letters with: BadInput(kind, …), _bad(kind, …), Outcome.dead(kind, …)
    and the settle stage's dead(publisher, delivery, kind, …)."""
    kinds: set[str] = set()
    for path in [*(ROOT / "shared").rglob("*.py"), *(ROOT / "services").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            func = ast.unparse(node.func).rsplit(".", 1)[-1]
            args = [a.value if isinstance(a, ast.Constant) else None for a in node.args]
            if func in ("BadInput", "_bad") and args and isinstance(args[0], str):
                kinds.add(args[0])
            elif func == "dead":
                kinds.update(next(([a] for a in args if isinstance(a, str)), []))
    return kinds


def test_every_dead_letter_reason_the_code_uses_is_in_the_one_list(asyncapi: dict[str, Any]) -> None:
    used = _reasons_used_in_code()
    assert {"signature", "not_json", "routing_key_mismatch", "conflicting_duplicate", "retries_exhausted"} <= used
    assert used - set(DEAD_LETTER_REASONS) == set()
    assert "permanent" in DEAD_LETTER_REASONS and "delivery_limit" in DEAD_LETTER_REASONS
    assert asyncapi["x-dead-letter-reasons"] == DEAD_LETTER_REASONS


def test_contract_doc_is_current_and_names_every_reason() -> None:
    text = CONTRACT_DOC.read_text(encoding="utf-8")
    assert render_contract(text) == text, "run `python -m schemas.generate` and commit docs/CONTRACT.md"
    for kind in DEAD_LETTER_REASONS:
        assert f"| `{kind}` |" in text


def test_no_code_or_doc_cites_a_design_outside_the_repository() -> None:
    hits = []
    for path in ROOT.rglob("*"):
        if path.suffix not in (".py", ".md", ".yaml", ".json", ".txt") or any(
                part.startswith(".") or part in ("node_modules", "var") for part in path.relative_to(ROOT).parts):
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        if "DESIGN §" in text.replace('"DESIGN §"', ""):
            hits.append(str(path.relative_to(ROOT)))
    assert hits == []
