"""payment on the in-memory transport, the sandbox's PayPal over HTTP, SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from schemas import PurchaseCompleted
from schemas.examples import example_deregistration, example_purchase
from services.common.retention import LEGAL_BASIS
from services.payment.main import build
from services.payment.models import MIGRATIONS, PaymentRecord, PayPalCustomer, VaultToken, metadata
from services.payment.purge import run_purge
from services.sandbox import Sandbox
from services.vendors.rules import paypal_customer_id
from shared.db import ensure_schema, make_engine
from shared.testing import MemoryPipeline, MemoryService, wait_until
from shared.testing.scan import personal_data_hits
from tests.services.conftest import SliceReports

PAYPAL_BASIS = "PayPal's legal obligation to keep financial records (GDPR Art. 17(3)(b))"


@pytest.fixture
def start_payment(
    erasure_memory: MemoryPipeline, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., MemoryService]:
    """Start payment against this test's sandbox; keyword arguments set further environment variables."""

    def start(**env: str) -> MemoryService:
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        return erasure_memory.start(build())

    return start


@pytest.fixture
def reports(slice_reports: Callable[[str], SliceReports]) -> SliceReports:
    return slice_reports("payment")


def paypal_purchase(user_id: str, tokens: list[str] | None = None, **overrides: Any) -> PurchaseCompleted:
    """A PayPal purchase whose payer id and vault tokens are the user's own."""
    refs = {
        "payer_id": f"PAYER-{user_id}",
        "order_id": f"ORDER-{user_id}",
        "capture_id": f"CAPTURE-{user_id}",
        "vault_token_ids": tokens or [],
    }
    return example_purchase(user_id, payment={"method": "paypal", "paypal": refs}, **overrides)


def _payment(running: MemoryService, purchase_id: str) -> PaymentRecord | None:
    with Session(running.engine) as session:
        return session.get(PaymentRecord, purchase_id)


def _tokens(running: MemoryService) -> list[str]:
    with Session(running.engine) as session:
        return list(session.scalars(select(VaultToken.token_id).order_by(VaultToken.token_id)))


def _vaulted_at_paypal(sandbox: Sandbox, customer_id: str) -> list[str]:
    tokens = sandbox.state()["paypal"]["payment_tokens"].values()
    return sorted(t["id"] for t in tokens if t["customer"]["id"] == customer_id)


def _deleted_at_paypal(sandbox: Sandbox) -> list[str]:
    return sorted(e["token_id"] for e in sandbox.effects("paypal") if e["effect"] == "payment_token_deleted")


def test_paypal_purchase_records_its_references_and_vault_tokens(
    start_payment: Callable[..., MemoryService], erasure_memory: MemoryPipeline
) -> None:
    running = start_payment()
    purchase = paypal_purchase("pay-buy", tokens=["tok-buy-1"])
    [sent] = erasure_memory.publish(purchase)
    running.wait_handled(sent.event_id)
    payment = _payment(running, purchase.purchase_id)
    assert payment is not None
    assert (payment.payer_id, payment.order_id, payment.capture_id) == (
        "PAYER-pay-buy", "ORDER-pay-buy", "CAPTURE-pay-buy")
    assert payment.amount == purchase.total_incl_vat
    assert payment.currency == "SEK"
    assert payment.event_id == sent.event_id
    assert payment.retain_until == date(2033, 12, 31)
    assert _tokens(running) == ["tok-buy-1"]
    with Session(running.engine) as session:  # the PayPal customer id the user's tokens are vaulted under
        kept = session.get(PayPalCustomer, "pay-buy")
    assert kept is not None
    assert kept.customer_id == paypal_customer_id("pay-buy")


def test_invoice_purchase_leaves_nothing_in_payment(
    start_payment: Callable[..., MemoryService], erasure_memory: MemoryPipeline, sandbox: Sandbox
) -> None:
    running = start_payment()
    [sent] = erasure_memory.publish(example_purchase("pay-invoice", payment={"method": "invoice"}))
    running.wait_handled(sent.event_id)
    with Session(running.engine) as session:
        assert session.scalar(select(func.count()).select_from(PaymentRecord)) == 0
        assert session.scalar(select(func.count()).select_from(VaultToken)) == 0
    assert sandbox.requests("paypal") == []


def test_retention_of_a_payment_follows_the_company_financial_year(
    start_payment: Callable[..., MemoryService], erasure_memory: MemoryPipeline
) -> None:
    running = start_payment(ERASURE_BOOKKEEPING_FISCAL_YEAR_END_MONTH="4", ERASURE_BOOKKEEPING_FISCAL_YEAR_END_DAY="30")
    purchase = paypal_purchase("pay-broken", purchased_at="2026-05-10T10:00:00Z")
    [sent] = erasure_memory.publish(purchase)
    running.wait_handled(sent.event_id)
    payment = _payment(running, purchase.purchase_id)
    assert payment is not None and payment.retain_until == date(2034, 12, 31)


def test_erasure_deletes_vault_tokens_at_paypal_and_keeps_a_minimised_transaction_record(
    start_payment: Callable[..., MemoryService], erasure_memory: MemoryPipeline, sandbox: Sandbox,
    reports: SliceReports, db_backend: str,
) -> None:
    sandbox.seed({"paypal": {"vault": {paypal_customer_id("pay-erase"): ["tok-erase-1", "tok-erase-unseen"],
                                       paypal_customer_id("someone-else"): ["tok-x"]}}})
    running = start_payment()
    purchase = paypal_purchase("pay-erase", tokens=["tok-erase-1"])
    [bought] = erasure_memory.publish(purchase)
    running.wait_handled(bought.event_id)
    [erase] = erasure_memory.publish(example_deregistration("pay-erase"))
    running.wait_handled(erase.event_id)

    assert _vaulted_at_paypal(sandbox, paypal_customer_id("pay-erase")) == []
    assert _vaulted_at_paypal(sandbox, paypal_customer_id("someone-else")) == ["tok-x"]
    assert _deleted_at_paypal(sandbox) == ["tok-erase-1", "tok-erase-unseen"]
    assert _tokens(running) == []
    assert personal_data_hits(running.engine, ["PAYER-pay-erase", "tok-erase-1", "tok-erase-unseen",
                                               paypal_customer_id("pay-erase")]) == []
    [listed] = [r for r in sandbox.requests("paypal") if r["path"] == "/v3/vault/payment-tokens"]
    assert listed["query"]["customer_id"] == paypal_customer_id("pay-erase")
    payment = _payment(running, purchase.purchase_id)
    assert payment is not None
    assert payment.payer_id is None
    assert (payment.order_id, payment.capture_id) == ("ORDER-pay-erase", "CAPTURE-pay-erase")
    assert payment.amount == purchase.total_incl_vat
    assert payment.retain_until == date(2033, 12, 31)

    [report] = reports.wait("pay-erase")
    assert report["outcome"] == "retained"
    assert report["recipients_notified"] == ["PayPal"]
    assert set(report["erased"]) == {"PayPal vault payment tokens", "PayPal payer id"}
    assert report["retained"] == [
        {"category": "payment transaction references", "legal_basis": LEGAL_BASIS,
         "retain_until": "2033-12-31", "held_by": "Loggamera"},
        {"category": "financial transaction information at PayPal", "legal_basis": PAYPAL_BASIS,
         "retain_until": "2033-12-31", "held_by": "PayPal"},
    ]


def test_redelivered_erasure_deletes_each_token_once_and_a_replay_reports_again(
    start_payment: Callable[..., MemoryService], erasure_memory: MemoryPipeline, sandbox: Sandbox,
    reports: SliceReports,
) -> None:
    sandbox.seed({"paypal": {"vault": {paypal_customer_id("pay-again"): ["tok-again-1", "tok-again-2"]}}})
    running = start_payment()
    [bought] = erasure_memory.publish(paypal_purchase("pay-again", tokens=["tok-again-1", "tok-again-2"]))
    running.wait_handled(bought.event_id)
    message = erasure_memory.encode(example_deregistration("pay-again"))
    erasure_memory.publish(message)
    erasure_memory.publish(message)
    running.wait_handled(message.event_id)
    wait_until(lambda: erasure_memory.depth(f"{erasure_memory.namespace}.payment") == 0, what="settled")
    assert _deleted_at_paypal(sandbox) == ["tok-again-1", "tok-again-2"]
    assert len(reports.wait("pay-again")) == 1

    replay = example_deregistration("pay-again", request_id=str(uuid.uuid4()), replay=True,
                                    original_request_id=str(uuid.uuid4()))
    [replayed] = erasure_memory.publish(replay)
    running.wait_handled(replayed.event_id)
    _first, second = reports.wait("pay-again", count=2)
    assert second["replay"] is True
    assert second["outcome"] == "retained"
    assert second["recipients_notified"] == [], "nothing was left at PayPal to tell it about"
    assert _deleted_at_paypal(sandbox) == ["tok-again-1", "tok-again-2"]


def test_erasure_of_a_user_with_no_paypal_payments_reports_nothing_held(
    start_payment: Callable[..., MemoryService], erasure_memory: MemoryPipeline, sandbox: Sandbox,
    reports: SliceReports,
) -> None:
    running = start_payment()
    [sent] = erasure_memory.publish(example_deregistration("pay-stranger"))
    running.wait_handled(sent.event_id)
    [report] = reports.wait("pay-stranger")
    assert report["outcome"] == "nothing_held"
    assert report["recipients_notified"] == []
    assert _deleted_at_paypal(sandbox) == []


def test_tokens_paypal_holds_under_the_users_customer_id_are_deleted_even_if_no_event_named_them(
    start_payment: Callable[..., MemoryService], erasure_memory: MemoryPipeline, sandbox: Sandbox,
    reports: SliceReports,
) -> None:
    sandbox.seed({"paypal": {"vault": {paypal_customer_id("pay-vaulted"): 7}}})  # more than one page of five
    running = start_payment()
    [sent] = erasure_memory.publish(example_deregistration("pay-vaulted"))
    running.wait_handled(sent.event_id)
    assert _vaulted_at_paypal(sandbox, paypal_customer_id("pay-vaulted")) == []
    assert len(_deleted_at_paypal(sandbox)) == 7
    [report] = reports.wait("pay-vaulted")
    assert report["outcome"] == "erased"
    assert report["erased"] == ["PayPal vault payment tokens"]
    assert report["recipients_notified"] == ["PayPal"]


def test_late_purchase_for_an_erased_user_keeps_only_the_transaction_reference_and_no_tokens(
    start_payment: Callable[..., MemoryService], erasure_memory: MemoryPipeline, sandbox: Sandbox,
) -> None:
    running = start_payment()
    [erase] = erasure_memory.publish(example_deregistration("pay-late"))
    running.wait_handled(erase.event_id)
    sandbox.seed({"paypal": {"vault": {paypal_customer_id("pay-late"): ["tok-late"]}}})
    purchase = paypal_purchase("pay-late", tokens=["tok-late"])
    [late] = erasure_memory.publish(purchase)
    running.wait_handled(late.event_id)

    payment = _payment(running, purchase.purchase_id)
    assert payment is not None
    assert payment.payer_id is None
    assert (payment.order_id, payment.capture_id) == ("ORDER-pay-late", "CAPTURE-pay-late")
    assert payment.amount == purchase.total_incl_vat and payment.retain_until == date(2033, 12, 31)
    assert _tokens(running) == []
    assert personal_data_hits(running.engine, ["PAYER-pay-late", "tok-late"]) == []
    assert _vaulted_at_paypal(sandbox, paypal_customer_id("pay-late")) == [], \
        "a token saved for an erased user is deleted"


def test_a_purchase_and_the_erasure_in_one_batch_still_delete_every_token_at_paypal(
    start_payment: Callable[..., MemoryService], erasure_memory: MemoryPipeline, sandbox: Sandbox,
    reports: SliceReports,
) -> None:
    """PayPal is asked before the batch's transaction (outside steps): the erasure's step cannot see a token the
    purchase before it in the same batch records, so once the purchase has committed the erasure's step and
    handler run again and delete it, with no trip through the delay tiers. The token is vaulted under a customer
    id PayPal's listing for this user does not return: only the event names it."""
    sandbox.seed({"paypal": {"vault": {"legacy-customer-1": ["tok-batch-1"]}}})
    running = start_payment()
    purchase = paypal_purchase("pay-batch", tokens=["tok-batch-1"])
    bought, erase = erasure_memory.publish(purchase, example_deregistration("pay-batch"))
    assert running.handled(bought.event_id) and running.handled(erase.event_id), "both, without a delay tier"
    assert _deleted_at_paypal(sandbox) == ["tok-batch-1"]
    assert _tokens(running) == []
    [report] = reports.wait("pay-batch")
    assert "PayPal vault payment tokens" in report["erased"]


def test_an_erasure_and_a_late_purchase_in_one_batch_delete_the_late_token_at_paypal(
    start_payment: Callable[..., MemoryService], erasure_memory: MemoryPipeline, sandbox: Sandbox,
) -> None:
    """The late purchase's step ran before the erasure before it committed; its handler sees the user erased,
    and once the erasure has committed the purchase's step runs again and deletes the purchase's token."""
    sandbox.seed({"paypal": {"vault": {"legacy-customer-2": ["tok-late-batch"]}}})
    running = start_payment()
    purchase = paypal_purchase("pay-late-batch", tokens=["tok-late-batch"])
    erase, late = erasure_memory.publish(example_deregistration("pay-late-batch"), purchase)
    assert running.handled(erase.event_id) and running.handled(late.event_id), "both, without a delay tier"
    assert _deleted_at_paypal(sandbox) == ["tok-late-batch"]
    payment = _payment(running, purchase.purchase_id)
    assert payment is not None and payment.payer_id is None
    assert _tokens(running) == []


def test_paypal_outage_shorter_than_the_retry_window_delays_but_does_not_dead_letter(
    start_payment: Callable[..., MemoryService], erasure_memory: MemoryPipeline, sandbox: Sandbox,
) -> None:
    sandbox.seed({"paypal": {"vault": {paypal_customer_id("pay-outage"): ["tok-outage"]}}})
    running = start_payment()
    [bought] = erasure_memory.publish(paypal_purchase("pay-outage", tokens=["tok-outage"]))
    running.wait_handled(bought.event_id)
    sandbox.set_outage("paypal", "503", seconds=1.5)
    [sent] = erasure_memory.publish(example_deregistration("pay-outage"))
    running.wait_handled(sent.event_id, timeout=15)
    assert any(r["status"] == 503 for r in sandbox.requests("paypal")), "the outage should have been hit"
    assert erasure_memory.depth(f"{erasure_memory.namespace}.payment.dead") == 0
    assert _deleted_at_paypal(sandbox) == ["tok-outage"]


def test_permanent_refusal_by_paypal_dead_letters_at_once_with_the_reason(
    start_payment: Callable[..., MemoryService], erasure_memory: MemoryPipeline, sandbox: Sandbox,
) -> None:
    running = start_payment(**{"ERASURE_PAYMENT_PAYPAL_CLIENT_SECRET": "revoked"})
    [sent] = erasure_memory.publish(example_deregistration("pay-refused"))
    dead_queue = f"{erasure_memory.namespace}.payment.dead"
    wait_until(lambda: erasure_memory.depth(dead_queue) == 1, what="dead letter")
    [dead] = erasure_memory.take(dead_queue)
    assert dead.headers["x-error-kind"] == "permanent"
    assert dead.headers["x-attempts"] == 1
    assert sent.event_id in dead.headers["x-error"]
    assert "answered 401" in dead.headers["x-error"] and "invalid_client" in dead.headers["x-error"]
    assert not running.handled(sent.event_id)


def test_purge_erases_only_payment_records_past_their_retention(erasure_memory: MemoryPipeline) -> None:
    url = erasure_memory.database_url("payment")
    engine = make_engine(url)
    ensure_schema(engine, metadata, MIGRATIONS)
    common = {"user_id": "u-1", "payer_id": None, "capture_id": None, "amount": Decimal("125.00"),
              "currency": "SEK", "paid_at": datetime(2026, 3, 2, tzinfo=UTC),
              "recorded_at": datetime(2026, 3, 2, tzinfo=UTC), "event_id": str(uuid.uuid4())}
    with engine.begin() as conn:
        conn.execute(insert(PaymentRecord), [
            {**common, "purchase_id": "p-old", "order_id": "o-old", "retain_until": date(2033, 12, 31)},
            {**common, "purchase_id": "p-new", "order_id": "o-new", "retain_until": date(2034, 12, 31)},
        ])
    assert run_purge(url, today=date(2033, 12, 31)) == 0
    assert run_purge(url, today=date(2034, 1, 1)) == 1
    with Session(engine) as session:
        assert session.scalars(select(PaymentRecord.purchase_id)).all() == ["p-new"]
    engine.dispose()
