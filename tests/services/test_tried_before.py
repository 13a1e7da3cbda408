"""A call can take effect at a vendor while its answer is lost: the attempt rolls back here, the event waits in
a delay tier, and the user's erasure, handled meanwhile, finds no local record of the copy. When the event comes
back for the now erased user, each forwarding service erases what the earlier attempt may have left. A first
attempt for an erased user (nothing was tried before) still sends nothing (tests in each service's own file)."""

from __future__ import annotations

import pytest

from schemas.examples import example_consent_change, example_deregistration, example_purchase
from services.bookkeeping.main import build as build_bookkeeping
from services.installer_sharing.main import build as build_installer_sharing
from services.newsletter.main import build as build_newsletter
from services.sandbox import Sandbox
from services.vendors.mailchimp import subscriber_hash
from services.vendors.rules import visma_customer_number
from shared.testing import Pipeline, RunningService


@pytest.fixture
def sandbox(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> Sandbox:
    """The plugin's sandbox as every vendor: its Mailchimp credentials and its installers as the directory."""
    for name in ("NEWSLETTER_MAILCHIMP_BASE_URL", "NEWSLETTER_MAILCHIMP_API_KEY", "NEWSLETTER_MAILCHIMP_LIST_ID",
                 "INSTALLER_SHARING_SANDBOX_URL", "INSTALLER_SHARING_DIRECTORY"):
        monkeypatch.delenv(f"ERASURE_{name}", raising=False)
    return sandbox


def _erased(pipeline: Pipeline, running: RunningService, user_id: str) -> None:
    [erasure] = pipeline.publish(example_deregistration(user_id))
    running.wait_handled(erasure.event_id)


def test_newsletter_erases_a_member_an_earlier_attempt_subscribed(erasure_pipeline: Pipeline, sandbox: Sandbox) -> None:
    running = erasure_pipeline.start(build_newsletter())
    _erased(erasure_pipeline, running, "u-tried")
    purchase = example_purchase("u-tried", newsletter_consent=True)
    consent = example_consent_change("u-tried")
    # What the lost answers left: the member exists at Mailchimp, nothing here knows of it.
    sandbox.seed({"mailchimp": {"members": [purchase.customer.email, consent.email]}})
    for message in erasure_pipeline.publish(purchase, consent, attempts=1):
        running.wait_handled(message.event_id)

    members = sandbox.state()["mailchimp"]["members"]
    assert subscriber_hash(purchase.customer.email) not in members
    assert subscriber_hash(consent.email) not in members
    assert not [r for r in sandbox.requests("mailchimp") if r["method"] == "PUT"], "nothing subscribed again"


def test_newsletter_keeps_the_member_when_another_user_we_hold_subscribed_the_same_address(
    erasure_pipeline: Pipeline, sandbox: Sandbox
) -> None:
    running = erasure_pipeline.start(build_newsletter())
    other = example_purchase("u-household", newsletter_consent=True)
    [subscribed] = erasure_pipeline.publish(other)
    running.wait_handled(subscribed.event_id)
    _erased(erasure_pipeline, running, "u-tried-shared")
    retried = example_purchase("u-tried-shared", newsletter_consent=True,
                               customer={**other.customer.model_dump(), "name": "Another Person"})
    [message] = erasure_pipeline.publish(retried, attempts=2)
    running.wait_handled(message.event_id)
    assert subscriber_hash(other.customer.email) in sandbox.state()["mailchimp"]["members"]


def test_installer_is_asked_to_erase_a_contact_an_earlier_attempt_may_have_sent(
    erasure_pipeline: Pipeline, sandbox: Sandbox
) -> None:
    running = erasure_pipeline.start(build_installer_sharing())
    _erased(erasure_pipeline, running, "u-tried")
    purchase = example_purchase("u-tried", installer={"id": "inst-2", "name": "Installer inst-2"},
                                purchase_id="P-tried")
    [message] = erasure_pipeline.publish(purchase, attempts=1)
    running.wait_handled(message.event_id)

    notices = sandbox.state()["installers"]["erasure_notices"]
    assert [(n["installer_id"], n["user_ref"], n["purchase_ids"]) for n in notices] == [
        ("inst-2", "u-tried", ["P-tried"])]
    assert sandbox.state()["installers"]["contacts"] == [], "the contact itself is not sent"


def test_bookkeeping_erases_a_named_visma_customer_an_earlier_attempt_created(
    erasure_pipeline: Pipeline, sandbox: Sandbox
) -> None:
    running = erasure_pipeline.start(build_bookkeeping())
    _erased(erasure_pipeline, running, "bk-tried")
    purchase = example_purchase("bk-tried")
    sandbox.seed({"visma": {"customers": [{
        "CustomerNumber": visma_customer_number("bk-tried"), "Name": purchase.customer.name,
        "EmailAddress": purchase.customer.email,
        "InvoiceCity": "Umeå", "InvoicePostalCode": "90326", "InvoiceCountryCode": "SE"}]}})
    [message] = erasure_pipeline.publish(purchase, attempts=1)
    running.wait_handled(message.event_id)

    customers = list(sandbox.state()["visma"]["customers"].values())
    named = [c for c in customers if c.get("CustomerNumber") == visma_customer_number("bk-tried")]
    assert not any(c.get("IsActive") or c.get("EmailAddress") for c in named), named
    assert [c["Name"] for c in customers if c.get("CustomerNumber") != visma_customer_number("bk-tried")] == \
        ["Anonymised customer"]
