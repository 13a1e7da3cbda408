"""Operators' actions on one request in the console: extend, hold, release and retry, each confirmed first, done
through the ledger's own functions and recorded in the audit log; viewers are refused and bad input is said plainly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from bench.console import fill_ledger
from services.account.main import build as build_account
from services.ledger.models import ConsoleAction, ErasureRequest, LegalHold, ReceiptEntry
from services.ledger.queries import request_status
from services.ledger.settings import LedgerSettings
from shared.db import ensure_schema, make_engine, session_factory
from shared.testing import Pipeline
from tests.console.conftest import form_token
from tests.console.test_pages import _migrated


def _filled(ledger_url: str, now: datetime):
    """A migrated ledger holding 80 requests, a fifth of them open; its engine."""
    engine = _migrated(ledger_url)
    fill_ledger(engine, 80, now=now)
    return engine


def _started(session) -> list[ErasureRequest]:
    """The open requests whose deregistration has arrived."""
    return list(session.scalars(select(ErasureRequest).where(
        ErasureRequest.status == "open", ErasureRequest.reason.is_not(None)).order_by(ErasureRequest.request_id)))


def _open_requests(engine, now: datetime) -> tuple[ErasureRequest, ErasureRequest]:
    """An open request still in its first month, and one past it."""
    with session_factory(engine)() as session:
        rows = _started(session)
        running = next(r for r in rows if r.requested_at > now - timedelta(days=25))
        late = next(r for r in rows if r.requested_at < now - timedelta(days=31))
        session.expunge_all()
    return running, late


def _actions(engine) -> list[tuple[str, str, str, dict]]:
    with session_factory(engine)() as session:
        return [(r.who, r.action, r.target, dict(r.detail)) for r in
                session.scalars(select(ConsoleAction).order_by(ConsoleAction.id))]


def test_an_operator_extends_holds_and_releases_and_each_is_audited(serve, ledger_url, account_url,
                                                                    db_backend) -> None:
    ensure_schema(make_engine(account_url), build_account().metadata, build_account().migrations)
    now = datetime.now(UTC)
    engine = _filled(ledger_url, now)
    running, late = _open_requests(engine, now)
    console = serve(ledger_url, account_url=account_url)
    operator = console.login("otto")
    page = operator.get(f"/requests/{running.request_id}")
    assert 'action="/requests/' + running.request_id + '/extend"' in page.text
    token = form_token(page)

    # The first POST only confirms; nothing changes until confirm=yes.
    confirm = operator.post(f"/requests/{running.request_id}/extend",
                            data={"csrf": token, "reason": "records held by three installers", "months": "1"})
    assert "Extend the deadline of this request?" in confirm.text and "records held by three installers" in confirm.text
    assert _actions(engine) == []
    done = operator.post(f"/requests/{running.request_id}/extend",
                         data={"csrf": token, "reason": "records held by three installers", "months": "1",
                               "confirm": "yes"})
    assert done.status_code == 200 and "Request extended by 1 month(s)" in done.text
    assert "no address known" in done.text.lower()
    with session_factory(engine)() as session:
        row = session.get(ErasureRequest, running.request_id)
        assert (row.extension_months, row.extension_reason, row.extension_notice) == (
            1, "records held by three installers", "no_address")
        assert row.due_at == LedgerSettings().due_at(running.requested_at, 1)
        assert "extension" in session.scalars(select(ReceiptEntry.service).where(
            ReceiptEntry.request_id == running.request_id)).all()

    again = operator.post(f"/requests/{running.request_id}/extend",
                          data={"csrf": token, "reason": "more", "months": "2", "confirm": "yes"})
    assert again.status_code == 409 and "was already extended by 1 month(s)" in again.text
    too_late = operator.post(f"/requests/{late.request_id}/extend",
                             data={"csrf": token, "reason": "too late", "confirm": "yes"})
    assert too_late.status_code == 409 and "allows an extension only within it" in too_late.text
    assert "Traceback" not in again.text + too_late.text

    held = operator.post(f"/requests/{late.request_id}/hold",
                         data={"csrf": token, "reason": "court order 2026-T-1234", "confirm": "yes"})
    assert held.status_code == 200 and f"Legal hold 1 placed on user {late.user_id}" in held.text
    assert "Release the legal hold" in operator.get(f"/requests/{late.request_id}").text
    released = operator.post(f"/requests/{late.request_id}/release", data={"csrf": token, "confirm": "yes"})
    assert released.status_code == 200 and "Legal hold 1 released" in released.text
    with session_factory(engine)() as session:
        [hold] = session.scalars(select(LegalHold).where(LegalHold.user_id == late.user_id)).all()
        assert hold.reason == "court order 2026-T-1234" and hold.released_at is not None
    nothing_held = operator.post(f"/requests/{late.request_id}/release", data={"csrf": token, "confirm": "yes"})
    assert nothing_held.status_code == 409 and "is under no legal hold" in nothing_held.text

    assert [(who, action, target) for who, action, target, _ in _actions(engine)] == [
        ("otto", "request_extend", running.request_id), ("otto", "request_extend", running.request_id),
        ("otto", "request_extend", late.request_id), ("otto", "request_hold", late.request_id),
        ("otto", "request_release", late.request_id), ("otto", "request_release", late.request_id)]
    assert _actions(engine)[0][3] == {"user_id": running.user_id, "reason": "records held by three installers",
                                      "months": 1}
    engine.dispose()


def test_viewers_see_no_forms_and_bad_input_is_refused_plainly(serve, ledger_url, db_backend) -> None:
    now = datetime.now(UTC)
    engine = _filled(ledger_url, now)
    running, _ = _open_requests(engine, now)
    console = serve(ledger_url)
    viewer = console.login("vera")
    page = viewer.get(f"/requests/{running.request_id}")
    assert "/extend" not in page.text and "/hold" not in page.text and "need the operator role" in page.text
    token = form_token(viewer.get("/requests"))
    for action in ("extend", "hold", "release", "retry"):
        assert viewer.get(f"/requests/{running.request_id}/{action}").status_code == 403
        refused = viewer.post(f"/requests/{running.request_id}/{action}",
                              data={"csrf": token, "reason": "x", "confirm": "yes"})
        assert refused.status_code == 403 and "needs the operator role" in refused.text

    operator = console.login("otto")
    token = form_token(operator.get(f"/requests/{running.request_id}"))
    for action, data, words in (
            ("extend", {"reason": "  "}, "Give a reason"), ("hold", {}, "Give a reason"),
            ("extend", {"reason": "x", "months": "3"}, "1 or 2 further months"),
            ("retry", {"slice": "nope"}, "No slice &#39;nope&#39;")):
        resp = operator.post(f"/requests/{running.request_id}/{action}", data={"csrf": token, "confirm": "yes", **data})
        assert resp.status_code == 400 and words in resp.text and "Traceback" not in resp.text
    no_csrf = operator.post(f"/requests/{running.request_id}/hold", data={"reason": "x", "confirm": "yes"})
    assert no_csrf.status_code == 403
    assert operator.get("/requests/00000000-0000-4000-8000-000000000000/hold").status_code == 404
    assert _actions(engine) == []
    with session_factory(engine)() as session:
        row = session.get(ErasureRequest, running.request_id)
        assert row.extension_months is None or row.extension_months == 0
        assert session.scalars(select(LegalHold)).all() == []
    engine.dispose()


@pytest.mark.slow
def test_an_operator_retries_one_slice_or_every_unfinished_one(erasure_pipeline: Pipeline, serve, ledger_url,
                                                               db_backend) -> None:
    engine = _filled(ledger_url, datetime.now(UTC))
    with session_factory(engine)() as session:
        status = next(s for s in (request_status(session, r.request_id) for r in _started(session))
                      if len(s.missing) >= 2)
    request_id, missing = status.request_id, list(status.missing)
    erasure_pipeline.declare()
    console = serve(ledger_url, runtime=erasure_pipeline.settings)
    operator = console.login("otto")
    token = form_token(operator.get(f"/requests/{request_id}"))

    def queued() -> dict[str, int]:
        return {s: len(erasure_pipeline.take(f"{erasure_pipeline.namespace}.{s}")) for s in missing}

    queued()
    one = operator.post(f"/requests/{request_id}/retry", data={"csrf": token, "slice": missing[0], "confirm": "yes"})
    assert one.status_code == 200 and f"Re-sent to {missing[0]} (1 message(s))" in one.text
    assert queued() == {s: int(s == missing[0]) for s in missing}
    every = operator.post(f"/requests/{request_id}/retry", data={"csrf": token, "confirm": "yes"})
    assert every.status_code == 200 and f"({len(missing)} message(s))" in every.text
    assert queued() == dict.fromkeys(missing, 1)
    reported = next(s for s in ("account", "installer_sharing", "payment", "bookkeeping", "newsletter")
                    if s not in missing)
    refused = operator.post(f"/requests/{request_id}/retry", data={"csrf": token, "slice": reported, "confirm": "yes"})
    assert refused.status_code == 409 and "has already reported" in refused.text
    assert [(a, t, d.get("slice")) for _, a, t, d in _actions(engine)] == [
        ("request_retry", request_id, missing[0]), ("request_retry", request_id, None),
        ("request_retry", request_id, reported)]
    engine.dispose()
