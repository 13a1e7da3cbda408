"""The sandbox behaves like the vendors it stands in for, and tells tests what it received."""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import smtplib
import subprocess
import sys
import time
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest

from services.sandbox import DEFAULT_INSTALLERS, Sandbox, SandboxConfig, SandboxControl
from services.sandbox.wire import REDACTED
from services.vendors.mailchimp import subscriber_hash

ROOT = Path(__file__).resolve().parent.parent
MAILCHIMP_AUTH = ("any", "sandbox-us1")
VISMA = {"Authorization": "Bearer sandbox-visma-token"}
DEV_REFRESH_TOKEN = SandboxConfig().visma_refresh_token
INST_1 = {"Authorization": f"Bearer {DEFAULT_INSTALLERS['inst-1']}"}




@pytest.fixture
def sandbox(sandbox_server: Sandbox) -> Sandbox:
    sandbox_server.reset()
    return sandbox_server


def _paypal_token(http: httpx.Client) -> dict[str, str]:
    resp = http.post(
        "/paypal/v1/oauth2/token",
        data={"grant_type": "client_credentials"},
        auth=("sandbox-client", "sandbox-secret"),
    )
    assert resp.status_code == 200
    return {"Authorization": f"Bearer {resp.json()['access_token']}"}


def _member_url(email: str) -> str:
    return f"/mailchimp/3.0/lists/loggamera/members/{subscriber_hash(email)}"


def _customer(number: str, **fields: object) -> dict[str, object]:
    base = {"CustomerNumber": number, "Name": "Anna", "InvoiceCity": "Lund", "InvoicePostalCode": "22100",
            "TermsOfPaymentId": SandboxConfig().visma_terms_of_payment_id, "IsActive": True}
    return {**base, "IsPrivatePerson": True, **fields}


def test_mailchimp_rejects_a_wrong_api_key_with_problem_json(http: httpx.Client) -> None:
    resp = http.get("/mailchimp/3.0/ping", auth=("any", "wrong-us1"))
    assert resp.status_code == 401
    assert resp.headers["content-type"] == "application/problem+json"
    assert set(resp.json()) == {"type", "title", "status", "detail", "instance"}
    assert resp.json()["title"] == "API Key Invalid"


def test_mailchimp_put_after_delete_permanent_is_forgotten_email_not_subscribed(http: httpx.Client) -> None:
    body = {"email_address": "anna@kund.loggamera.se", "status_if_new": "subscribed"}
    assert http.put(_member_url("anna@kund.loggamera.se"), json=body, auth=MAILCHIMP_AUTH).status_code == 200
    delete = http.post(_member_url("anna@kund.loggamera.se") + "/actions/delete-permanent", auth=MAILCHIMP_AUTH)
    assert delete.status_code == 204
    assert delete.content == b""
    again = http.put(
        _member_url("ANNA@kund.loggamera.se"),
        json={**body, "email_address": "ANNA@kund.loggamera.se"},
        auth=MAILCHIMP_AUTH,
    )
    assert again.status_code == 400
    assert again.json()["title"] == "Forgotten Email Not Subscribed"


def test_mailchimp_delete_permanent_of_an_unknown_member_is_resource_not_found(http: httpx.Client) -> None:
    resp = http.post(_member_url("nobody@kund.loggamera.se") + "/actions/delete-permanent", auth=MAILCHIMP_AUTH)
    assert resp.status_code == 404
    assert resp.json()["title"] == "Resource Not Found"


def test_mailchimp_refuses_a_body_that_does_not_match_the_subscriber_hash(http: httpx.Client) -> None:
    body = {"email_address": "other@kund.loggamera.se", "status_if_new": "subscribed"}
    resp = http.put(_member_url("anna@kund.loggamera.se"), json=body, auth=MAILCHIMP_AUTH)
    assert resp.status_code == 400


def test_paypal_issues_tokens_only_for_its_client_credentials(http: httpx.Client) -> None:
    resp = http.post(
        "/paypal/v1/oauth2/token", data={"grant_type": "client_credentials"}, auth=("sandbox-client", "nope")
    )
    assert resp.status_code == 401
    assert resp.json()["error"] == "invalid_client"
    assert http.get("/paypal/v3/vault/payment-tokens", params={"customer_id": "c1"}).status_code == 401


def test_paypal_unknown_token_is_404_in_paypal_error_shape(http: httpx.Client) -> None:
    resp = http.delete("/paypal/v3/vault/payment-tokens/nope", headers=_paypal_token(http))
    assert resp.status_code == 404
    body = resp.json()
    assert body["name"] == "RESOURCE_NOT_FOUND"
    assert {"name", "message", "debug_id", "details"} <= set(body)


def test_paypal_lists_at_most_five_tokens_a_page(sandbox: Sandbox, http: httpx.Client) -> None:
    sandbox.seed({"paypal": {"vault": {"lgcustomer0007": 7}}})
    params = {"customer_id": "lgcustomer0007", "page": "2", "page_size": "5", "total_required": "true"}
    page = http.get("/paypal/v3/vault/payment-tokens", params=params, headers=_paypal_token(http)).json()
    assert (page["total_items"], page["total_pages"], len(page["payment_tokens"])) == (7, 2, 2)
    too_big = http.get(
        "/paypal/v3/vault/payment-tokens", params={**params, "page_size": "6"}, headers=_paypal_token(http)
    )
    assert too_big.status_code == 400


def test_visma_put_replaces_the_whole_customer(http: httpx.Client) -> None:
    created = http.post("/visma/v2/customers", json=_customer("1", EmailAddress="a@x.se"), headers=VISMA)
    assert created.status_code == 201
    customer_id = created.json()["Id"]
    http.put(f"/visma/v2/customers/{customer_id}", json=_customer("1"), headers=VISMA)
    assert "EmailAddress" not in http.get(f"/visma/v2/customers/{customer_id}", headers=VISMA).json()


def test_visma_customer_with_invoices_cannot_be_deleted(sandbox: Sandbox, http: httpx.Client) -> None:
    sandbox.seed({"visma": {"customers": [_customer("9")], "invoices": [{"CustomerNumber": "9"}]}})
    customer_id = http.get("/visma/v2/customers", headers=VISMA).json()["Data"][0]["Id"]
    resp = http.delete(f"/visma/v2/customers/{customer_id}", headers=VISMA)
    assert resp.status_code == 400
    assert resp.json()["ErrorCode"] == 4001
    assert "DeveloperErrorMessage" in resp.json()


def test_visma_filter_finds_by_field_and_pages_with_meta(http: httpx.Client) -> None:
    http.post("/visma/v2/customers", json=_customer("O'Brien"), headers=VISMA)
    http.post("/visma/v2/customers", json=_customer("2"), headers=VISMA)
    found = http.get("/visma/v2/customers", params={"$filter": "CustomerNumber eq 'O''Brien'"}, headers=VISMA)
    assert found.json()["Meta"]["TotalNumberOfResults"] == 1
    assert found.json()["Data"][0]["CustomerNumber"] == "O'Brien"


def test_visma_refresh_token_works_once_and_is_rotated(http: httpx.Client) -> None:
    form = {"grant_type": "refresh_token", "refresh_token": "sandbox-visma-refresh"}
    client = ("sandbox-visma-client", "sandbox-visma-secret")
    first = http.post("/visma/connect/token", data=form, auth=client)
    assert first.status_code == 200
    assert first.json()["refresh_token"] != DEV_REFRESH_TOKEN
    assert http.post("/visma/connect/token", data=form, auth=client).json() == {"error": "invalid_grant"}
    bearer = {"Authorization": f"Bearer {first.json()['access_token']}"}
    assert http.get("/visma/v2/customers", headers=bearer).status_code == 200


def test_installer_endpoint_knows_its_installers_and_their_tokens(http: httpx.Client) -> None:
    body = {"purchase_id": "p1", "contact": {"name": "Anna"}}
    unknown = http.post("/installers/inst-404/contacts", json=body, headers={"Idempotency-Key": "k"})
    assert unknown.status_code == 404
    wrong = http.post(
        "/installers/inst-1/contacts",
        json=body,
        headers={"Idempotency-Key": "k", "Authorization": f"Bearer {DEFAULT_INSTALLERS['inst-2']}"},
    )
    assert wrong.status_code == 401


def test_installer_replays_the_first_answer_to_a_repeated_key_and_logs_every_call(
    sandbox: Sandbox, http: httpx.Client
) -> None:
    body = {"purchase_id": "p1", "contact": {"name": "Anna"}}
    headers = {**INST_1, "Idempotency-Key": "evt-1"}
    first = http.post("/installers/inst-1/contacts", json=body, headers=headers)
    second = http.post("/installers/inst-1/contacts", json=body, headers=headers)
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()
    assert second.headers["Idempotent-Replayed"] == "true"
    assert len(sandbox.requests("installers")) == 2
    assert len(sandbox.effects("installers")) == 1
    assert len(sandbox.state()["installers"]["contacts"]) == 1


def test_installer_refuses_a_reused_key_with_another_body(http: httpx.Client) -> None:
    headers = {**INST_1, "Idempotency-Key": "evt-1"}
    http.post("/installers/inst-1/contacts", json={"purchase_id": "p1", "contact": {}}, headers=headers)
    resp = http.post("/installers/inst-1/contacts", json={"purchase_id": "p2", "contact": {}}, headers=headers)
    assert resp.status_code == 422


def test_erasure_notice_with_personal_data_is_refused(http: httpx.Client) -> None:
    body = {"type": "gdpr-art-19-erasure", "user_ref": "u1", "purchase_ids": ["p1"], "email": "a@x.se"}
    resp = http.post("/installers/inst-1/erasure-notices", json=body, headers={**INST_1, "Idempotency-Key": "k"})
    assert resp.status_code == 400


def test_erasure_notice_makes_the_installer_drop_its_copy(sandbox: Sandbox, http: httpx.Client) -> None:
    contact = {"purchase_id": "p1", "contact": {"name": "Anna"}}
    http.post("/installers/inst-1/contacts", json=contact, headers={**INST_1, "Idempotency-Key": "k1"})
    notice = {"type": "gdpr-art-19-erasure", "user_ref": "u1", "purchase_ids": ["p1"]}
    resp = http.post("/installers/inst-1/erasure-notices", json=notice, headers={**INST_1, "Idempotency-Key": "k2"})
    assert resp.status_code == 202
    state = sandbox.state()["installers"]
    assert state["contacts"] == []
    assert state["erasure_notices"][0]["purchase_ids"] == ["p1"]


def test_request_log_keeps_no_credentials(sandbox: Sandbox, http: httpx.Client) -> None:
    http.get("/mailchimp/3.0/ping", auth=MAILCHIMP_AUTH)
    form = {"grant_type": "refresh_token", "refresh_token": "sandbox-visma-refresh"}
    http.post("/visma/connect/token", data=form, auth=("sandbox-visma-client", "sandbox-visma-secret"))
    log = json.dumps(sandbox.requests())
    assert "authorization" not in log.lower()
    assert "sandbox-visma-refresh" not in log
    assert sandbox.requests("visma")[0]["body"]["refresh_token"] == REDACTED
    assert sandbox.requests("mailchimp")[0]["status"] == 200


def test_503_outage_lasts_its_time_then_the_vendor_answers_again(sandbox: Sandbox, http: httpx.Client) -> None:
    sandbox.set_outage("mailchimp", "503", seconds=0.3)
    assert http.get("/mailchimp/3.0/ping", auth=MAILCHIMP_AUTH).status_code == 503
    assert http.get("/visma/v2/customers", headers=VISMA).status_code == 200
    time.sleep(0.35)
    assert http.get("/mailchimp/3.0/ping", auth=MAILCHIMP_AUTH).status_code == 200


def test_429_outage_says_when_to_come_back(sandbox: Sandbox, http: httpx.Client) -> None:
    sandbox.set_outage("paypal", "429", retry_after=3)
    resp = http.get("/paypal/v3/vault/payment-tokens/x")
    assert resp.status_code == 429
    assert resp.headers["Retry-After"] == "3"


def test_outage_for_all_vendors_until_switched_off(sandbox: Sandbox, http: httpx.Client) -> None:
    sandbox.set_outage("all", "503")
    assert http.get("/visma/v2/customers", headers=VISMA).status_code == 503
    assert http.post("/installers/inst-1/contacts", headers=INST_1).status_code == 503
    sandbox.set_outage("all", "off")
    assert http.get("/visma/v2/customers", headers=VISMA).status_code == 200


def test_outage_can_be_limited_to_a_number_of_requests(sandbox: Sandbox, http: httpx.Client) -> None:
    sandbox.set_outage("visma", "503", count=2)
    statuses = [http.get("/visma/v2/customers", headers=VISMA).status_code for _ in range(3)]
    assert statuses == [503, 503, 200]


def test_refuse_outage_drops_the_connection_without_an_answer(sandbox: Sandbox, http: httpx.Client) -> None:
    sandbox.set_outage("visma", "refuse")
    with pytest.raises(httpx.TransportError):
        http.get("/visma/v2/customers", headers=VISMA)
    assert sandbox.requests("visma")[0]["status"] is None


def test_reset_forgets_data_requests_effects_and_outages(sandbox: Sandbox, http: httpx.Client) -> None:
    sandbox.seed({"mailchimp": {"members": ["a@x.se"]}, "paypal": {"vault": {"lgcustomer0001": 1}}})
    http.get("/mailchimp/3.0/ping", auth=MAILCHIMP_AUTH)
    sandbox.set_outage("all", "503")
    sandbox.reset()
    state = sandbox.state()
    assert state["mailchimp"]["members"] == {}
    assert state["paypal"]["payment_tokens"] == {}
    assert state["outages"] == {}
    assert sandbox.requests() == []


def test_control_api_over_http_matches_the_python_api(sandbox: Sandbox) -> None:
    with SandboxControl(sandbox.http_url) as control:
        assert control.healthy()
        created = control.seed({"visma": {"customers": [_customer("5")], "invoices": [{"CustomerNumber": "5"}]}})
        assert len(created["visma"]["invoices"]) == 1
        control.set_outage("mailchimp", "429", retry_after=2)
        assert control.state()["outages"]["mailchimp"]["retry_after"] == 2
        with httpx.Client(base_url=sandbox.http_url) as http:
            http.get("/mailchimp/3.0/ping", auth=MAILCHIMP_AUTH)
        assert control.requests("mailchimp")[0]["status"] == 429
        assert control.requests("mailchimp") == sandbox.requests("mailchimp")
        control.expire_tokens("visma")
        assert sandbox.state()["visma"]["customers"]
        control.reset()
        assert control.state() == sandbox.state()
        assert control.effects() == []
        assert control.mails() == []


def test_bad_control_requests_are_answered_400(http: httpx.Client) -> None:
    resp = http.post("/_sandbox/outage", json={"vendor": "stripe", "mode": "503"})
    assert resp.status_code == 400
    assert "stripe" in resp.json()["message"]


def test_smtp_sink_keeps_each_mail(sandbox: Sandbox) -> None:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "noreply@loggamera.se", "anna@kund.loggamera.se", "Klart"
    message.set_content("Ditt konto är raderat.")
    with smtplib.SMTP("127.0.0.1", sandbox.smtp_port, timeout=5) as smtp:
        smtp.send_message(message)
    (mail,) = sandbox.mails()
    assert (mail["from"], mail["to"], mail["subject"]) == ("noreply@loggamera.se", ["anna@kund.loggamera.se"], "Klart")
    assert mail["body"].strip() == "Ditt konto är raderat."


@pytest.mark.slow
def test_sandbox_runs_as_its_own_process_and_stops_on_sigterm() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.sandbox", "--http-port", "0", "--smtp-port", "0"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        http_url = line.split("http=")[1].split()[0]
        with SandboxControl(http_url) as control:
            assert control.healthy()
            control.seed({"mailchimp": {"members": ["a@x.se"]}})
            assert subscriber_hash("a@x.se") in control.state()["mailchimp"]["members"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def test_a_round_trip_holds_back_each_answer_without_holding_back_the_others(sandbox: Sandbox) -> None:
    """As a vendor over the internet: every answer takes the round trip, and requests in flight wait side by side
    (the outside steps' concurrency is measured against this in the benchmark)."""
    with SandboxControl(sandbox.http_url) as control:
        control.set_round_trip("visma", 0.3)
    with httpx.Client(base_url=sandbox.http_url, timeout=5) as http:
        started = time.perf_counter()
        assert http.get("/visma/v2/customers", headers=VISMA).status_code == 200
        assert time.perf_counter() - started >= 0.3
        started = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(lambda _: http.get("/visma/v2/customers", headers=VISMA).status_code, range(8)))
        at_once = time.perf_counter() - started
        assert statuses == [200] * 8
        assert 0.3 <= at_once < 8 * 0.3 / 2, "eight answers waited one after another"
        started = time.perf_counter()
        assert http.get("/paypal/v3/vault/payment-tokens/x").status_code in (401, 404)  # another vendor: no wait
        assert time.perf_counter() - started < 0.3
    sandbox.set_round_trip("all", 0)
    assert sandbox.state()["round_trips"] == dict.fromkeys(sandbox.state()["round_trips"], 0.0)
    with pytest.raises(ValueError, match="expected 0 to 10"):
        sandbox.set_round_trip("visma", -1)
