"""End to end: a correction updates every slice and every recipient (installer, Visma, Mailchimp), is tracked
with a receipt naming them, and never re-creates an erased user."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

from click.testing import CliRunner
from sqlalchemy.orm import Session

from schemas.examples import example_correction, example_deregistration, example_purchase
from services.account.accounts import register_user
from services.account.models import User
from services.cli.main import cli
from services.ledger.correction import correction_status
from services.vendors.rules import subscriber_hash
from shared.testing import wait_until
from tests.flows import completed

FORWARDING = ("installer_sharing", "payment", "bookkeeping", "newsletter")
NEW_EMAIL = "anna.lindqvist.ny@kund.loggamera.se"
NEW_PHONE = "+46701740699"


def _erasure(*args: str):
    return CliRunner().invoke(cli, list(args))


def _complete(stack, request_id: str):
    def check():
        with Session(stack.services["ledger"].engine) as session:
            found = correction_status(session, request_id)
            return found if found is not None and found.status == "complete" else None

    return wait_until(check, timeout=60, what=f"correction {request_id} complete")


def _buy(stack, user_id: str):
    purchase = example_purchase(user_id)
    c = purchase.customer
    with Session(stack.services["account"].engine) as session, session.begin():
        register_user(session, user_id=user_id, name=c.name, email=c.email, phone=c.phone,
                      street=c.address.street, postal_code=c.address.postal_code, city=c.address.city)
    [bought] = stack.pipeline.publish(purchase)
    for name in FORWARDING:
        stack.services[name].wait_handled(bought.event_id)
    return purchase


def test_a_correction_reaches_every_slice_and_recipient_with_a_receipt(stack, monkeypatch) -> None:
    monkeypatch.setenv("ERASURE_LEDGER_DATABASE_URL",
                       stack.services["ledger"].engine.url.render_as_string(hide_password=False))
    purchase = _buy(stack, "u-fix")
    old_email = purchase.customer.email

    result = _erasure("correction", "request", "--user", "u-fix", "--email", NEW_EMAIL, "--phone", NEW_PHONE)
    assert result.exit_code == 0, result.output
    request_id = result.output.strip()
    status = _complete(stack, request_id)
    outcomes = {s: (o, set(f), set(r)) for s, o, f, r in status.slices}
    installer = f"installer:{purchase.installer.id}"
    assert outcomes == {
        "account": ("corrected", {"email", "phone"}, set()),
        "installer_sharing": ("corrected", {"email", "phone"}, {installer}),
        "payment": ("nothing_held", set(), set()),
        "bookkeeping": ("corrected", {"email", "phone"}, {"Visma eAccounting"}),
        "newsletter": ("corrected", {"email"}, {"Mailchimp"}),
    }
    assert set(status.recipients) == {installer, "Visma eAccounting", "Mailchimp"}

    with Session(stack.services["account"].engine) as session:
        user = session.get(User, "u-fix")
        assert (user.email, user.phone) == (NEW_EMAIL, NEW_PHONE)
    state = stack.sandbox.state()
    members = state["mailchimp"]["members"]
    assert subscriber_hash(old_email) not in members, "the subscriber hash changes with the address"
    assert members[subscriber_hash(NEW_EMAIL)]["email_address"] == NEW_EMAIL
    [visma_customer] = state["visma"]["customers"].values()
    assert (visma_customer["EmailAddress"], visma_customer["MobilePhone"]) == (NEW_EMAIL, NEW_PHONE)
    [contact] = state["installers"]["contacts"]
    assert (contact["contact"]["email"], contact["contact"]["phone"]) == (NEW_EMAIL, NEW_PHONE)
    assert contact["contact"]["name"] == purchase.customer.name, "fields not corrected stay as they were"

    shown = _erasure("correction", "status", request_id, "--json")
    assert shown.exit_code == 0, shown.output
    data = json.loads(shown.output)
    assert data["receipt_intact"] is True and data["fields"] == ["email", "phone"]
    assert NEW_EMAIL not in shown.output, "only field names are kept and shown"


def test_a_correction_never_recreates_an_erased_user(stack, monkeypatch) -> None:
    monkeypatch.setenv("ERASURE_LEDGER_DATABASE_URL",
                       stack.services["ledger"].engine.url.render_as_string(hide_password=False))
    _buy(stack, "u-gone")
    deregistration = example_deregistration("u-gone", requested_at=datetime.now(UTC))
    stack.pipeline.publish(deregistration)
    completed(stack.services["ledger"], str(deregistration.request_id))
    before = stack.sandbox.state()

    # Our command refuses: it would seal the new values under a fresh key of a user who no longer exists.
    refused = _erasure("correction", "request", "--user", "u-gone", "--email", NEW_EMAIL)
    assert refused.exit_code == 2 and "u-gone was erased" in refused.output, refused.output
    # Another publisher's correction (in clear) reaches the slices: each reports the user erased, none re-creates.
    late = example_correction("u-gone", request_id=str(uuid.uuid4()), requested_at=datetime.now(UTC))
    stack.pipeline.publish(late)
    request_id = str(late.request_id)
    status = _complete(stack, request_id)
    assert {s: o for s, o, _f, _r in status.slices} == dict.fromkeys(("account", *FORWARDING), "erased")
    assert status.recipients == ()
    after = stack.sandbox.state()
    assert after["mailchimp"]["members"] == before["mailchimp"]["members"] == {}
    assert after["visma"]["customers"] == before["visma"]["customers"]
    with Session(stack.services["account"].engine) as session:
        assert session.get(User, "u-gone") is None
