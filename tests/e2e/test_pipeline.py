"""End to end: a purchase, then a deregistration, through all five slices and the ledger."""

from __future__ import annotations

from datetime import date

from sqlalchemy.orm import Session

from schemas.examples import example_deregistration, example_purchase
from services.account.accounts import register_user
from services.ledger.queries import request_status
from services.vendors.rules import paypal_customer_id
from shared.testing import wait_until
from shared.testing.scan import personal_data_hits

FORWARDING = ("installer_sharing", "payment", "bookkeeping", "newsletter")


def _register(stack, purchase) -> None:
    """The customer has an account, as every buyer does (the portal writes it; we do it directly)."""
    c = purchase.customer
    with Session(stack.services["account"].engine) as session, session.begin():
        register_user(session, user_id=purchase.user_id, name=c.name, email=c.email, phone=c.phone,
                      street=c.address.street, postal_code=c.address.postal_code, city=c.address.city)


def _buy_and_erase(stack, user_id: str):
    purchase = example_purchase(user_id)
    _register(stack, purchase)
    tokens = list(purchase.payment.paypal.vault_token_ids)
    stack.sandbox.seed({"paypal": {"vault": {paypal_customer_id(user_id): tokens}}})
    [bought] = stack.pipeline.publish(purchase)
    for name in FORWARDING:
        stack.services[name].wait_handled(bought.event_id)
    deregistration = example_deregistration(user_id)
    [erased] = stack.pipeline.publish(deregistration)
    return purchase, deregistration, erased


def _completed(stack, request_id) -> object:
    def check():
        with Session(stack.services["ledger"].engine) as session:
            status = request_status(session, str(request_id))
            return status if status is not None and status.status == "complete" else None

    return wait_until(check, timeout=30, what=f"request {request_id} complete")


def test_purchase_then_deregistration_leaves_no_personal_data_anywhere(stack) -> None:
    purchase, deregistration, _ = _buy_and_erase(stack, "u-e2e")
    status = _completed(stack, deregistration.request_id)
    assert {s.service for s in status.slices} == {"account", *FORWARDING}
    assert {s.service: s.outcome for s in status.slices} == {
        "account": "erased", "installer_sharing": "erased", "newsletter": "erased",
        "payment": "retained", "bookkeeping": "retained"}
    assert status.receipt_hash

    customer = purchase.customer
    needles = [customer.email, customer.phone, customer.name, customer.address.street,
               customer.phone.replace("+46", "0")]
    for name, running in stack.services.items():
        assert personal_data_hits(running.engine, needles) == [], f"{name} still holds personal data"

    state = stack.sandbox.state()
    assert state["mailchimp"]["members"] == {} and state["mailchimp"]["forgotten"], "member permanently deleted"
    assert state["paypal"]["payment_tokens"] == {}, "vault tokens deleted at PayPal"
    [visma_customer] = state["visma"]["customers"].values()
    assert visma_customer["IsActive"] is False
    assert customer.name not in str(visma_customer) and customer.email not in str(visma_customer)
    notices = [e for e in stack.sandbox.effects("installers") if e["effect"] == "erasure_notice_received"]
    assert [n["installer_id"] for n in notices] == ["inst-1"]

    bookkeeping = {s.service: s for s in status.slices}["bookkeeping"]
    assert bookkeeping.outcome == "retained"
    [retained] = [r for r in bookkeeping.report["retained"] if r["held_by"] == "Loggamera"]
    assert date.fromisoformat(retained["retain_until"]) == date(2033, 12, 31), "FY 2026 → kept through 2033"


def test_late_purchase_for_an_erased_user_forwards_nothing(stack) -> None:
    _, deregistration, _ = _buy_and_erase(stack, "u-late")
    _completed(stack, deregistration.request_id)
    before = {v: len(stack.sandbox.effects(v)) for v in ("installers", "mailchimp")}
    [late] = stack.pipeline.publish(example_purchase("u-late", purchase_id="P-late"))
    for name in FORWARDING:
        stack.services[name].wait_handled(late.event_id)
    after = {v: len(stack.sandbox.effects(v)) for v in ("installers", "mailchimp")}
    assert after == before


def test_the_same_events_twice_cause_each_outside_effect_once(stack) -> None:
    purchase = example_purchase("u-twice")
    tokens = list(purchase.payment.paypal.vault_token_ids)
    stack.sandbox.seed({"paypal": {"vault": {paypal_customer_id("u-twice"): tokens}}})
    bought = stack.pipeline.encode(purchase)
    erased = stack.pipeline.encode(example_deregistration("u-twice"))
    for message in (bought, bought):
        stack.pipeline.producer.publish(message)
    for name in FORWARDING:
        stack.services[name].wait_handled(bought.event_id)
    for message in (erased, erased):
        stack.pipeline.producer.publish(message)
    stack.services["ledger"].wait_handled(erased.event_id)
    wait_until(lambda: all(stack.pipeline.depth(f"{stack.pipeline.namespace}.{n}") == 0 for n in stack.services),
               what="every queue drained")
    kinds = [(e["vendor"], e["effect"]) for e in stack.sandbox.effects()]
    assert len(kinds) == len(set(kinds)), f"an outside effect happened twice: {kinds}"
