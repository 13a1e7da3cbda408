"""Each vendor rule in services/sandbox/RULES.md: the sandbox refuses what the vendor refuses, in its error
shape, and our clients refuse it before sending (nothing reaches the vendor). Values are the documented ones,
written out here rather than taken from the rule table, so a wrong table fails these tests."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from services.sandbox import DEFAULT_INSTALLERS, Sandbox, SandboxConfig
from services.vendors.installer import InstallerClient
from services.vendors.mailchimp import MailchimpClient
from services.vendors.paypal import PayPalClient
from services.vendors.rules import (
    VendorRuleError,
    fit,
    paypal_customer_id,
    subscriber_hash,
    visma_customer_number,
)
from services.vendors.visma import VismaClient
from shared.errors import PermanentError

CONFIG = SandboxConfig()
MAILCHIMP_AUTH = ("any", CONFIG.mailchimp_api_key)
VISMA = {"Authorization": f"Bearer {CONFIG.visma_access_token}"}
CUSTOMER = {"Name": "Anna Lindqvist", "InvoiceCity": "Lund", "InvoicePostalCode": "22100",
            "TermsOfPaymentId": CONFIG.visma_terms_of_payment_id, "IsPrivatePerson": True, "IsActive": True}
ROW = {"IsTextRow": False, "ArticleId": CONFIG.visma_article_id, "Text": "Gateway", "UnitPrice": 100.0,
       "Quantity": 1}




@pytest.fixture
def sandbox(sandbox_server: Sandbox) -> Sandbox:
    sandbox_server.reset()
    return sandbox_server


def _paypal_auth(http: httpx.Client) -> dict[str, str]:
    resp = http.post("/paypal/v1/oauth2/token", data={"grant_type": "client_credentials"},
                     auth=(CONFIG.paypal_client_id, CONFIG.paypal_client_secret))
    return {"Authorization": f"Bearer {resp.json()['access_token']}"}


def _paypal_issue(resp: httpx.Response) -> tuple[int, str, str, str]:
    body = resp.json()
    assert set(body) >= {"name", "message", "debug_id", "details"}
    [detail] = body["details"]
    return resp.status_code, body["name"], detail["field"], detail["issue"]


# PayPal


@pytest.mark.parametrize(
    ("customer_id", "issue"),
    [
        ("u-1001", "INVALID_STRING_LENGTH"),  # 6 characters: one short of 7
        ("c" * 37, "INVALID_STRING_LENGTH"),  # one over 36
        ("u-1001.se", "INVALID_PARAMETER_SYNTAX"),  # `.` is outside [0-9a-zA-Z_-]
        ("user:1001", "INVALID_PARAMETER_SYNTAX"),
    ],
)
def test_paypal_refuses_a_customer_id_outside_its_pattern_or_length(http: httpx.Client, customer_id: str,
                                                                     issue: str) -> None:
    resp = http.get("/paypal/v3/vault/payment-tokens", params={"customer_id": customer_id},
                    headers=_paypal_auth(http))
    assert _paypal_issue(resp) == (400, "INVALID_REQUEST", "customer_id", issue)


@pytest.mark.parametrize("customer_id", ["u-10011", "c" * 36, "A_b-9"  + "x" * 2])
def test_paypal_accepts_customer_ids_at_the_edges_of_its_rule(http: httpx.Client, customer_id: str) -> None:
    resp = http.get("/paypal/v3/vault/payment-tokens", params={"customer_id": customer_id},
                    headers=_paypal_auth(http))
    assert resp.status_code == 200


@pytest.mark.parametrize("method", ["GET", "DELETE"])
@pytest.mark.parametrize(("token_id", "issue"), [("tok.1", "INVALID_PARAMETER_SYNTAX"),
                                                  ("t" * 37, "INVALID_STRING_LENGTH")])
def test_paypal_refuses_a_payment_token_id_outside_its_pattern(http: httpx.Client, method: str, token_id: str,
                                                                issue: str) -> None:
    resp = http.request(method, f"/paypal/v3/vault/payment-tokens/{token_id}", headers=_paypal_auth(http))
    assert _paypal_issue(resp) == (400, "INVALID_REQUEST", "id", issue)


def test_paypal_access_token_stops_working_when_it_expires() -> None:
    with Sandbox(paypal_token_ttl=1) as sandbox, httpx.Client(base_url=sandbox.http_url, timeout=5) as http:
        token = http.post("/paypal/v1/oauth2/token", data={"grant_type": "client_credentials"},
                          auth=(CONFIG.paypal_client_id, CONFIG.paypal_client_secret)).json()
        assert token["expires_in"] == 1
        auth = {"Authorization": f"Bearer {token['access_token']}"}
        url = "/paypal/v3/vault/payment-tokens?customer_id=lgcustomer01"
        assert http.get(url, headers=auth).status_code == 200
        time.sleep(1.2)
        expired = http.get(url, headers=auth)
        assert expired.status_code == 401
        assert expired.json()["name"] == "AUTHENTICATION_FAILURE"


def test_paypal_client_refuses_ids_before_sending(sandbox: Sandbox) -> None:
    with PayPalClient(CONFIG.paypal_client_id, CONFIG.paypal_client_secret, f"{sandbox.http_url}/paypal") as client:
        with pytest.raises(VendorRuleError, match="customer_id must be 7-36 characters"):
            client.list_payment_tokens("u-1001")
        with pytest.raises(VendorRuleError, match="payment token id must match"):
            client.delete_payment_token("tok.1")
    assert sandbox.requests("paypal") == []


def test_our_paypal_customer_id_is_stable_fits_and_says_nothing_of_the_user(sandbox: Sandbox) -> None:
    ids = {user: paypal_customer_id(user) for user in ("u-1001", "u:1001.x", "x" * 64)}
    assert ids["u-1001"] == paypal_customer_id("u-1001")
    assert len(set(ids.values())) == 3
    for user, customer_id in ids.items():
        assert 7 <= len(customer_id) <= 36
        assert customer_id.replace("-", "").replace("_", "").isalnum()
        assert user not in customer_id
    sandbox.seed({"paypal": {"vault": {ids["u:1001.x"]: 1}}})  # PayPal takes it


# Mailchimp


def _put_member(http: httpx.Client, email: str, member_hash: str | None = None) -> httpx.Response:
    url = f"/mailchimp/3.0/lists/{CONFIG.mailchimp_list_id}/members/{member_hash or subscriber_hash(email)}"
    return http.put(url, json={"email_address": email, "status_if_new": "subscribed"}, auth=MAILCHIMP_AUTH)


def test_mailchimp_subscriber_hash_is_the_md5_of_the_lower_cased_address(http: httpx.Client) -> None:
    assert subscriber_hash(" Anna@Kund.Loggamera.SE ") == "c6395f15cd1ed9d9de102de2fd13eb78"
    assert _put_member(http, "Anna@Kund.Loggamera.SE", "c6395f15cd1ed9d9de102de2fd13eb78").status_code == 200
    wrong = _put_member(http, "Anna@Kund.Loggamera.SE", "0" * 32)
    assert (wrong.status_code, wrong.json()["title"]) == (400, "Invalid Resource")


@pytest.mark.parametrize("email", ["anna@example.com", "anna@mail.example.org", "anna@example.net",
                                   "anna@loggamera.test", "anna@host.invalid"])
def test_mailchimp_refuses_an_address_that_looks_fake(http: httpx.Client, email: str) -> None:
    resp = _put_member(http, email)
    assert resp.status_code == 400
    assert resp.headers["content-type"] == "application/problem+json"
    assert resp.json()["title"] == "Invalid Resource"
    assert resp.json()["detail"] == f"{email} looks fake or invalid, please enter a real email address."


@pytest.mark.parametrize("email", ["anna", "anna@", "anna@@kund.loggamera.se", "anna lindqvist@kund.loggamera.se"])
def test_mailchimp_refuses_an_address_that_is_not_one(http: httpx.Client, email: str) -> None:
    assert _put_member(http, email).status_code == 400


def test_mailchimp_refuses_to_re_add_a_forgotten_address(http: httpx.Client) -> None:
    email = "anna@kund.loggamera.se"
    assert _put_member(http, email).status_code == 200
    url = f"/mailchimp/3.0/lists/{CONFIG.mailchimp_list_id}/members/{subscriber_hash(email)}"
    assert http.post(f"{url}/actions/delete-permanent", auth=MAILCHIMP_AUTH).status_code == 204
    again = _put_member(http, email)
    assert (again.status_code, again.json()["title"]) == (400, "Forgotten Email Not Subscribed")


def test_mailchimp_answers_429_beyond_ten_simultaneous_connections(sandbox: Sandbox, at_once) -> None:
    statuses, together = at_once("mailchimp", 12, "/mailchimp/3.0/ping", auth=MAILCHIMP_AUTH)
    assert together == 12
    assert sorted(statuses) == [200] * 10 + [429] * 2
    with httpx.Client(base_url=sandbox.http_url, timeout=10) as client:  # one at a time is always fine
        assert all(client.get("/mailchimp/3.0/ping", auth=MAILCHIMP_AUTH).status_code == 200 for _ in range(12))


def test_mailchimp_client_refuses_a_fake_address_before_sending(sandbox: Sandbox) -> None:
    with MailchimpClient(CONFIG.mailchimp_api_key, CONFIG.mailchimp_list_id,
                         base_url=f"{sandbox.http_url}/mailchimp/3.0") as client:
        with pytest.raises(VendorRuleError, match="looks fake") as caught:
            client.upsert_member("anna@example.com")
        assert "anna" not in str(caught.value)
        assert isinstance(caught.value, PermanentError)
    assert sandbox.requests("mailchimp") == []


# Visma eAccounting


def _visma_refusal(resp: httpx.Response) -> str:
    assert resp.status_code == 400
    body = resp.json()
    assert set(body) == {"ErrorCode", "DeveloperErrorMessage", "ErrorId"}
    return str(body["DeveloperErrorMessage"])


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("CustomerNumber", "1" * 17, "CustomerNumber is too long (at most 16)"),
        ("Name", "N" * 51, "Name is too long (at most 50)"),
        ("InvoiceAddress1", "A" * 51, "InvoiceAddress1 is too long (at most 50)"),
        ("InvoiceAddress2", "A" * 51, "InvoiceAddress2 is too long (at most 50)"),
        ("InvoiceCity", "C" * 51, "InvoiceCity is too long (at most 50)"),
        ("InvoicePostalCode", "1" * 11, "InvoicePostalCode is too long (at most 10)"),
        ("ContactPersonName", "P" * 101, "ContactPersonName is too long (at most 100)"),
        ("EmailAddress", "a" * 251 + "@x.se", "EmailAddress is too long (at most 255)"),
    ],
)
def test_visma_refuses_customer_fields_longer_than_documented(http: httpx.Client, field: str, value: str,
                                                             message: str) -> None:
    resp = http.post("/visma/v2/customers", json={**CUSTOMER, field: value}, headers=VISMA)
    assert message in _visma_refusal(resp)
    at_limit = value[: len(value) - 1] if field != "EmailAddress" else "a" * 250 + "@x.se"
    assert http.post("/visma/v2/customers", json={**CUSTOMER, field: at_limit}, headers=VISMA).status_code == 201


@pytest.mark.parametrize("field", ["Name", "InvoiceCity", "InvoicePostalCode", "TermsOfPaymentId",
                                   "IsPrivatePerson", "IsActive"])
def test_visma_refuses_a_customer_without_a_required_field(http: httpx.Client, field: str) -> None:
    body = {k: v for k, v in CUSTOMER.items() if k != field}
    assert f"{field} is required" in _visma_refusal(http.post("/visma/v2/customers", json=body, headers=VISMA))


def _customer_id(http: httpx.Client) -> str:
    return str(http.post("/visma/v2/customers", json={**CUSTOMER, "CustomerNumber": "LG1"}, headers=VISMA).json()["Id"])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"EuThirdParty": None}, "EuThirdParty is required"),
        ({"RotReducedInvoicingType": None}, "RotReducedInvoicingType is required"),
        ({"RotReducedInvoicingType": 3}, "RotReducedInvoicingType must be 0, 1 or 2"),
        ({"YourReference": "r" * 101}, "YourReference is too long (at most 100)"),
        ({"Rows": [{k: v for k, v in ROW.items() if k != "IsTextRow"}]}, "row 1: IsTextRow is required"),
        ({"Rows": [{**ROW, "ArticleId": None}]}, "row 1: ArticleId is required unless IsTextRow"),
        ({"Rows": [{**ROW, "Text": "t" * 2001}]}, "row 1: Text is too long (at most 2000)"),
    ],
)
def test_visma_refuses_an_invoice_that_breaks_its_rules(http: httpx.Client, change: dict[str, Any],
                                                        message: str) -> None:
    invoice = {"CustomerId": _customer_id(http), "EuThirdParty": False, "RotReducedInvoicingType": 0,
               "YourReference": "evt-1", "Rows": [ROW]}
    assert http.post("/visma/v2/customerinvoices", json=invoice, headers=VISMA).status_code == 201
    body = {k: v for k, v in {**invoice, **change}.items() if v is not None}
    assert message in _visma_refusal(http.post("/visma/v2/customerinvoices", json=body, headers=VISMA))


def test_visma_accepts_a_text_row_without_an_article(http: httpx.Client) -> None:
    invoice = {"CustomerId": _customer_id(http), "EuThirdParty": False, "RotReducedInvoicingType": 0,
               "Rows": [ROW, {"IsTextRow": True, "Text": "Installed by Nio El AB"}]}
    assert http.post("/visma/v2/customerinvoices", json=invoice, headers=VISMA).status_code == 201


def test_visma_refuses_to_delete_a_customer_with_invoices(http: httpx.Client) -> None:
    customer_id = _customer_id(http)
    invoice = {"CustomerId": customer_id, "EuThirdParty": False, "RotReducedInvoicingType": 0, "Rows": [ROW]}
    assert http.post("/visma/v2/customerinvoices", json=invoice, headers=VISMA).status_code == 201
    refused = http.delete(f"/visma/v2/customers/{customer_id}", headers=VISMA)
    assert refused.json()["ErrorCode"] == 4001
    assert "CanNotBeDeletedException" in _visma_refusal(refused)


def test_visma_client_refuses_what_visma_would_before_sending(sandbox: Sandbox) -> None:
    with VismaClient(f"{sandbox.http_url}/visma", access_token=CONFIG.visma_access_token) as client:
        with pytest.raises(VendorRuleError, match="CustomerNumber must be 1-16 characters"):
            client.upsert_customer("u-" + "1" * 15, CUSTOMER)
        with pytest.raises(VendorRuleError, match="TermsOfPaymentId is required"):
            client.upsert_customer("LG1", {k: v for k, v in CUSTOMER.items() if k != "TermsOfPaymentId"})
        with pytest.raises(VendorRuleError, match="Name is too long") as caught:
            client.upsert_customer("LG1", {**CUSTOMER, "Name": "Anna Lindqvist " * 4})
        assert "Lindqvist" not in str(caught.value)
        with pytest.raises(VendorRuleError, match="row 1: ArticleId is required"):
            client.create_invoice("any", [{"IsTextRow": False, "Text": "x"}], your_reference="evt-1")
    assert sandbox.requests("visma") == []


def test_our_visma_customer_number_is_stable_and_fits() -> None:
    numbers = {visma_customer_number(user) for user in ("u-1001", "u-1002", "x" * 64)}
    assert len(numbers) == 3
    assert all(len(number) <= 16 for number in numbers)
    assert visma_customer_number("u-1001") == visma_customer_number("u-1001")


def test_free_text_is_shortened_at_a_word_boundary_to_the_limit() -> None:
    assert fit("Anna Lindqvist", 50) == "Anna Lindqvist"
    assert fit("Storgatan 12, lägenhet 1104, uppgång B, våning 11 mot gården", 50) == \
        "Storgatan 12, lägenhet 1104, uppgång B, våning 11"
    assert len(fit("x" * 80, 50) or "") == 50


# Installers


def test_installer_refuses_a_missing_or_wrong_bearer_token(sandbox: Sandbox, http: httpx.Client) -> None:
    body = {"purchase_id": "P-1", "contact": {"name": "Anna"}}
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": DEFAULT_INSTALLERS["inst-1"]}):
        resp = http.post("/installers/inst-1/contacts", json=body, headers={**headers, "Idempotency-Key": "k1"})
        assert (resp.status_code, resp.json()["error"]) == (401, "unauthorized")


def test_installer_client_refuses_plain_http_off_this_machine_and_an_empty_token() -> None:
    token = DEFAULT_INSTALLERS["inst-1"]
    with pytest.raises(VendorRuleError, match="must be https://"):
        InstallerClient("http://nio-el.se/loggamera", token=token)
    with pytest.raises(VendorRuleError, match="bearer token"):
        InstallerClient("https://nio-el.se/loggamera", token=token[:0] + " ")
    InstallerClient("https://nio-el.se/loggamera", token=token).close()
    InstallerClient("http://127.0.0.1:9/loggamera", token=token).close()  # the sandbox on this machine
