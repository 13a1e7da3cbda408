"""Each vendor client against the sandbox: happy paths, already-done as success, auth, outages, retries."""

from __future__ import annotations

import concurrent.futures
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from services.sandbox import DEFAULT_INSTALLERS, Sandbox, SandboxConfig
from services.vendors.installer import InstallerClient
from services.vendors.mailchimp import MailchimpClient, base_url_for_key, subscriber_hash
from services.vendors.paypal import PayPalClient
from services.vendors.smtp import send_mail
from services.vendors.visma import VismaClient
from shared.errors import PermanentError, TransientError
from shared.testing.ports import free_port

ANNA = {
    "Name": "Anna Andersson",
    "EmailAddress": "anna@kund.loggamera.se",
    "Telephone": "070-123 45 67",
    "MobilePhone": "+46701234567",
    "Note": "ring efter 17",
    "InvoiceAddress1": "Storgatan 1",
    "InvoiceCity": "Lund",
    "InvoicePostalCode": "22100",
    "InvoiceCountryCode": "SE",
    "DeliveryAddress1": "Storgatan 1",
    "ContactPersonName": "Anna Andersson",
    "IsPrivatePerson": True,
    "IsActive": True,
    "TermsOfPaymentId": SandboxConfig().visma_terms_of_payment_id,
}
ROWS = [{"IsTextRow": False, "ArticleId": SandboxConfig().visma_article_id, "Text": "Loggamera monitoring, 12 months",
         "UnitPrice": 1200.0, "Quantity": 1}]
CUST_1, CUST_2 = "lgcustomer0001", "lgcustomer0002"



@pytest.fixture
def sandbox(sandbox_server: Sandbox) -> Sandbox:
    sandbox_server.reset()
    return sandbox_server


@pytest.fixture
def mailchimp(sandbox: Sandbox) -> Iterator[MailchimpClient]:
    with MailchimpClient("sandbox-us1", "loggamera", base_url=f"{sandbox.http_url}/mailchimp/3.0") as client:
        yield client


@pytest.fixture
def paypal(sandbox: Sandbox) -> Iterator[PayPalClient]:
    with PayPalClient("sandbox-client", "sandbox-secret", f"{sandbox.http_url}/paypal") as client:
        yield client


def _visma(sandbox: Sandbox, **overrides: Any) -> VismaClient:
    settings: dict[str, Any] = {
        "access_token": "sandbox-visma-token",
        "refresh_token": "sandbox-visma-refresh",
        "client_id": "sandbox-visma-client",
        "client_secret": "sandbox-visma-secret",
        "token_url": f"{sandbox.http_url}/visma/connect/token",
        **overrides,
    }
    return VismaClient(f"{sandbox.http_url}/visma", **settings)


@pytest.fixture
def visma(sandbox: Sandbox) -> Iterator[VismaClient]:
    with _visma(sandbox) as client:
        yield client


@pytest.fixture
def installer(sandbox: Sandbox) -> Iterator[InstallerClient]:
    with InstallerClient(sandbox.installer_endpoint("inst-1"), token=DEFAULT_INSTALLERS["inst-1"]) as client:
        yield client


@pytest.fixture
def closed_port() -> int:
    return free_port()


# Mailchimp


def test_mailchimp_base_url_comes_from_the_key_data_centre() -> None:
    assert base_url_for_key("0123abcd-us10") == "https://us10.api.mailchimp.com/3.0"
    with pytest.raises(ValueError, match="data centre"):
        base_url_for_key("no-suffix-")


def test_subscriber_hash_is_md5_of_the_lower_cased_stripped_address() -> None:
    assert subscriber_hash(" Anna@Example.COM ") == "6b56db1f84a3997b902509d3fbf0a306"


def test_mailchimp_upsert_subscribes_the_member_once(sandbox: Sandbox, mailchimp: MailchimpClient) -> None:
    mailchimp.upsert_member("Anna@Kund.Loggamera.se", merge_fields={"FNAME": "Anna"}, idempotency_key="evt-1")
    mailchimp.upsert_member("Anna@Kund.Loggamera.se", merge_fields={"FNAME": "Anna"}, idempotency_key="evt-1")
    member = sandbox.state()["mailchimp"]["members"][subscriber_hash("anna@kund.loggamera.se")]
    assert member["status"] == "subscribed"
    assert member["merge_fields"] == {"FNAME": "Anna"}
    assert [e["effect"] for e in sandbox.effects("mailchimp")] == ["member_subscribed"]
    assert sandbox.requests("mailchimp")[0]["idempotency_key"] == "evt-1"


def test_mailchimp_second_permanent_delete_reports_already_erased(sandbox: Sandbox, mailchimp: MailchimpClient) -> None:
    mailchimp.upsert_member("anna@kund.loggamera.se")
    assert mailchimp.delete_member_permanently("anna@kund.loggamera.se") is True
    assert mailchimp.delete_member_permanently("anna@kund.loggamera.se") is False
    assert mailchimp.delete_member_permanently("never@kund.loggamera.se") is False
    assert sandbox.state()["mailchimp"]["members"] == {}
    assert len([e for e in sandbox.effects("mailchimp") if e["effect"] == "member_deleted_permanently"]) == 1


def test_mailchimp_refuses_to_re_add_a_permanently_deleted_address(mailchimp: MailchimpClient) -> None:
    mailchimp.upsert_member("anna@kund.loggamera.se")
    mailchimp.delete_member_permanently("anna@kund.loggamera.se")
    with pytest.raises(PermanentError, match="Forgotten Email Not Subscribed") as caught:
        mailchimp.upsert_member("anna@kund.loggamera.se")
    assert "must not be re-added" in str(caught.value)
    assert "anna@kund.loggamera.se" not in str(caught.value)


def test_mailchimp_wrong_api_key_is_a_permanent_error(sandbox: Sandbox) -> None:
    with (
        MailchimpClient("wrong-us1", "loggamera", base_url=f"{sandbox.http_url}/mailchimp/3.0") as client,
        pytest.raises(PermanentError, match="401"),
    ):
        client.upsert_member("anna@kund.loggamera.se")


def test_mailchimp_wrong_list_id_is_not_taken_for_already_erased(sandbox: Sandbox) -> None:
    with (
        MailchimpClient("sandbox-us1", "no-such-list", base_url=f"{sandbox.http_url}/mailchimp/3.0") as client,
        pytest.raises(PermanentError, match="no-such-list"),
    ):
        client.delete_member_permanently("anna@kund.loggamera.se")


def test_mailchimp_503_outage_is_retried_until_it_recovers(sandbox: Sandbox, mailchimp: MailchimpClient) -> None:
    sandbox.set_outage("mailchimp", "503", seconds=0.3)
    mailchimp.upsert_member("anna@kund.loggamera.se")
    statuses = [r["status"] for r in sandbox.requests("mailchimp")]
    assert statuses[0] == 503
    assert statuses[-1] == 200


def test_mailchimp_429_retry_after_is_honoured(sandbox: Sandbox, mailchimp: MailchimpClient) -> None:
    sandbox.set_outage("mailchimp", "429", seconds=0.2, retry_after=1)
    started = time.monotonic()
    mailchimp.upsert_member("anna@kund.loggamera.se")
    assert time.monotonic() - started >= 1.0
    assert [r["status"] for r in sandbox.requests("mailchimp")] == [429, 200]


def test_retry_after_longer_than_max_wait_hands_over_to_the_delay_queue_at_once(
    sandbox: Sandbox, mailchimp: MailchimpClient
) -> None:
    sandbox.set_outage("mailchimp", "429", retry_after=30)
    with pytest.raises(TransientError) as caught:
        mailchimp.upsert_member("anna@kund.loggamera.se")
    assert caught.value.retry_after == 30
    assert len(sandbox.requests("mailchimp")) == 1


def test_mailchimp_refused_connections_become_a_transient_error_after_retries(
    sandbox: Sandbox, mailchimp: MailchimpClient
) -> None:
    sandbox.set_outage("mailchimp", "refuse")
    with pytest.raises(TransientError):
        mailchimp.delete_member_permanently("anna@kund.loggamera.se")
    assert len(sandbox.requests("mailchimp")) == 3


# PayPal


def test_paypal_lists_every_token_across_pages(sandbox: Sandbox, paypal: PayPalClient) -> None:
    created = sandbox.seed({"paypal": {"vault": {CUST_1: 7, CUST_2: 1}}})["paypal"]["vault"]
    assert sorted(paypal.list_payment_tokens(CUST_1)) == sorted(created[CUST_1])
    assert paypal.list_payment_tokens("nobody-at-all") == []


def test_paypal_token_deleted_then_404_counts_as_already_gone(sandbox: Sandbox, paypal: PayPalClient) -> None:
    (token_id,) = sandbox.seed({"paypal": {"vault": {CUST_1: ["tok-1"]}}})["paypal"]["vault"][CUST_1]
    assert paypal.delete_payment_token(token_id) is True
    assert paypal.delete_payment_token(token_id) is False
    assert sandbox.state()["paypal"]["payment_tokens"] == {}
    assert len(sandbox.effects("paypal")) == 1


def test_paypal_access_token_is_cached_and_renewed_once_on_401(sandbox: Sandbox, paypal: PayPalClient) -> None:
    paypal.list_payment_tokens(CUST_1)
    paypal.list_payment_tokens(CUST_1)
    sandbox.expire_tokens("paypal")
    paypal.list_payment_tokens(CUST_1)
    token_requests = [r for r in sandbox.requests("paypal") if r["path"] == "/v1/oauth2/token"]
    assert len(token_requests) == 2


def test_paypal_wrong_client_secret_is_a_permanent_error(sandbox: Sandbox) -> None:
    with (
        PayPalClient("sandbox-client", "wrong", f"{sandbox.http_url}/paypal") as client,
        pytest.raises(PermanentError, match="invalid_client"),
    ):
        client.delete_payment_token("tok-1")


def test_paypal_503_outage_is_retried_until_it_recovers(sandbox: Sandbox, paypal: PayPalClient) -> None:
    sandbox.seed({"paypal": {"vault": {CUST_1: ["tok-1"]}}})
    sandbox.set_outage("paypal", "503", count=1)
    assert paypal.delete_payment_token("tok-1") is True


# Visma


def test_visma_upsert_creates_then_replaces_the_same_customer(sandbox: Sandbox, visma: VismaClient) -> None:
    customer_id = visma.upsert_customer("1001", ANNA)
    assert visma.upsert_customer("1001", {**ANNA, "Name": "Anna Berg"}) == customer_id
    customers = sandbox.state()["visma"]["customers"]
    assert list(customers) == [customer_id]
    assert customers[customer_id]["Name"] == "Anna Berg"
    assert visma.get_customer(customer_id)["CustomerNumber"] == "1001"


def test_visma_upserts_of_one_number_at_once_leave_one_customer(sandbox: Sandbox, visma: VismaClient) -> None:
    """As a batch's outside steps booking sales on the one anonymous customer do: all look for the number before
    any creates it, Visma refuses every POST but the first, and each then replaces the one created."""
    visma.upsert_customer("1000", ANNA)  # the token and the connection, before the race
    sandbox.set_round_trip("visma", 0.2)  # every look is answered after all eight have asked
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        ids = set(pool.map(lambda n: visma.upsert_customer("1001", {**ANNA, "Name": f"Anna {n}"}), range(8)))
    sandbox.set_round_trip("visma", 0)
    assert len(ids) == 1
    assert sum(c["CustomerNumber"] == "1001" for c in sandbox.state()["visma"]["customers"].values()) == 1
    posts = [r for r in sandbox.requests("visma") if r["method"] == "POST" and r["path"] == "/v2/customers"]
    assert len(posts) > 2, "the race happened: several creates were tried"


def test_visma_invoice_is_created_once_per_reference(sandbox: Sandbox, visma: VismaClient) -> None:
    customer_id = visma.upsert_customer("1001", ANNA)
    first = visma.create_invoice(customer_id, ROWS, your_reference="evt-42")
    with _visma(sandbox) as restarted:
        assert restarted.create_invoice(customer_id, ROWS, your_reference="evt-42") == first
    assert list(sandbox.state()["visma"]["invoices"]) == [first]
    assert len([e for e in sandbox.effects("visma") if e["effect"] == "invoice_created"]) == 1


def test_visma_customer_without_invoices_is_deleted_and_gone_stays_gone(sandbox: Sandbox, visma: VismaClient) -> None:
    customer_id = visma.upsert_customer("1001", ANNA)
    assert visma.delete_customer(customer_id) is True
    assert visma.delete_customer(customer_id) is True
    assert sandbox.state()["visma"]["customers"] == {}


def test_visma_customer_with_invoices_is_kept_deactivated_without_personal_data(
    sandbox: Sandbox, visma: VismaClient
) -> None:
    customer_id = visma.upsert_customer("1001", ANNA)
    invoice_id = visma.create_invoice(customer_id, ROWS, your_reference="evt-1")
    assert visma.delete_customer(customer_id) is False
    keep = {"InvoiceCity": "Lund", "InvoicePostalCode": "22100", "InvoiceCountryCode": "SE"}
    visma.deactivate_and_anonymise(customer_id, keep=keep)
    state = sandbox.state()["visma"]
    customer = state["customers"][customer_id]
    dumped = json.dumps(customer)
    for personal in ("Anna", "Andersson", "anna@kund.loggamera.se", "070-123", "+4670", "Storgatan", "ring efter"):
        assert personal not in dumped
    assert customer["IsActive"] is False
    assert customer["Name"] == f"Anonymised customer {customer_id[:8]}"
    assert {k: customer[k] for k in keep} == keep
    assert customer["CustomerNumber"] == "1001"
    assert invoice_id in state["invoices"]


def test_visma_anonymise_refuses_to_keep_personal_fields(visma: VismaClient) -> None:
    with pytest.raises(ValueError, match="EmailAddress"):
        visma.deactivate_and_anonymise("any", keep={"EmailAddress": "anna@kund.loggamera.se"})


def test_visma_anonymising_a_missing_customer_does_nothing(sandbox: Sandbox, visma: VismaClient) -> None:
    visma.deactivate_and_anonymise("00000000-0000-0000-0000-000000000000", keep={})
    assert sandbox.effects("visma") == []


def test_visma_expired_access_token_is_refreshed_once_and_the_new_tokens_handed_out(sandbox: Sandbox) -> None:
    stored: list[tuple[str, str]] = []
    with _visma(sandbox, on_tokens=lambda access, refresh: stored.append((access, refresh))) as client:
        client.upsert_customer("1001", ANNA)
        sandbox.expire_tokens("visma")
        client.upsert_customer("1001", ANNA)
        client.upsert_customer("1001", ANNA)
    renewals = [r for r in sandbox.requests("visma") if r["path"] == "/connect/token"]
    assert len(renewals) == 1
    assert len(stored) == 1
    assert stored[0][1] != SandboxConfig().visma_refresh_token  # rotated: the old one works no more


def test_visma_without_an_access_token_starts_by_refreshing(sandbox: Sandbox) -> None:
    with _visma(sandbox, access_token=None) as client:
        customer_id = client.upsert_customer("1001", ANNA)
    assert customer_id in sandbox.state()["visma"]["customers"]


def test_visma_without_a_refresh_token_a_401_is_permanent(sandbox: Sandbox) -> None:
    sandbox.expire_tokens("visma")
    with (
        _visma(sandbox, refresh_token=None, token_url=None) as client,
        pytest.raises(PermanentError, match="4005"),
    ):
        client.get_customer("x")


def test_visma_refused_connections_become_a_transient_error(sandbox: Sandbox, visma: VismaClient) -> None:
    sandbox.set_outage("visma", "refuse")
    with pytest.raises(TransientError):
        visma.upsert_customer("1001", ANNA)


# Installers


def test_installer_contact_is_delivered_once_per_idempotency_key(sandbox: Sandbox, installer: InstallerClient) -> None:
    contact = {"name": "Anna Andersson", "phone": "070-1234567", "email": "anna@kund.loggamera.se"}
    installer.send_contact("p-1", contact, idempotency_key="evt-1")
    installer.send_contact("p-1", contact, idempotency_key="evt-1")
    assert len(sandbox.requests("installers")) == 2
    assert len(sandbox.effects("installers")) == 1
    (held,) = sandbox.state()["installers"]["contacts"]
    assert (held["installer_id"], held["purchase_id"], held["contact"]) == ("inst-1", "p-1", contact)


def test_installer_contact_survives_a_503_and_still_lands_once(sandbox: Sandbox, installer: InstallerClient) -> None:
    sandbox.set_outage("installers", "503", count=2)
    installer.send_contact("p-1", {"name": "Anna"}, idempotency_key="evt-1")
    assert len(sandbox.effects("installers")) == 1


def test_erasure_notice_carries_only_references(sandbox: Sandbox, installer: InstallerClient) -> None:
    installer.send_contact("p-1", {"name": "Anna"}, idempotency_key="evt-1")
    installer.send_erasure_notice("user-7", ["p-1"], idempotency_key="evt-2")
    notice_request = sandbox.requests("installers")[-1]
    assert notice_request["body"] == {"type": "gdpr-art-19-erasure", "user_ref": "user-7", "purchase_ids": ["p-1"]}
    assert notice_request["idempotency_key"] == "evt-2"
    assert sandbox.state()["installers"]["contacts"] == []


def test_installer_wrong_token_or_unknown_installer_is_permanent(sandbox: Sandbox) -> None:
    with (
        InstallerClient(sandbox.installer_endpoint("inst-2"), token=DEFAULT_INSTALLERS["inst-1"]) as client,
        pytest.raises(PermanentError, match="401"),
    ):
        client.send_contact("p-1", {}, idempotency_key="k")
    with (
        InstallerClient(sandbox.installer_endpoint("inst-9"), token=DEFAULT_INSTALLERS["inst-1"]) as client,
        pytest.raises(PermanentError, match="404"),
    ):
        client.send_contact("p-1", {}, idempotency_key="k")


# SMTP


def test_smtp_mail_arrives_at_the_sandbox(sandbox: Sandbox) -> None:
    send_mail(
        "127.0.0.1",
        sandbox.smtp_port,
        sender="noreply@loggamera.se",
        to="anna@kund.loggamera.se",
        subject="Ditt konto är raderat",
        body="Vi har raderat dina uppgifter.",
    )
    (mail,) = sandbox.mails()
    assert mail["to"] == ["anna@kund.loggamera.se"]
    assert mail["subject"] == "Ditt konto är raderat"
    assert mail["body"].strip() == "Vi har raderat dina uppgifter."


def test_smtp_refused_connection_is_transient(closed_port: int) -> None:
    with pytest.raises(TransientError, match="unreachable"):
        send_mail(
            "127.0.0.1", closed_port, sender="a@loggamera.se", to="b@kund.loggamera.se", subject="s", body="b",
            attempts=2,
        )
