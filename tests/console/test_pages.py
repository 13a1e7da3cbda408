"""Console pages over a real ledger (SQLite and PostgreSQL): list, flags, keyset paging, one request, receipt
verification, the audit table's migration, and the intake page over a real account database."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import select, update

from bench.console import fill_ledger
from services.account.main import build as build_account
from services.account.models import IntakeRequest
from services.console import audit
from services.ledger.main import build as build_ledger
from services.ledger.models import ErasureRequest, ReceiptEntry
from shared.db import ensure_schema, make_engine, session_factory
from tests.console.conftest import form_token

ROW = re.compile(r'<tr class="([a-z]*)">\s*<td><a href="/requests/([0-9a-f-]{36})">')


def _migrated(url: str):
    engine = make_engine(url)
    ledger = build_ledger()
    ensure_schema(engine, ledger.metadata, ledger.migrations)
    return engine


def _rows(html: str) -> list[tuple[str, str]]:
    return ROW.findall(html)


def _next(html: str) -> str | None:
    found = re.search(r'rel="next" href="([^"]+)"', html)
    return found.group(1).replace("&amp;", "&") if found else None


def test_the_audit_table_and_indexes_migrate_to_exactly_the_models(ledger_url, db_backend) -> None:
    engine = _migrated(ledger_url)
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), build_ledger().metadata) == []
    sessions = session_factory(engine)
    audit.record(sessions, who="otto", role="operator", action="dead_letter_replay", target="e-1",
                 detail={"service": "payment"})
    audit.record(sessions, who="otto", role="operator", action="dead_letter_purge", target="e-2")
    with sessions() as session:
        actions = audit.recent(session)
    assert [(a.action, a.target) for a in actions] == [("dead_letter_purge", "e-2"), ("dead_letter_replay", "e-1")]
    assert actions[1].detail == {"service": "payment"} and actions[0].at.tzinfo is not None
    engine.dispose()


def test_paging_walks_every_request_once_in_due_order(serve, ledger_url, db_backend) -> None:
    engine = _migrated(ledger_url)
    now = datetime.now(UTC)
    ids = fill_ledger(engine, 130, now=now)
    with session_factory(engine)() as session:
        expected = list(session.scalars(select(ErasureRequest.request_id)
                                        .order_by(ErasureRequest.due_at, ErasureRequest.request_id)))
    console = serve(ledger_url, page_size=50)
    client = console.login("vera")
    seen: list[str] = []
    url: str | None = "/requests?state=all"
    pages = 0
    while url:
        resp = client.get(url)
        assert resp.status_code == 200
        seen += [request_id for _, request_id in _rows(resp.text)]
        url, pages = _next(resp.text), pages + 1
    assert pages == 3 and seen == expected and sorted(seen) == sorted(ids)


def test_overdue_due_soon_and_stuck_are_flagged_and_filtered(serve, ledger_url, db_backend) -> None:
    engine = _migrated(ledger_url)
    now = datetime.now(UTC)
    fill_ledger(engine, 200, now=now)
    with session_factory(engine)() as session:
        open_rows = session.scalars(select(ErasureRequest).where(ErasureRequest.status == "open")).all()
        overdue = {r.request_id for r in open_rows if r.due_at < now}
        due_soon = {r.request_id for r in open_rows if now <= r.due_at < now + timedelta(days=7)}
    assert overdue and due_soon
    console = serve(ledger_url, page_size=500)
    client = console.login("vera")
    listed = _rows(client.get("/requests?state=open&flag=overdue").text)
    assert {i for _, i in listed} == overdue and {css for css, _ in listed} == {"overdue"}
    page = client.get("/requests?state=open").text
    assert page.count('<span class="flag overdue">overdue</span>') == len(overdue)
    assert {i for _, i in _rows(client.get("/requests?state=open&flag=due_soon").text)} == due_soon
    stuck = _rows(client.get("/requests?state=open&flag=stuck").text)
    assert stuck and all("stuck" in css or "overdue" in css for css, _ in stuck)


def test_unreadable_filters_and_cursors_get_a_clear_400(serve, ledger_url, db_backend) -> None:
    console = serve(ledger_url)
    client = console.login("vera")
    for query, words in (("state=maybe", "state must be one of"), ("after=%%%garbage", "page cursor"),
                         ("state=complete&flag=overdue", "open requests only")):
        resp = client.get(f"/requests?{query}")
        assert resp.status_code == 400 and words in resp.text and "Traceback" not in resp.text


def test_one_request_shows_its_timeline_and_its_receipt_verifies(serve, ledger_url, db_backend) -> None:
    engine = _migrated(ledger_url)
    now = datetime.now(UTC)
    ids = fill_ledger(engine, 40, now=now)
    with session_factory(engine)() as session:
        done = session.scalars(select(ErasureRequest.request_id).where(ErasureRequest.status == "complete")).first()
    console = serve(ledger_url)
    client = console.login("vera")
    page = client.get(f"/requests/{done}")
    assert page.status_code == 200
    for words in ("bookkeeping</strong>: retained", "kept sales transaction details (Visma eAccounting) until "
                  "2033-12-31: Bokföringslagen", "recipients told: Visma eAccounting", "complete: every slice"):
        assert words in page.text
    token = form_token(page)
    verified = client.post(f"/requests/{done}/verify", data={"csrf": token})
    assert "Receipt verified: 5 entries intact" in verified.text
    # Someone edits a stored receipt entry: the recomputed chain no longer holds.
    with session_factory(engine).begin() as session:
        session.execute(update(ReceiptEntry).where(ReceiptEntry.request_id == done, ReceiptEntry.seq == 2)
                        .values(payload=ReceiptEntry.payload + " "))
    broken = client.post(f"/requests/{done}/verify", data={"csrf": token}, headers={"HX-Request": "true"})
    assert "Receipt does NOT verify at entry 2" in broken.text and "<html" not in broken.text
    assert client.get(f"/requests/{uuid.uuid4()}").status_code == 404
    assert len(ids) == 40


def test_intake_lists_pending_confirmations_with_their_expiry(serve, ledger_url, account_url, db_backend,
                                                               tmp_path: Path) -> None:
    account = build_account()
    engine = make_engine(account_url)
    ensure_schema(engine, account.metadata, account.migrations)
    now = datetime.now(UTC)
    rows = [IntakeRequest(request_id=str(uuid.uuid4()), user_id=f"u-{i}", token_sha256=f"{i:064x}",
                          received_at=now - timedelta(days=i), expires_at=now + timedelta(days=2 - i),
                          confirmed_at=now if i == 2 else None) for i in range(4)]
    with session_factory(engine).begin() as session:
        session.add_all(rows)
    console = serve(ledger_url, account_url=account_url)
    page = console.login("vera").get("/intake").text
    pending = [r.request_id for r in sorted(rows, key=lambda r: r.expires_at) if r.confirmed_at is None]
    assert re.findall(r"<code>([0-9a-f-]{36})</code>", page) == pending
    assert page.count("expired (cleaned up") == 1 and "u-1" not in page
    engine.dispose()


def test_held_extended_and_internal_due_are_shown(serve, ledger_url, db_backend) -> None:
    from services.ledger import legal
    from services.ledger.settings import LedgerSettings

    engine = _migrated(ledger_url)
    now = datetime.now(UTC)
    fill_ledger(engine, 60, now=now)
    with session_factory(engine)() as session:
        open_rows = session.scalars(select(ErasureRequest).where(ErasureRequest.status == "open",
                                                                 ErasureRequest.reason.is_not(None))).all()
        late = next(r for r in open_rows if r.due_at < now)
        running = next(r for r in open_rows if r.requested_at and r.requested_at > now - timedelta(days=25))
        late_id, late_user, running_id = late.request_id, late.user_id, running.request_id
    with session_factory(engine).begin() as session:
        legal.hold(session, late_user, "court order 2026-T-1234", now)
        legal.extend(session, running_id, 2, "many installers to trace", now=now, settings=LedgerSettings())
    console = serve(ledger_url, page_size=500)
    client = console.login("vera")
    listed = {i: css for css, i in _rows(client.get("/requests?state=open").text)}
    assert listed[late_id] == "held"
    page = client.get(f"/requests/{late_id}").text
    assert '<span class="flag held">held</span>' in page and "court order 2026-T-1234" in page
    assert '<span class="flag overdue">' not in page
    page = client.get(f"/requests/{running_id}").text
    assert '<span class="flag extended">extended</span>' in page and "many installers to trace" in page
    assert "Internal due" in page


def test_a_failing_slice_is_named_with_its_system_and_next_retry(serve, ledger_url, db_backend) -> None:
    from services.ledger.models import SliceReport

    engine = _migrated(ledger_url)
    now = datetime.now(UTC)
    fill_ledger(engine, 20, now=now)
    with session_factory(engine).begin() as session:
        row = session.scalars(select(SliceReport).join(ErasureRequest).where(
            ErasureRequest.status == "open", SliceReport.outcome.is_(None)).order_by(SliceReport.request_id)).first()
        row.attempts, row.failing_system, row.last_error = 3, "Mailchimp", "mailchimp DELETE answered 503"
        row.last_failed_at, row.next_retry_at = now, now + timedelta(minutes=10)
        request_id, service = row.request_id, row.service
    console = serve(ledger_url, page_size=500)
    client = console.login("vera")
    listing = client.get("/requests?state=open").text
    retry_at = f"{now + timedelta(minutes=10):%Y-%m-%dT%H:%M:%SZ}"
    assert f"{service} (Mailchimp failed, attempt 3, next retry {retry_at})" in listing
    page = client.get(f"/requests/{request_id}").text
    assert "mailchimp DELETE answered 503" in page
    assert f"erasure retry {request_id} --slice {service}" in page


def test_open_access_and_correction_requests_are_listed_with_their_state(serve, ledger_url, db_backend) -> None:
    from schemas.examples import example_access_request, example_correction
    from services.ledger import access, correction
    from services.ledger.settings import LedgerSettings

    engine = _migrated(ledger_url)
    now = datetime.now(UTC)
    late = example_access_request("u-late", request_id=str(uuid.uuid4()), requested_at=now - timedelta(days=40))
    fresh = example_correction("u-fresh", request_id=str(uuid.uuid4()), requested_at=now)
    with session_factory(engine).begin() as session:
        session.add(access.new_request(late, LedgerSettings(), now))
        session.add(correction.new_request(fresh, LedgerSettings(), now))
    client = serve(ledger_url, page_size=50).login("vera")
    listing = client.get("/requests?state=open").text
    late_row = re.search(rf'<tr class="overdue">\s*<td><code>{late.request_id}</code></td>\s*<td>access</td>', listing)
    assert late_row is not None, "an access request past its deadline is flagged overdue"
    assert re.search(rf"<code>{fresh.request_id}</code></td>\s*<td>correction</td>\s*<td><span class=\"flag open\">",
                     listing)
    assert "account, installer_sharing, payment, bookkeeping, newsletter" in listing
