"""bookkeeping on the in-memory transport, the sandbox's Visma over HTTP, SQLite and PostgreSQL."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable
from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from schemas import CorrectionSliceReported, PersonalDataCorrected, PurchaseCompleted
from schemas.examples import example_correction, example_deregistration, example_purchase
from services.bookkeeping import main as bookkeeping_main
from services.bookkeeping.correction import correct_customer_at_visma
from services.bookkeeping.handlers import Gateways, book_sale_at_visma
from services.bookkeeping.main import build
from services.bookkeeping.models import MIGRATIONS, CustomerRecord, Purge, Sale, metadata
from services.bookkeeping.purge import run_purge
from services.bookkeeping.settings import BookkeepingSettings
from services.common.retention import (
    LEGAL_BASIS,
    accounting_date,
    check_fiscal_year_end,
    fiscal_year_end_for,
    retain_until_for,
)
from services.sandbox import Sandbox
from services.vendors.rules import visma_customer_number
from shared.codec import Outbound
from shared.db import ensure_schema, make_engine
from shared.keys import of_user
from shared.service import Outside
from shared.testing import MemoryPipeline, MemoryService, wait_until
from shared.testing.scan import personal_data_hits
from tests.services.conftest import SliceReports

SALES_CATEGORY = "sales transaction details (amounts, VAT, dates, invoice lines)"


# ---- the retention rule ----------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("sold_on", "year_end", "fiscal_year_end", "retain_until"),
    [
        (date(2026, 3, 2), (12, 31), date(2026, 12, 31), date(2033, 12, 31)),
        (date(2026, 1, 1), (12, 31), date(2026, 12, 31), date(2033, 12, 31)),
        (date(2026, 12, 31), (12, 31), date(2026, 12, 31), date(2033, 12, 31)),
        (date(2027, 1, 1), (12, 31), date(2027, 12, 31), date(2034, 12, 31)),
        # Broken financial year May-April: the year ending 30 April 2027 is kept through 2034.
        (date(2026, 3, 2), (4, 30), date(2026, 4, 30), date(2033, 12, 31)),
        (date(2026, 4, 30), (4, 30), date(2026, 4, 30), date(2033, 12, 31)),
        (date(2026, 5, 1), (4, 30), date(2027, 4, 30), date(2034, 12, 31)),
        (date(2025, 7, 1), (6, 30), date(2026, 6, 30), date(2033, 12, 31)),
        (date(2025, 12, 31), (8, 31), date(2026, 8, 31), date(2033, 12, 31)),
        # Leap days: a February year end is the last day of February, 28th or 29th.
        (date(2028, 2, 29), (2, 29), date(2028, 2, 29), date(2035, 12, 31)),
        (date(2028, 2, 29), (2, 28), date(2028, 2, 29), date(2035, 12, 31)),
        (date(2027, 3, 1), (2, 28), date(2028, 2, 29), date(2035, 12, 31)),
        (date(2027, 2, 28), (2, 29), date(2027, 2, 28), date(2034, 12, 31)),
        (date(2028, 2, 29), (12, 31), date(2028, 12, 31), date(2035, 12, 31)),
        (date(2028, 3, 1), (2, 29), date(2029, 2, 28), date(2036, 12, 31)),
    ],
)
def test_sale_is_kept_through_the_seventh_year_after_its_financial_year_ended(
    sold_on: date, year_end: tuple[int, int], fiscal_year_end: date, retain_until: date
) -> None:
    assert fiscal_year_end_for(sold_on, *year_end) == fiscal_year_end
    assert retain_until_for(sold_on, *year_end) == retain_until


def test_default_financial_year_is_the_calendar_year() -> None:
    assert retain_until_for(date(2026, 3, 2)) == date(2033, 12, 31)


@pytest.mark.parametrize("year_end", [(4, 15), (4, 31), (2, 30), (13, 31), (0, 31), (6, 1)])
def test_financial_year_that_does_not_end_on_a_month_end_is_refused(year_end: tuple[int, int]) -> None:
    with pytest.raises(ValueError, match="month"):
        check_fiscal_year_end(*year_end)
    with pytest.raises(ValueError, match="month"):
        retain_until_for(date(2026, 3, 2), *year_end)


def test_settings_refuse_a_financial_year_end_that_is_no_month_end() -> None:
    with pytest.raises(ValidationError, match="last day of a month"):
        BookkeepingSettings(fiscal_year_end_month=4, fiscal_year_end_day=15)


def test_sale_just_before_midnight_utc_on_new_years_eve_is_booked_on_swedish_new_years_day() -> None:
    from datetime import UTC, datetime

    booked = accounting_date(datetime(2026, 12, 31, 23, 30, tzinfo=UTC))
    assert booked == date(2027, 1, 1)
    assert retain_until_for(booked) == date(2034, 12, 31)


# ---- the service on the broker ------------------------------------------------------------------------

@pytest.fixture
def start_bookkeeping(
    erasure_memory: MemoryPipeline, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., MemoryService]:
    """Start bookkeeping against this test's sandbox; keyword arguments set further ERASURE_BOOKKEEPING_ vars."""

    def start(**env: str) -> MemoryService:
        for name, value in env.items():
            monkeypatch.setenv(f"ERASURE_BOOKKEEPING_{name.upper()}", value)
        return erasure_memory.start(build())

    return start


@pytest.fixture
def reports(slice_reports: Callable[[str], SliceReports]) -> SliceReports:
    return slice_reports("bookkeeping")


def _personal_values(event: PurchaseCompleted) -> list[str]:
    buyer = event.customer
    return [v for v in (buyer.name, buyer.email, buyer.phone, buyer.address.street) if v]


def _visma_customers(sandbox: Sandbox) -> list[dict[str, Any]]:
    return list(sandbox.state()["visma"]["customers"].values())


def _visma_invoices(sandbox: Sandbox) -> list[dict[str, Any]]:
    return list(sandbox.state()["visma"]["invoices"].values())


def _effects(sandbox: Sandbox, kind: str) -> list[dict[str, Any]]:
    return [e for e in sandbox.effects("visma") if e["effect"] == kind]


def _sale(running: MemoryService, purchase_id: str) -> Sale | None:
    with Session(running.engine) as session:
        return session.get(Sale, purchase_id)


def _customer(running: MemoryService, user_id: str) -> CustomerRecord | None:
    with Session(running.engine) as session:
        return session.get(CustomerRecord, user_id)


def test_purchase_books_customer_and_invoice_at_visma_and_keeps_the_sale_through_2033(
    start_bookkeeping: Callable[..., MemoryService], erasure_memory: MemoryPipeline, sandbox: Sandbox
) -> None:
    running = start_bookkeeping()
    purchase = example_purchase("bk-buy")
    [sent] = erasure_memory.publish(purchase)
    running.wait_handled(sent.event_id)

    [customer] = _visma_customers(sandbox)
    assert customer["CustomerNumber"] == visma_customer_number("bk-buy")
    assert customer["Name"] == purchase.customer.name
    assert customer["EmailAddress"] == purchase.customer.email
    assert customer["InvoiceCity"] == purchase.customer.address.city
    [invoice] = _visma_invoices(sandbox)
    assert invoice["CustomerId"] == customer["Id"]
    assert invoice["YourReference"] == sent.event_id
    assert invoice["InvoiceDate"] == "2026-03-02"
    settings = BookkeepingSettings()
    assert [(row["IsTextRow"], row["ArticleId"]) for row in invoice["Rows"]] == \
        [(False, settings.visma_article_id)] * len(purchase.lines)
    assert [row["Text"].split()[0] for row in invoice["Rows"]] == [line.sku for line in purchase.lines]
    assert (invoice["EuThirdParty"], invoice["RotReducedInvoicingType"]) == (False, 0)
    assert customer["TermsOfPaymentId"] == settings.visma_terms_of_payment_id

    sale = _sale(running, purchase.purchase_id)
    assert sale is not None
    assert sale.visma_invoice_id == invoice["Id"]
    assert sale.sale_date == date(2026, 3, 2)
    assert sale.fiscal_year_end == date(2026, 12, 31)
    assert sale.retain_until == date(2033, 12, 31)
    assert (sale.total_excl_vat, sale.vat_amount, sale.total_incl_vat) == (
        purchase.total_excl_vat, purchase.vat_amount, purchase.total_incl_vat)
    assert [line["sku"] for line in sale.lines] == [line.sku for line in purchase.lines]
    kept = _customer(running, "bk-buy")
    assert kept is not None and kept.visma_customer_id == customer["Id"] and kept.active


def test_company_with_a_broken_financial_year_keeps_a_may_sale_through_the_year_after(
    start_bookkeeping: Callable[..., MemoryService], erasure_memory: MemoryPipeline
) -> None:
    running = start_bookkeeping(fiscal_year_end_month="4", fiscal_year_end_day="30")
    purchase = example_purchase("bk-broken", purchased_at="2026-05-10T10:00:00Z")
    [sent] = erasure_memory.publish(purchase)
    running.wait_handled(sent.event_id)
    sale = _sale(running, purchase.purchase_id)
    assert sale is not None
    assert sale.fiscal_year_end == date(2027, 4, 30)
    assert sale.retain_until == date(2034, 12, 31)


def test_same_purchase_published_twice_books_one_customer_and_one_invoice(
    start_bookkeeping: Callable[..., MemoryService], erasure_memory: MemoryPipeline, sandbox: Sandbox
) -> None:
    running = start_bookkeeping()
    message = erasure_memory.encode(example_purchase("bk-twice"))
    erasure_memory.publish(message)
    erasure_memory.publish(message)
    running.wait_handled(message.event_id)
    wait_until(lambda: erasure_memory.depth(f"{erasure_memory.namespace}.bookkeeping") == 0, what="settled")
    # The same purchase re-sent upstream under a new event id is not booked again either.
    [resent] = erasure_memory.publish(example_purchase("bk-twice"))
    running.wait_handled(resent.event_id)
    assert len(_effects(sandbox, "customer_created")) == 1
    assert len(_effects(sandbox, "invoice_created")) == 1


def test_erasure_keeps_the_sale_and_leaves_the_visma_customer_inactive_and_anonymised(
    start_bookkeeping: Callable[..., MemoryService], erasure_memory: MemoryPipeline, sandbox: Sandbox,
    reports: SliceReports, db_backend: str,
) -> None:
    running = start_bookkeeping()
    purchase = example_purchase("bk-erase", customer={
        **example_purchase("bk-erase").customer.model_dump(mode="json"),
        "company_name": "Lindqvist Fastigheter AB", "corporate_id": "559123-4561",
    })
    [bought] = erasure_memory.publish(purchase)
    running.wait_handled(bought.event_id)
    [erase] = erasure_memory.publish(example_deregistration("bk-erase"))
    running.wait_handled(erase.event_id)

    [customer] = _visma_customers(sandbox)
    assert customer["IsActive"] is False
    assert customer["Name"].startswith("Anonymised customer")
    for field in ("EmailAddress", "Telephone", "MobilePhone", "InvoiceAddress1", "ContactPersonName",
                  "CorporateIdentityNumber"):
        assert customer.get(field) in (None, ""), field
    assert purchase.customer.name not in json.dumps(customer)
    assert len(_visma_invoices(sandbox)) == 1, "the invoice stays: the law requires it"

    needles = [*_personal_values(purchase), "Lindqvist Fastigheter AB", "559123-4561"]
    assert personal_data_hits(running.engine, needles) == []
    anonymised = _customer(running, "bk-erase")
    assert anonymised is not None and not anonymised.active and anonymised.anonymised_at is not None
    sale = _sale(running, purchase.purchase_id)
    assert sale is not None and sale.retain_until == date(2033, 12, 31)
    assert sale.total_incl_vat == purchase.total_incl_vat

    [report] = reports.wait("bk-erase")
    assert report["outcome"] == "retained"
    assert report["recipients_notified"] == ["Visma eAccounting"]
    assert {"name", "e-mail", "phone", "postal address"} <= set(report["erased"])
    assert report["retained"] == [
        {"category": SALES_CATEGORY, "legal_basis": LEGAL_BASIS, "retain_until": "2033-12-31", "held_by": holder}
        for holder in ("Loggamera", "Visma eAccounting")
    ]


def test_redelivered_erasure_has_no_second_effect_and_a_replay_erases_and_reports_again(
    start_bookkeeping: Callable[..., MemoryService], erasure_memory: MemoryPipeline, sandbox: Sandbox,
    reports: SliceReports,
) -> None:
    running = start_bookkeeping()
    [bought] = erasure_memory.publish(example_purchase("bk-again"))
    running.wait_handled(bought.event_id)
    message = erasure_memory.encode(example_deregistration("bk-again"))
    erasure_memory.publish(message)
    erasure_memory.publish(message)
    running.wait_handled(message.event_id)
    wait_until(lambda: erasure_memory.depth(f"{erasure_memory.namespace}.bookkeeping") == 0, what="settled")
    assert len(_effects(sandbox, "customer_replaced")) == 1
    assert len(reports.wait("bk-again")) == 1

    replay = example_deregistration("bk-again", request_id=str(uuid.uuid4()), replay=True,
                                    original_request_id=str(uuid.uuid4()))
    [replayed] = erasure_memory.publish(replay)
    running.wait_handled(replayed.event_id)
    first, second = reports.wait("bk-again", count=2)
    assert second["replay"] is True
    assert second["outcome"] == "retained"
    assert second["retained"] == first["retained"]
    assert [c["IsActive"] for c in _visma_customers(sandbox)] == [False]


def test_visma_customer_without_invoices_is_deleted_there_and_nothing_is_kept_here(
    start_bookkeeping: Callable[..., MemoryService], erasure_memory: MemoryPipeline, sandbox: Sandbox,
    reports: SliceReports,
) -> None:
    running = start_bookkeeping()
    seeded = sandbox.seed({"visma": {"customers": [{
        "CustomerNumber": "bk-noinv", "Name": "Erik Johansson", "EmailAddress": "erik@kund.loggamera.se",
        "InvoiceCity": "Umeå", "InvoicePostalCode": "903 26",
    }]}})
    [visma_id] = seeded["visma"]["customers"]
    with running.engine.begin() as conn:
        conn.execute(insert(CustomerRecord).values(
            user_id="bk-noinv", customer_number="bk-noinv", visma_customer_id=of_user("bk-noinv", visma_id),
            name=of_user("bk-noinv", "Erik Johansson"), email=of_user("bk-noinv", "erik@kund.loggamera.se"),
            active=True))
    [sent] = erasure_memory.publish(example_deregistration("bk-noinv"))
    running.wait_handled(sent.event_id)
    assert sandbox.state()["visma"]["customers"] == {}
    assert [e["effect"] for e in sandbox.effects("visma")] == ["customer_deleted"]
    assert _customer(running, "bk-noinv") is None
    assert personal_data_hits(running.engine, ["Erik Johansson", "erik@kund.loggamera.se"]) == []
    [report] = reports.wait("bk-noinv")
    assert report["outcome"] == "erased"
    assert report["retained"] == []
    assert report["recipients_notified"] == ["Visma eAccounting"]


def test_erasure_of_a_user_we_never_booked_reports_nothing_held(
    start_bookkeeping: Callable[..., MemoryService], erasure_memory: MemoryPipeline, sandbox: Sandbox,
    reports: SliceReports,
) -> None:
    running = start_bookkeeping()
    [sent] = erasure_memory.publish(example_deregistration("bk-stranger"))
    running.wait_handled(sent.event_id)
    [report] = reports.wait("bk-stranger")
    assert report["outcome"] == "nothing_held"
    assert report["recipients_notified"] == []
    assert sandbox.requests("visma") == []


def test_late_purchase_for_an_erased_user_books_a_minimised_sale_and_no_named_customer(
    start_bookkeeping: Callable[..., MemoryService], erasure_memory: MemoryPipeline, sandbox: Sandbox,
) -> None:
    running = start_bookkeeping()
    [erase] = erasure_memory.publish(example_deregistration("bk-late"))
    running.wait_handled(erase.event_id)
    purchase = example_purchase("bk-late")
    [late] = erasure_memory.publish(purchase)
    running.wait_handled(late.event_id)

    customers = _visma_customers(sandbox)
    assert [c["Name"] for c in customers] == ["Anonymised customer"]
    assert all(c["CustomerNumber"] != visma_customer_number("bk-late") for c in customers)
    for needle in _personal_values(purchase):
        assert needle not in json.dumps(sandbox.state()["visma"]), "no contact detail may reach Visma"
    [invoice] = _visma_invoices(sandbox)
    assert invoice["CustomerId"] == customers[0]["Id"]
    assert invoice["YourReference"] == late.event_id

    assert _customer(running, "bk-late") is None
    sale = _sale(running, purchase.purchase_id)
    assert sale is not None
    assert sale.retain_until == date(2033, 12, 31)
    assert sale.vat_amount == purchase.vat_amount
    assert personal_data_hits(running.engine, _personal_values(purchase)) == []


def _named_customers_left(sandbox: Sandbox, user_id: str, event: PurchaseCompleted) -> list[dict[str, Any]]:
    """Visma customers that still name the user: active under the user's number, or holding a contact detail."""
    number = visma_customer_number(user_id)
    return [c for c in _visma_customers(sandbox)
            if (c.get("CustomerNumber") == number and c.get("IsActive"))
            or any(needle in json.dumps(c) for needle in _personal_values(event))]


def _in_one_batch(erasure_memory: MemoryPipeline, running: MemoryService, first: Any, second: Any
                  ) -> tuple[Outbound, Outbound]:
    """Publish two events in one batch: the second's step could not see what the first did, so once the first
    has committed the second's step and handler run again; both are handled without a trip through the delay
    tiers."""
    one, two = erasure_memory.publish(first, second)
    assert running.handled(one.event_id) and running.handled(two.event_id), "both, without a delay tier"
    return one, two


def test_a_purchase_and_the_erasure_in_one_batch_leave_no_named_customer_at_visma(
    start_bookkeeping: Callable[..., MemoryService], erasure_memory: MemoryPipeline, sandbox: Sandbox,
    reports: SliceReports,
) -> None:
    """Visma is asked before the batch's transaction (outside steps): the erasure's step cannot see the customer
    the purchase before it in the same batch books, so the erasure retries and erases it at Visma then."""
    running = start_bookkeeping()
    purchase = example_purchase("bk-batch")
    _in_one_batch(erasure_memory, running, purchase, example_deregistration("bk-batch"))

    assert _named_customers_left(sandbox, "bk-batch", purchase) == []
    [customer] = _visma_customers(sandbox)
    assert customer["IsActive"] is False
    assert len(_visma_invoices(sandbox)) == 1
    assert personal_data_hits(running.engine, _personal_values(purchase)) == []
    [report] = reports.wait("bk-batch")
    assert report["recipients_notified"] == ["Visma eAccounting"]
    assert "customer contact details at Visma eAccounting" in report["erased"]


def test_an_erasure_and_a_late_purchase_in_one_batch_leave_no_named_customer_at_visma(
    start_bookkeeping: Callable[..., MemoryService], erasure_memory: MemoryPipeline, sandbox: Sandbox,
) -> None:
    """The late purchase's step ran before the erasure before it committed, and booked the named customer; its
    handler sees the user erased and retries, and the next attempt erases that customer at Visma (deactivated and
    anonymised: the invoice already booked on it stays, once) and keeps the sale without a customer here."""
    running = start_bookkeeping()
    purchase = example_purchase("bk-late-batch")
    _, late = _in_one_batch(erasure_memory, running, example_deregistration("bk-late-batch"), purchase)

    assert _named_customers_left(sandbox, "bk-late-batch", purchase) == []
    active = [c for c in _visma_customers(sandbox) if c.get("IsActive")]
    assert [c["Name"] for c in active] == ["Anonymised customer"]
    [invoice] = _visma_invoices(sandbox)
    assert invoice["YourReference"] == late.event_id, "one invoice, booked once"
    booked_on = sandbox.state()["visma"]["customers"][invoice["CustomerId"]]
    assert booked_on["IsActive"] is False and booked_on["Name"].startswith("Anonymised customer")
    assert _customer(running, "bk-late-batch") is None
    sale = _sale(running, purchase.purchase_id)
    assert sale is not None and sale.visma_invoice_id == invoice["Id"]
    assert personal_data_hits(running.engine, _personal_values(purchase)) == []


def _handled(erasure_memory: MemoryPipeline, running: MemoryService, event: Any) -> Outbound:
    """Publish one event and wait until the service has handled it."""
    [sent] = erasure_memory.publish(event)
    running.wait_handled(sent.event_id)
    return sent


def _correction_report(erasure_memory: MemoryPipeline, user_id: str) -> CorrectionSliceReported:
    [report] = erasure_memory.wait_events(
        CorrectionSliceReported, where=lambda r: r.user_id == user_id and r.service == "bookkeeping")
    return report


def test_a_correction_reaches_the_customer_at_visma(
    start_bookkeeping: Callable[..., MemoryService], erasure_memory: MemoryPipeline, sandbox: Sandbox,
) -> None:
    running = start_bookkeeping()
    _handled(erasure_memory, running, example_purchase("bk-fix"))
    correction = example_correction("bk-fix")
    _handled(erasure_memory, running, correction)

    [customer] = _visma_customers(sandbox)
    assert (customer["EmailAddress"], customer["MobilePhone"]) == (correction.corrected.email,
                                                                   correction.corrected.phone)
    kept = _customer(running, "bk-fix")
    assert kept is not None and kept.email == correction.corrected.email
    report = _correction_report(erasure_memory, "bk-fix")
    assert (report.outcome, report.recipients_notified) == ("corrected", ["Visma eAccounting"])


def test_a_purchase_and_a_correction_in_one_batch_leave_the_corrected_customer_at_visma(
    start_bookkeeping: Callable[..., MemoryService], erasure_memory: MemoryPipeline, sandbox: Sandbox,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The purchase's step sends the old details and the correction's step the new ones, in no set order (here
    the purchase's last); the correction sees the purchase booked after its step, and sends its details again on
    its retry."""
    corrected = threading.Event()

    def correct_first(event: PersonalDataCorrected, out: Outside[Gateways]) -> Any:
        try:
            return correct_customer_at_visma(event, out)
        finally:
            corrected.set()

    def book_after_the_correction(event: PurchaseCompleted, out: Outside[Gateways]) -> Any:
        if event.purchase_id == "P-fix-batch-2":
            corrected.wait(10)
        return book_sale_at_visma(event, out)

    monkeypatch.setattr(bookkeeping_main, "correct_customer_at_visma", correct_first)
    monkeypatch.setitem(bookkeeping_main.OUTSIDE, PurchaseCompleted, book_after_the_correction)
    running = start_bookkeeping()
    _handled(erasure_memory, running, example_purchase("bk-fix-batch"))
    correction = example_correction("bk-fix-batch")
    _in_one_batch(erasure_memory, running, example_purchase("bk-fix-batch", purchase_id="P-fix-batch-2"), correction)

    [customer] = _visma_customers(sandbox)
    assert customer["EmailAddress"] == correction.corrected.email
    assert _correction_report(erasure_memory, "bk-fix-batch").recipients_notified == ["Visma eAccounting"]


def test_an_erasure_and_a_correction_in_one_batch_leave_no_named_customer_at_visma(
    start_bookkeeping: Callable[..., MemoryService], erasure_memory: MemoryPipeline, sandbox: Sandbox,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The correction's step ran before the erasure committed, and may send the named customer back to Visma
    after the erasure's step anonymised it (here it does: one step at a time, in order); its handler sees the
    user erased and retries, and the next attempt erases the customer at Visma again."""
    monkeypatch.setattr(erasure_memory, "settings", erasure_memory.settings.model_copy(
        update={"outside_concurrency": 1}))
    running = start_bookkeeping()
    purchase = example_purchase("bk-fix-erase")
    _handled(erasure_memory, running, purchase)
    correction = example_correction("bk-fix-erase")
    _in_one_batch(erasure_memory, running, example_deregistration("bk-fix-erase"), correction)

    assert _named_customers_left(sandbox, "bk-fix-erase", purchase) == []
    assert str(correction.corrected.email) not in json.dumps(sandbox.state()["visma"]["customers"])
    assert _correction_report(erasure_memory, "bk-fix-erase").outcome == "erased"


def test_visma_outage_shorter_than_the_retry_window_delays_but_does_not_dead_letter(
    start_bookkeeping: Callable[..., MemoryService], erasure_memory: MemoryPipeline, sandbox: Sandbox,
) -> None:
    running = start_bookkeeping()
    sandbox.set_outage("visma", "503", seconds=1.5)
    [sent] = erasure_memory.publish(example_purchase("bk-outage"))
    running.wait_handled(sent.event_id, timeout=15)
    assert any(r["status"] == 503 for r in sandbox.requests("visma")), "the outage should have been hit"
    assert erasure_memory.depth(f"{erasure_memory.namespace}.bookkeeping.dead") == 0
    assert len(_effects(sandbox, "invoice_created")) == 1


def test_permanent_refusal_by_visma_dead_letters_at_once_with_the_reason(
    start_bookkeeping: Callable[..., MemoryService], erasure_memory: MemoryPipeline, sandbox: Sandbox,
) -> None:
    revoked = {"visma_access_token": "revoked", "visma_refresh_token": "revoked"}
    running = start_bookkeeping(**revoked)
    [sent] = erasure_memory.publish(example_purchase("bk-refused"))
    dead_queue = f"{erasure_memory.namespace}.bookkeeping.dead"
    wait_until(lambda: erasure_memory.depth(dead_queue) == 1, what="dead letter")
    [dead] = erasure_memory.take(dead_queue)
    assert dead.headers["x-error-kind"] == "permanent"
    assert dead.headers["x-attempts"] == 1
    assert sent.event_id in dead.headers["x-error"]
    assert "answered 400" in dead.headers["x-error"] and "invalid_grant" in dead.headers["x-error"]
    assert not running.handled(sent.event_id)
    assert _sale(running, "P-2026-bk-refused") is None
    assert sandbox.state()["visma"]["customers"] == {}


# ---- the retention purge ---------------------------------------------------------------------------------

def _sale_row(purchase_id: str, user_id: str, retain_until: date) -> dict[str, Any]:
    return {
        "purchase_id": purchase_id, "user_id": user_id, "visma_invoice_id": f"inv-{purchase_id}",
        "sale_date": date(retain_until.year - 7, 3, 2), "fiscal_year_end": date(retain_until.year - 7, 12, 31),
        "currency": "SEK", "total_excl_vat": Decimal("100.00"), "vat_amount": Decimal("25.00"),
        "total_incl_vat": Decimal("125.00"), "lines": [], "retain_until": retain_until,
    }


def test_purge_erases_only_sales_past_their_retention_and_customers_left_without_sales(
    erasure_memory: MemoryPipeline, db_backend: str
) -> None:
    from datetime import UTC, datetime

    url = erasure_memory.database_url("bookkeeping")
    engine = make_engine(url)
    ensure_schema(engine, metadata, MIGRATIONS)
    erased_at = datetime(2027, 1, 1, tzinfo=UTC)
    with engine.begin() as conn:
        conn.execute(insert(Sale), [
            _sale_row("p-old", "u-gone", date(2033, 12, 31)),
            _sale_row("p-old-2", "u-kept", date(2033, 12, 31)),
            _sale_row("p-new", "u-kept", date(2034, 12, 31)),
            _sale_row("p-active", "u-active", date(2033, 12, 31)),
        ])
        conn.execute(insert(CustomerRecord), [
            {"user_id": "u-gone", "customer_number": "u-gone", "active": False, "anonymised_at": erased_at},
            {"user_id": "u-kept", "customer_number": "u-kept", "active": False, "anonymised_at": erased_at},
            {"user_id": "u-active", "customer_number": "u-active", "active": True, "anonymised_at": None},
        ])

    assert run_purge(url, today=date(2033, 12, 31)) == 0, "the last day of retention is still kept"
    assert run_purge(url, today=date(2034, 1, 1)) == 4

    with Session(engine) as session:
        assert session.scalars(select(Sale.purchase_id)).all() == ["p-new"]
        assert sorted(session.scalars(select(CustomerRecord.user_id))) == ["u-active", "u-kept"]
        assert [p.rows for p in session.scalars(select(Purge).order_by(Purge.id))] == [0, 4]
    engine.dispose()
