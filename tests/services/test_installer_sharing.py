"""installer_sharing on the in-memory transport and the sandbox: exactly the policy's contact fields reach the named
installer, once; on erasure every installer that got data is told (Art. 19) and nothing personal stays here."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, select

from schemas import ErasureSliceReported, PurchaseCompleted
from schemas.examples import example_customer, example_deregistration, example_purchase
from services.installer_sharing.directory import parse_directory, sandbox_directory
from services.installer_sharing.main import build
from services.installer_sharing.models import Notice, Share
from services.sandbox import DEFAULT_INSTALLERS, Sandbox
from shared.testing import wait_until
from shared.testing.memory import MemoryPipeline, MemoryService
from shared.testing.scan import personal_data_hits

CONTACT_FIELDS = {"name", "address", "phone", "email"}


@pytest.fixture
def sandbox(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> Sandbox:
    """The plugin's sandbox; with no directory configured, its installers are the directory."""
    monkeypatch.delenv("ERASURE_INSTALLER_SHARING_SANDBOX_URL", raising=False)
    monkeypatch.delenv("ERASURE_INSTALLER_SHARING_DIRECTORY", raising=False)
    return sandbox


def _purchase(user_id: str, installer_id: str = "inst-1", **overrides: Any) -> PurchaseCompleted:
    overrides.setdefault("purchase_id", f"P-{user_id}-{installer_id}")
    return example_purchase(user_id, installer={"id": installer_id, "name": f"Installer {installer_id}"},
                            **overrides)


def _rows(running: MemoryService, model: type) -> list[Any]:
    with running.engine.connect() as conn:
        return list(conn.execute(select(model.__table__)))


def _contact_effects(sandbox: Sandbox) -> list[dict[str, Any]]:
    return [e for e in sandbox.effects("installers") if e["effect"] == "contact_received"]


def test_only_name_address_phone_and_email_reach_the_installer(
    erasure_memory: MemoryPipeline, sandbox: Sandbox
) -> None:
    running = erasure_memory.start(build())
    customer = {**example_customer("u-fields"), "company_name": "Fält AB", "corporate_id": "559123-4561"}
    purchase = _purchase("u-fields", "inst-2", customer=customer)
    [sent] = erasure_memory.publish(purchase)
    running.wait_handled(sent.event_id)

    [request] = sandbox.requests("installers")
    assert request["path"] == "/inst-2/contacts"
    assert request["idempotency_key"] == sent.event_id
    assert set(request["body"]) == {"purchase_id", "contact"}
    assert request["body"]["purchase_id"] == purchase.purchase_id
    contact = request["body"]["contact"]
    assert set(contact) == CONTACT_FIELDS
    assert contact["name"] == purchase.customer.name
    assert contact["email"] == purchase.customer.email
    assert contact["phone"] == purchase.customer.phone
    assert contact["address"] == purchase.customer.address.model_dump(mode="json")
    body_text = json.dumps(request["body"])
    for withheld in ("Fält AB", "559123-4561", "LGM-GW-4G", "2490", "7XKQZ3LMN8P2A"):
        assert withheld not in body_text
    [share] = _rows(running, Share)
    assert (share.user_id, share.installer_id, share.purchase_id, share.event_id) == (
        "u-fields", "inst-2", purchase.purchase_id, sent.event_id)
    customer = purchase.customer
    assert personal_data_hits(running.engine, [customer.name, customer.email, customer.phone or ""]) == [], \
        "no local copy of the contact details"


def test_duplicate_purchase_event_forwards_once(erasure_memory: MemoryPipeline, sandbox: Sandbox) -> None:
    running = erasure_memory.start(build())
    message = erasure_memory.encode(_purchase("u-dup"))
    erasure_memory.publish(message)
    erasure_memory.publish(message)
    running.wait_handled(message.event_id)
    wait_until(lambda: erasure_memory.depth(f"{erasure_memory.namespace}.installer_sharing") == 0,
               what="both copies settled")
    assert len(_contact_effects(sandbox)) == 1
    assert len(_rows(running, Share)) == 1


def test_erasure_notifies_every_installer_that_received_data_and_keeps_nothing_personal(
    erasure_memory: MemoryPipeline, sandbox: Sandbox, db_backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = {
        installer_id: {"name": f"Installer {installer_id}", "endpoint_url": sandbox.installer_endpoint(installer_id),
                       "token": DEFAULT_INSTALLERS[installer_id]}
        for installer_id in ("inst-1", "inst-2", "inst-3")
    }
    monkeypatch.setenv("ERASURE_INSTALLER_SHARING_DIRECTORY", json.dumps(directory))
    running = erasure_memory.start(build())
    first, second = _purchase("u-erase", "inst-1"), _purchase("u-erase", "inst-2")
    third = _purchase("u-erase", "inst-1", purchase_id="P-u-erase-again")
    other = _purchase("u-keep", "inst-1")
    sent = erasure_memory.publish(first, second, third, other)
    for message in sent:
        running.wait_handled(message.event_id)
    assert len(sandbox.state()["installers"]["contacts"]) == 4

    deregistration = erasure_memory.encode(example_deregistration("u-erase"))
    erasure_memory.publish(deregistration)
    erasure_memory.publish(deregistration)
    running.wait_handled(deregistration.event_id)

    [report] = erasure_memory.wait_events(ErasureSliceReported)
    assert report.service == "installer_sharing"
    assert report.outcome == "erased"
    assert report.recipients_notified == ["installer:inst-1", "installer:inst-2"]
    notices = [e for e in sandbox.effects("installers") if e["effect"] == "erasure_notice_received"]
    assert sorted((n["installer_id"], tuple(n["purchase_ids"]), n["user_ref"]) for n in notices) == [
        ("inst-1", tuple(sorted([first.purchase_id, third.purchase_id])), "u-erase"),
        ("inst-2", (second.purchase_id,), "u-erase"),
    ]
    assert {n["idempotency_key"] for n in notices} == {
        f"{deregistration.event_id}:inst-1", f"{deregistration.event_id}:inst-2"}
    held = sandbox.state()["installers"]["contacts"]
    assert [c["purchase_id"] for c in held] == [other.purchase_id], "installers erased what they were sent"

    assert [s.user_id for s in _rows(running, Share)] == ["u-keep"]
    notice_rows = _rows(running, Notice)
    assert sorted(n.installer_id for n in notice_rows) == ["inst-1", "inst-2"]
    assert {n.request_id for n in notice_rows} == {str(example_deregistration("u-erase").request_id)}
    assert set(Notice.__table__.columns.keys()) == {"request_id", "installer_id", "notified_at"}
    customer = first.customer
    needles = [customer.name, customer.email, customer.phone or "", customer.address.street]
    assert personal_data_hits(running.engine, needles) == []
    with running.engine.connect() as conn:
        tombstones = running.service.metadata.tables["tombstones"]
        assert conn.execute(select(tombstones.c.user_id)).scalars().all() == ["u-erase"]


def test_late_purchase_after_erasure_forwards_nothing(erasure_memory: MemoryPipeline, sandbox: Sandbox) -> None:
    running = erasure_memory.start(build())
    [erasure] = erasure_memory.publish(example_deregistration("u-late"))
    running.wait_handled(erasure.event_id)
    [report] = erasure_memory.wait_events(ErasureSliceReported)
    assert (report.outcome, report.recipients_notified) == ("nothing_held", [])

    [late] = erasure_memory.publish(_purchase("u-late"))
    running.wait_handled(late.event_id)
    assert sandbox.requests("installers") == []
    assert _rows(running, Share) == []


def test_replayed_erasure_notifies_again_what_a_backup_restore_brought_back(
    erasure_memory: MemoryPipeline, sandbox: Sandbox
) -> None:
    running = erasure_memory.start(build())
    [purchase] = erasure_memory.publish(_purchase("u-replay", "inst-3"))
    running.wait_handled(purchase.event_id)
    with running.engine.connect() as conn:
        restored = [dict(row._mapping) for row in conn.execute(select(Share.__table__))]
    [erasure] = erasure_memory.publish(example_deregistration("u-replay"))
    running.wait_handled(erasure.event_id)
    with running.engine.begin() as conn:
        conn.execute(insert(Share.__table__), restored)

    replay = example_deregistration("u-replay", replay=True, request_id="2a7d9c41-5b3e-4f60-9e18-7c2b4d6a8f05",
                                     original_request_id=str(example_deregistration("u-replay").request_id))
    [again] = erasure_memory.publish(replay)
    running.wait_handled(again.event_id)
    reports = erasure_memory.wait_events(ErasureSliceReported, count=2)
    assert [(r.outcome, r.replay, r.recipients_notified) for r in reports] == [
        ("erased", False, ["installer:inst-3"]), ("erased", True, ["installer:inst-3"])]
    notices = [e for e in sandbox.effects("installers") if e["effect"] == "erasure_notice_received"]
    assert len(notices) == 2
    assert _rows(running, Share) == []


def test_installer_outage_delays_but_does_not_dead_letter(erasure_memory: MemoryPipeline, sandbox: Sandbox) -> None:
    running = erasure_memory.start(build())
    sandbox.set_outage("installers", "503", seconds=1.0)
    [sent] = erasure_memory.publish(_purchase("u-outage"))
    running.wait_handled(sent.event_id, timeout=15)
    assert any(r["status"] == 503 for r in sandbox.requests("installers"))
    assert len(_contact_effects(sandbox)) == 1
    assert erasure_memory.depth(f"{erasure_memory.namespace}.installer_sharing.dead") == 0


def test_unknown_installer_is_dead_lettered_with_the_reason(erasure_memory: MemoryPipeline, sandbox: Sandbox) -> None:
    running = erasure_memory.start(build())
    [sent] = erasure_memory.publish(_purchase("u-unknown", "inst-42"))
    dead_queue = f"{erasure_memory.namespace}.installer_sharing.dead"
    wait_until(lambda: erasure_memory.depth(dead_queue) == 1, what="dead letter")
    [dead] = erasure_memory.take(dead_queue)
    assert dead.headers["x-error-kind"] == "permanent"
    assert sent.event_id in dead.headers["x-error"]
    assert "'inst-42' is not in the installer directory" in dead.headers["x-error"]
    assert "ERASURE_INSTALLER_SHARING_DIRECTORY" in dead.headers["x-error"]
    assert sandbox.requests("installers") == []
    assert not running.handled(sent.event_id)


def test_installer_refusing_our_token_is_dead_lettered_with_the_reason(
    erasure_memory: MemoryPipeline, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = {"inst-1": {"name": "Installer 1", "endpoint_url": sandbox.installer_endpoint("inst-1"),
                            "token": "revoked-token"}}
    monkeypatch.setenv("ERASURE_INSTALLER_SHARING_DIRECTORY", json.dumps(directory))
    erasure_memory.start(build())
    erasure_memory.publish(_purchase("u-token"))
    dead_queue = f"{erasure_memory.namespace}.installer_sharing.dead"
    wait_until(lambda: erasure_memory.depth(dead_queue) == 1, what="dead letter")
    [dead] = erasure_memory.take(dead_queue)
    assert "answered 401" in dead.headers["x-error"]
    assert "revoked-token" not in dead.headers["x-error"]
    assert _contact_effects(sandbox) == []


def test_directory_is_read_from_a_yaml_file(tmp_path: Path) -> None:
    path = tmp_path / "installers.yaml"
    path.write_text("inst-9:\n  name: Nio El AB\n  endpoint_url: https://nio.example.com/loggamera\n"
                    "  token: secret-9\n")
    [(installer_id, entry)] = parse_directory(str(path)).items()
    assert installer_id == "inst-9"
    assert (entry.name, str(entry.endpoint_url)) == ("Nio El AB", "https://nio.example.com/loggamera")
    assert entry.token.get_secret_value() == "secret-9"


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        ('{"inst-1": {"name": "A", "endpoint_url": "https://a.example.com"}}', "inst-1.token: Field required"),
        ('{"inst-1": {"name": "A", "endpoint_url": "http://a.example.com", "token": "t"}}', "must be https://"),
        ("{not json", "not valid JSON"),
        ("/nonexistent/installers.yaml", "cannot read"),
    ],
)
def test_broken_directory_is_refused_naming_the_problem_but_not_the_token(source: str, problem: str) -> None:
    with pytest.raises(ValueError, match="ERASURE_INSTALLER_SHARING_DIRECTORY") as refused:
        parse_directory(source)
    assert problem in str(refused.value)
    assert '"t"' not in str(refused.value)


def test_default_directory_is_the_sandboxs_installers() -> None:
    directory = sandbox_directory("http://127.0.0.1:8480/")
    assert set(directory) == set(DEFAULT_INSTALLERS)
    assert str(directory["inst-1"].endpoint_url) == "http://127.0.0.1:8480/installers/inst-1"
    assert directory["inst-1"].token.get_secret_value() == DEFAULT_INSTALLERS["inst-1"]


def test_plain_http_to_another_host_only_where_a_development_setting_lists_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match=r"must be https://.*ERASURE_INSTALLER_SHARING_PLAIN_HTTP_HOSTS"):
        sandbox_directory("http://sandbox:8480")
    monkeypatch.setenv("ERASURE_INSTALLER_SHARING_PLAIN_HTTP_HOSTS", "Sandbox, other")
    monkeypatch.setenv("ERASURE_INSTALLER_SHARING_SANDBOX_URL", "http://sandbox:8480")
    service = build()  # the compose setup: the sandbox reached by its service name
    assert service.name == "installer_sharing"
    assert str(sandbox_directory("http://sandbox:8480", frozenset({"sandbox"}))["inst-1"].endpoint_url) \
        == "http://sandbox:8480/installers/inst-1"
    source = '{"inst-1": {"name": "A", "endpoint_url": "http://a.example.com", "token": "t"}}'
    with pytest.raises(ValueError, match="must be https://"):
        parse_directory(source, frozenset({"sandbox"}))  # listing one host allows no other
    assert str(parse_directory(source, frozenset({"a.example.com"}))["inst-1"].endpoint_url) == "http://a.example.com/"
