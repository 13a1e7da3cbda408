"""End to end: an access request answered by every slice, with what the vendors hold read back, assembled into
one export with a manifest; the export expires and is erased with the user, and is never logged."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta

from click.testing import CliRunner
from sqlalchemy.orm import Session

from schemas.examples import example_deregistration, example_purchase
from services.account.accounts import register_user
from services.cli.main import cli
from services.ledger.access import access_status, export_of, purge_expired
from services.vendors.rules import paypal_customer_id
from shared.testing import wait_until

FORWARDING = ("installer_sharing", "payment", "bookkeeping", "newsletter")


def _erasure(*args: str):
    return CliRunner().invoke(cli, list(args))


def _complete(stack, request_id: str):
    def check():
        with Session(stack.services["ledger"].engine) as session:
            found = access_status(session, request_id)
            return found if found is not None and found.status == "complete" else None

    return wait_until(check, timeout=60, what=f"access request {request_id} assembled")


def test_access_export_holds_every_slice_and_vendor_and_goes_with_the_user(stack, monkeypatch, capfd,
                                                                            tmp_path) -> None:
    monkeypatch.setenv("ERASURE_LEDGER_DATABASE_URL",
                       stack.services["ledger"].engine.url.render_as_string(hide_password=False))
    user_id = "u-access"
    purchase = example_purchase(user_id)
    c = purchase.customer
    with Session(stack.services["account"].engine) as session, session.begin():
        register_user(session, user_id=user_id, name=c.name, email=c.email, phone=c.phone,
                      street=c.address.street, postal_code=c.address.postal_code, city=c.address.city)
    tokens = sorted(purchase.payment.paypal.vault_token_ids)
    stack.sandbox.seed({"paypal": {"vault": {paypal_customer_id(user_id): tokens}}})
    [bought] = stack.pipeline.publish(purchase)
    for name in FORWARDING:
        stack.services[name].wait_handled(bought.event_id)

    result = _erasure("access", "request", "--user", user_id)
    assert result.exit_code == 0, result.output
    request_id = result.output.strip()
    status = _complete(stack, request_id)
    assert status.missing == () and status.export_available
    assert status.due_at > datetime.now(UTC) + timedelta(days=27), "one month of legal time"

    out = tmp_path / "export.json"
    assert _erasure("access", "export", request_id, "--out", str(out)).exit_code == 0
    export = json.loads(out.read_text())
    parts = {p["service"]: p["items"] for p in export["parts"]}
    assert set(parts) == {"account", *FORWARDING}
    by_holder = {item["held_by"]: item for items in parts.values() for item in items}
    assert by_holder["Loggamera"]["purpose"] and by_holder["Loggamera"]["legal_basis"]
    account = next(i for i in parts["account"] if i["category"] == "account and contact details")
    assert account["data"]["email"] == c.email and account["data"]["name"] == c.name
    mailchimp = parts["newsletter"][0]["data"]["member_at_mailchimp"]
    assert mailchimp["email_address"] == c.email and mailchimp["status"] == "subscribed", "read back from Mailchimp"
    paypal = next(i for i in parts["payment"] if i["held_by"] == "PayPal")
    assert paypal["data"]["payment_tokens_at_paypal"] == tokens, "read back from PayPal"
    visma = by_holder["Visma eAccounting"]
    assert visma["data"]["Name"] == c.name, "read back from Visma"
    [installer] = parts["installer_sharing"]
    assert installer["recipients"] == [f"installer:{purchase.installer.id}"]
    assert installer["data"]["held_by_installer"][0]["contact"]["email"] == c.email, "read back from the installer"
    for item in (i for items in parts.values() for i in items):
        assert {"category", "held_by", "data", "purpose", "recipients", "retention", "legal_basis"} <= set(item)

    html_file = tmp_path / "export.html"
    assert _erasure("access", "export", request_id, "--format", "html", "--out", str(html_file)).exit_code == 0
    html = html_file.read_text()
    assert c.email in html and "<script" not in html
    manifest = status.manifest
    assert manifest["export.json"] == hashlib.sha256(out.read_text().encode()).hexdigest()
    assert manifest["export.html"] == hashlib.sha256(html.encode()).hexdigest()
    assert status.manifest_hash == hashlib.sha256(
        json.dumps(manifest, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()).hexdigest()
    shown = _erasure("access", "status", request_id)
    assert shown.exit_code == 0 and status.manifest_hash in shown.output and c.email not in shown.output

    logged = capfd.readouterr()
    assert c.email not in logged.out + logged.err, "the export's personal data is never logged"

    with Session(stack.services["ledger"].engine) as session, session.begin():
        assert purge_expired(session, datetime.now(UTC)) == 0
        assert purge_expired(session, datetime.now(UTC) + timedelta(days=31)) == 1, "kept 30 days by default"
        assert export_of(session, request_id, "json", datetime.now(UTC)) is None
    expired = _erasure("access", "export", request_id)
    assert expired.exit_code == 1 and "expired" in expired.output

    second = _erasure("access", "request", "--user", user_id).output.strip()
    _complete(stack, second)
    deregistration = example_deregistration(user_id, requested_at=datetime.now(UTC))
    [erased] = stack.pipeline.publish(deregistration)
    stack.services["ledger"].wait_handled(erased.event_id)
    with Session(stack.services["ledger"].engine) as session:
        gone = access_status(session, second)
        assert gone is not None and gone.export_erased_why == "user_erased"
        assert export_of(session, second, "html", datetime.now(UTC)) is None
