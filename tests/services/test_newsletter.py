"""newsletter on the in-memory transport and the sandbox: only the e-mail of a consenting buyer goes to
Mailchimp, and withdrawal or deregistration erases the member there permanently and the copy here."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import select

from schemas import ErasureSliceReported
from schemas.examples import example_consent_change, example_deregistration, example_purchase
from services.newsletter.main import build
from services.newsletter.models import Subscriber
from services.sandbox import Sandbox, SandboxConfig
from services.vendors.mailchimp import subscriber_hash
from shared.testing import wait_until
from shared.testing.memory import MemoryPipeline, MemoryService
from shared.testing.scan import personal_data_hits

SANDBOX = SandboxConfig()


@pytest.fixture
def sandbox(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> Sandbox:
    """The plugin's sandbox, with the service on the sandbox's own Mailchimp credentials."""
    monkeypatch.delenv("ERASURE_NEWSLETTER_MAILCHIMP_BASE_URL", raising=False)
    monkeypatch.delenv("ERASURE_NEWSLETTER_MAILCHIMP_API_KEY", raising=False)
    monkeypatch.delenv("ERASURE_NEWSLETTER_MAILCHIMP_LIST_ID", raising=False)
    return sandbox


def _subscribers(running: MemoryService) -> list[tuple[str, str, str]]:
    with running.engine.connect() as conn:
        rows = conn.execute(select(Subscriber.user_id, Subscriber.email, Subscriber.list_id))
        return sorted(tuple(row) for row in rows)


def _tombstoned(running: MemoryService) -> list[str]:
    tombstones = running.service.metadata.tables["tombstones"]
    with running.engine.connect() as conn:
        return list(conn.execute(select(tombstones.c.user_id)).scalars())


def _effects(sandbox: Sandbox, kind: str) -> list[dict[str, Any]]:
    return [e for e in sandbox.effects("mailchimp") if e["effect"] == kind]


def _dead_letter(pipeline: MemoryPipeline) -> Any:
    dead_queue = f"{pipeline.namespace}.newsletter.dead"
    wait_until(lambda: pipeline.depth(dead_queue) == 1, what="dead letter")
    [dead] = pipeline.take(dead_queue)
    return dead


def test_purchase_with_consent_sends_only_the_email_to_mailchimp(
    erasure_memory: MemoryPipeline, sandbox: Sandbox
) -> None:
    running = erasure_memory.start(build())
    purchase = example_purchase("u-sub", newsletter_consent=True)
    [sent] = erasure_memory.publish(purchase)
    running.wait_handled(sent.event_id)

    [request] = sandbox.requests("mailchimp")
    email = purchase.customer.email
    assert (request["method"], request["path"]) == ("PUT", f"/3.0/lists/{SANDBOX.mailchimp_list_id}/members/"
                                                           f"{subscriber_hash(email)}")
    assert request["body"] == {"email_address": email, "status_if_new": "subscribed"}
    member = sandbox.state()["mailchimp"]["members"][subscriber_hash(email)]
    assert (member["status"], member["merge_fields"]) == ("subscribed", {})
    assert _subscribers(running) == [("u-sub", email, SANDBOX.mailchimp_list_id)]


def test_purchase_without_consent_sends_nothing(erasure_memory: MemoryPipeline, sandbox: Sandbox) -> None:
    running = erasure_memory.start(build())
    [sent] = erasure_memory.publish(example_purchase("u-nocons", newsletter_consent=False))
    running.wait_handled(sent.event_id)
    assert sandbox.requests("mailchimp") == []
    assert _subscribers(running) == []


def test_duplicate_consent_event_subscribes_once(erasure_memory: MemoryPipeline, sandbox: Sandbox) -> None:
    running = erasure_memory.start(build())
    message = erasure_memory.encode(example_consent_change("u-dup"))
    erasure_memory.publish(message)
    erasure_memory.publish(message)
    running.wait_handled(message.event_id)
    wait_until(lambda: erasure_memory.depth(f"{erasure_memory.namespace}.newsletter") == 0,
               what="both copies settled")
    assert len(sandbox.requests("mailchimp")) == 1
    assert len(_effects(sandbox, "member_subscribed")) == 1
    assert len(_subscribers(running)) == 1


def test_erasure_deletes_every_member_permanently_and_keeps_nothing_personal(
    erasure_memory: MemoryPipeline, sandbox: Sandbox, db_backend: str
) -> None:
    running = erasure_memory.start(build())
    purchase = example_purchase("u-erase", newsletter_consent=True)
    second_address = example_consent_change("u-erase", email="anna.work+u-erase@kund.loggamera.se")
    untouched = example_consent_change("u-keep")
    for message in erasure_memory.publish(purchase, second_address, untouched):
        running.wait_handled(message.event_id)
    assert len(sandbox.state()["mailchimp"]["members"]) == 3

    deregistration = erasure_memory.encode(example_deregistration("u-erase"))
    erasure_memory.publish(deregistration)
    erasure_memory.publish(deregistration)
    running.wait_handled(deregistration.event_id)

    [report] = erasure_memory.wait_events(ErasureSliceReported)
    assert (report.service, report.outcome, report.recipients_notified) == ("newsletter", "erased", ["Mailchimp"])
    erased = {subscriber_hash(purchase.customer.email), subscriber_hash(second_address.email)}
    mailchimp = sandbox.state()["mailchimp"]
    assert set(mailchimp["members"]) == {subscriber_hash(untouched.email)}
    assert set(mailchimp["forgotten"]) == erased
    assert {e["subscriber_hash"] for e in _effects(sandbox, "member_deleted_permanently")} == erased
    assert len(_effects(sandbox, "member_deleted_permanently")) == 2, "the duplicate deregistration did nothing"
    assert [row[0] for row in _subscribers(running)] == ["u-keep"]
    assert _tombstoned(running) == ["u-erase"]
    customer = purchase.customer
    needles = [customer.email, second_address.email, customer.name, customer.phone or ""]
    assert personal_data_hits(running.engine, needles) == []


def test_forgotten_email_counts_as_already_erased(erasure_memory: MemoryPipeline, sandbox: Sandbox) -> None:
    running = erasure_memory.start(build())
    consent = example_consent_change("u-forgot")
    [sent] = erasure_memory.publish(consent)
    running.wait_handled(sent.event_id)
    # Someone erased the member in Mailchimp's own interface before the deregistration arrived.
    member_url = (f"{sandbox.http_url}/mailchimp/3.0/lists/{SANDBOX.mailchimp_list_id}/members/"
                  f"{subscriber_hash(consent.email)}/actions/delete-permanent")
    assert httpx.post(member_url, auth=("any", SANDBOX.mailchimp_api_key)).status_code == 204

    [erasure] = erasure_memory.publish(example_deregistration("u-forgot"))
    running.wait_handled(erasure.event_id)
    [report] = erasure_memory.wait_events(ErasureSliceReported)
    assert (report.outcome, report.recipients_notified) == ("erased", ["Mailchimp"])
    assert _subscribers(running) == []
    assert erasure_memory.depth(f"{erasure_memory.namespace}.newsletter.dead") == 0


def test_erasure_of_a_never_subscribed_user_reports_nothing_held_and_tombstones(
    erasure_memory: MemoryPipeline, sandbox: Sandbox
) -> None:
    running = erasure_memory.start(build())
    [erasure] = erasure_memory.publish(example_deregistration("u-never"))
    running.wait_handled(erasure.event_id)
    [report] = erasure_memory.wait_events(ErasureSliceReported)
    assert (report.outcome, report.erased, report.recipients_notified) == ("nothing_held", [], [])
    assert _tombstoned(running) == ["u-never"]
    assert sandbox.requests("mailchimp") == []


def test_late_purchase_or_consent_after_erasure_subscribes_nothing(
    erasure_memory: MemoryPipeline, sandbox: Sandbox
) -> None:
    running = erasure_memory.start(build())
    [erasure] = erasure_memory.publish(example_deregistration("u-late"))
    running.wait_handled(erasure.event_id)
    late = erasure_memory.publish(example_purchase("u-late", newsletter_consent=True),
                                    example_consent_change("u-late"))
    for message in late:
        running.wait_handled(message.event_id)
    assert sandbox.requests("mailchimp") == []
    assert _subscribers(running) == []


def test_withdrawn_consent_deletes_the_member_permanently_without_tombstone(
    erasure_memory: MemoryPipeline, sandbox: Sandbox
) -> None:
    running = erasure_memory.start(build())
    consent = example_consent_change("u-withdraw")
    [given] = erasure_memory.publish(consent)
    running.wait_handled(given.event_id)
    [withdrawn] = erasure_memory.publish(example_consent_change("u-withdraw", consented=False))
    running.wait_handled(withdrawn.event_id)

    mailchimp = sandbox.state()["mailchimp"]
    assert mailchimp["members"] == {}
    assert mailchimp["forgotten"] == [subscriber_hash(consent.email)]
    assert _subscribers(running) == []
    assert _tombstoned(running) == [], "withdrawing consent is not an account erasure"


def test_consent_given_again_after_withdrawal_is_dead_lettered_naming_the_signup_form(
    erasure_memory: MemoryPipeline, sandbox: Sandbox
) -> None:
    running = erasure_memory.start(build())
    for consented in (True, False):
        [sent] = erasure_memory.publish(example_consent_change("u-again", consented=consented))
        running.wait_handled(sent.event_id)
    [again] = erasure_memory.publish(example_consent_change("u-again"))
    dead = _dead_letter(erasure_memory)
    assert dead.properties["message_id"] == again.event_id
    assert "Forgotten Email Not Subscribed" in dead.headers["x-error"]
    assert "signup form" in dead.headers["x-error"]
    assert _subscribers(running) == [], "nothing stored for a subscription that did not happen"


def test_consent_for_an_address_mailchimp_would_refuse_as_fake_is_dead_lettered_before_calling(
    erasure_memory: MemoryPipeline, sandbox: Sandbox
) -> None:
    running = erasure_memory.start(build())
    [sent] = erasure_memory.publish(example_consent_change("u-fake", email="anna.lindqvist@example.com"))
    dead = _dead_letter(erasure_memory)
    assert dead.properties["message_id"] == sent.event_id
    assert dead.headers["x-error-kind"] == "permanent"
    assert "refused before sending" in dead.headers["x-error"] and "looks fake" in dead.headers["x-error"]
    assert "anna" not in dead.headers["x-error"]
    assert sandbox.requests("mailchimp") == []
    assert _subscribers(running) == []


def test_mailchimp_outage_delays_but_does_not_dead_letter(erasure_memory: MemoryPipeline, sandbox: Sandbox) -> None:
    running = erasure_memory.start(build())
    sandbox.set_outage("mailchimp", "503", seconds=1.0)
    [sent] = erasure_memory.publish(example_consent_change("u-outage"))
    running.wait_handled(sent.event_id, timeout=15)
    assert any(r["status"] == 503 for r in sandbox.requests("mailchimp"))
    assert len(_effects(sandbox, "member_subscribed")) == 1
    assert erasure_memory.depth(f"{erasure_memory.namespace}.newsletter.dead") == 0


def test_wrong_api_key_is_dead_lettered_with_the_reason(
    erasure_memory: MemoryPipeline, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ERASURE_NEWSLETTER_MAILCHIMP_API_KEY", "wrong-key-us1")
    running = erasure_memory.start(build())
    [sent] = erasure_memory.publish(example_consent_change("u-badkey"))
    dead = _dead_letter(erasure_memory)
    assert dead.headers["x-error-kind"] == "permanent"
    assert sent.event_id in dead.headers["x-error"]
    assert "answered 401: API Key Invalid" in dead.headers["x-error"]
    assert "wrong-key-us1" not in dead.headers["x-error"]
    assert _subscribers(running) == []
