"""Erasure requests by e-mail ("Unregister account: <address>"), end to end through the SMTP sink."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session
from structlog.testing import capture_logs

from schemas.examples import example_completion, example_purchase
from services.account.accounts import new_session_token, register_user
from services.account.intake import IntakeRejected, accept_request
from services.account.mails import CONFIRM_SUBJECT, DONE_SUBJECT, NOTICE_CATEGORY
from services.account.main import build
from services.account.models import CompletedErasure, CompletionNotice, IntakeRequest
from services.account.publishing import account_database
from services.account.settings import AccountSettings
from services.common.deadline import legal_deadline
from services.sandbox import Sandbox
from shared.keys import Subject, notice_subject
from shared.testing import Pipeline, RunningService, wait_until
from shared.testing.ports import free_port
from shared.testing.scan import personal_data_hits
from tests.flows import (
    INTAKE_SECRET,
    buy,
    code_in,
    completed,
    count_rows,
    deregistrations,
    mails_to,
    point_at_sandbox,
    raw_mail,
    run_cli,
    start_all,
    traces,
    url_of,
)

ANNA = "anna.lindqvist@kund.loggamera.se"
SUBJECT = f"Unregister account: {ANNA}"


@pytest.fixture
def sandbox(monkeypatch: pytest.MonkeyPatch) -> Iterator[Sandbox]:
    with Sandbox() as running:
        point_at_sandbox(running, monkeypatch)
        yield running


@pytest.fixture
def account(erasure_pipeline: Pipeline, sandbox: Sandbox) -> RunningService:
    """The account service alone, with Anna registered and its HTTP routes on a free port."""
    running = erasure_pipeline.start(build(), http_port=0)
    with Session(running.engine) as session, session.begin():
        register_user(session, user_id="u-anna", name="Anna Lindqvist", email=ANNA)
    return running


def _http(running: RunningService) -> httpx.Client:
    return httpx.Client(base_url=f"http://127.0.0.1:{running.runner.http_port}", timeout=10)


def _mail_in(running: RunningService, raw: bytes, secret: str | None = INTAKE_SECRET) -> httpx.Response:
    headers = {"X-Intake-Secret": secret} if secret is not None else {}
    with _http(running) as client:
        return client.post("/intake/email", content=raw, headers={**headers, "Content-Type": "message/rfc822"})


def _confirm(running: RunningService, code: str) -> httpx.Response:
    with _http(running) as client:
        return client.post("/intake/confirm", params={"token": code})


def _code_for(sandbox: Sandbox, address: str = ANNA) -> str:
    [mail] = wait_until(lambda: mails_to(sandbox, address, CONFIRM_SUBJECT), what="the confirmation mail")
    return code_in(mail)


def _nothing_published(pipeline: Pipeline, running: RunningService) -> None:
    assert count_rows(running.engine, "outbox") == 0
    assert deregistrations(pipeline) == []


# ---- the whole flow -----------------------------------------------------------------------------------
def test_emailed_request_is_confirmed_erased_everywhere_and_answered_with_what_was_kept(
    erasure_pipeline: Pipeline, db_backend: str, sandbox: Sandbox
) -> None:
    running = start_all(erasure_pipeline)
    purchase = example_purchase("u-mail")
    buy(erasure_pipeline, sandbox, running, purchase)
    email = purchase.customer.email
    accepted = _mail_in(running["account"], raw_mail(f"Anna <{email.upper()}>", f"  UNREGISTER account:  {email} "))
    assert accepted.status_code == 202, accepted.text
    request_id = accepted.json()["request_id"]

    code = _code_for(sandbox, email)
    with _http(running["account"]) as client:
        page = client.get("/intake/confirm", params={"token": code})
    assert page.status_code == 200 and 'method="post"' in page.text
    assert count_rows(running["account"].engine, "outbox") == 0, "opening the link alone confirms nothing"
    assert _confirm(running["account"], code).json() == {"status": "confirmed", "request_id": request_id}

    status = completed(running["ledger"], request_id)
    assert status.reason == "user_request"
    account_slice = {s.service: s for s in status.slices}["account"]
    [kept] = account_slice.retained
    due = status.due_at  # the legal deadline: one calendar month on a Swedish working day
    assert due == legal_deadline(status.requested_at)
    assert kept == {"category": NOTICE_CATEGORY, "held_by": "Loggamera",
                    "retain_until": str((due + timedelta(days=7)).date()),
                    "legal_basis": "GDPR Art. 12(3) — informing the data subject of the action taken"}

    [done] = wait_until(lambda: mails_to(sandbox, email, DONE_SUBJECT), what="the completion mail")
    kept_by_law = [r for s in status.slices for r in s.retained if r["category"] != NOTICE_CATEGORY]
    assert {r["held_by"] for r in kept_by_law} >= {"Visma eAccounting", "PayPal", "Loggamera"}
    for item in kept_by_law:
        assert f"- {item['category']}, kept by {item['held_by']} until {item['retain_until']}" in done["body"]
    assert NOTICE_CATEGORY not in done["body"], "the address itself is not listed as kept: it is deleted"
    wait_until(lambda: count_rows(running["account"].engine, "completion_notices") == 0, what="notice deleted")
    for name, service in running.items():
        assert personal_data_hits(service.engine, traces(purchase)) == [], f"{name} still holds personal data"


def test_cli_takes_the_mail_and_confirms_it_without_the_account_service_running(
    erasure_pipeline: Pipeline, sandbox: Sandbox, tmp_path: Path
) -> None:
    erasure_pipeline.declare()
    url = f"sqlite:///{tmp_path / 'account.db'}"
    with account_database(url) as (_engine, sessions), sessions() as session, session.begin():
        register_user(session, user_id="u-anna", name="Anna Lindqvist", email=ANNA)
    received = run_cli(erasure_pipeline, "intake", "email", "-", "--json", stdin=raw_mail(ANNA, SUBJECT),
                       ERASURE_ACCOUNT_DATABASE_URL=url)
    assert received.exit_code == 0, received.output
    code = _code_for(sandbox)
    confirmed = run_cli(erasure_pipeline, "intake", "confirm", code, ERASURE_ACCOUNT_DATABASE_URL=url)
    assert confirmed.exit_code == 0, confirmed.output
    [event] = wait_until(lambda: deregistrations(erasure_pipeline), what="the deregistration on the broker")
    assert (event["user_id"], event["reason"], event["replay"]) == ("u-anna", "user_request", False)
    with account_database(url) as (engine, _sessions):
        assert count_rows(engine, "outbox") == 0, "the CLI relayed what it staged"
        assert personal_data_hits(engine, [code]) == [], "only the hash of the code is stored"


# ---- refusals -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", [
    ("Mallory <mallory@example.net>", SUBJECT, "sender_mismatch"),
    (ANNA, f"Please unregister my account: {ANNA}", "not_a_request"),
    (ANNA, f"Unregister account: {ANNA} now", "not_a_request"),
    ("nobody@kund.loggamera.se", "Unregister account: nobody@kund.loggamera.se", "unknown_account"),
])
def test_spoofed_wrong_or_unknown_requests_are_refused_and_nothing_is_published(
    erasure_pipeline: Pipeline, sandbox: Sandbox, account: RunningService, case: tuple[str, str, str]
) -> None:
    sender, subject, reason = case
    raw = raw_mail(sender, subject)
    with capture_logs() as logs:
        refused = _mail_in(account, raw)
    assert refused.status_code == 422
    assert refused.json()["error"] == reason
    cli = run_cli(erasure_pipeline, "intake", "email", "-", stdin=raw, ERASURE_ACCOUNT_DATABASE_URL=url_of(account))
    assert cli.exit_code == 2 and f"refused ({reason})" in cli.output
    for text in (repr(logs), cli.output, refused.text):
        assert "@example" not in text, "no address in logs or answers"
    assert sandbox.mails() == []
    assert count_rows(account.engine, "intake_requests") == 0
    _nothing_published(erasure_pipeline, account)


def test_webhook_without_the_shared_secret_is_refused(erasure_pipeline: Pipeline, account: RunningService) -> None:
    assert _mail_in(account, raw_mail(ANNA, SUBJECT), secret=None).status_code == 401
    assert _mail_in(account, raw_mail(ANNA, SUBJECT), secret="guess").status_code  # noqa: S106 == 401
    assert count_rows(account.engine, "intake_requests") == 0


@pytest.mark.parametrize(("results", "accepted"), [
    ([], False),
    (["mx.attacker.example; dmarc=pass header.from=example.com"], False),
    (["mx.loggamera.se; spf=pass; dmarc=fail (p=reject) header.from=example.com"], False),
    (["mx.loggamera.se; dkim=pass; dmarc=pass header.from=elsewhere.example"], False),
    (["mx.loggamera.se 1; dkim=pass header.d=kund.loggamera.se; dmarc=pass (p=none) header.from=kund.loggamera.se"],
     True),
])
def test_required_dmarc_trusts_only_our_own_servers_pass(tmp_path: Path, results: list[str], accepted: bool) -> None:
    settings = AccountSettings(intake_require_dmarc=True, intake_authserv_id="mx.loggamera.se")
    raw = raw_mail(ANNA, SUBJECT)
    for header in results:
        raw = f"Authentication-Results: {header}\n".encode() + raw
    with account_database(f"sqlite:///{tmp_path / 'a.db'}") as (_engine, sessions), \
            sessions() as session, session.begin():
        register_user(session, user_id="u-anna", name="Anna Lindqvist", email=ANNA)
        if accepted:
            assert accept_request(session, raw, settings).user_id == "u-anna"
        else:
            with pytest.raises(IntakeRejected, match="dmarc=pass"):
                accept_request(session, raw, settings)


# ---- the confirmation code ----------------------------------------------------------------------------
def test_spent_expired_and_forged_codes_do_nothing(
    erasure_pipeline: Pipeline, sandbox: Sandbox, account: RunningService
) -> None:
    with Session(account.engine) as session, session.begin():
        register_user(session, user_id="u-erik", name="Erik Johansson", email="erik@kund.loggamera.se")
    assert _mail_in(account, raw_mail(ANNA, SUBJECT)).status_code == 202
    code = _code_for(sandbox)
    assert _confirm(account, code).status_code == 200
    [event] = wait_until(lambda: deregistrations(erasure_pipeline), what="one deregistration")
    assert event["user_id"] == "u-anna"

    assert _confirm(account, code).json()["error"] == "token_used"
    reused = run_cli(erasure_pipeline, "intake", "confirm", code, ERASURE_ACCOUNT_DATABASE_URL=url_of(account))
    assert reused.exit_code == 2 and "already been used" in reused.output

    erik = "erik@kund.loggamera.se"
    assert _mail_in(account, raw_mail(erik, f"Unregister account: {erik}")).status_code == 202
    late = _code_for(sandbox, "erik@kund.loggamera.se")
    with account.engine.begin() as conn:
        conn.execute(update(IntakeRequest).where(IntakeRequest.user_id == "u-erik")
                     .values(expires_at=datetime.now(UTC) - timedelta(seconds=1)))
    expired = _confirm(account, late)
    assert (expired.status_code, expired.json()["error"]) == (410, "token_expired")

    forged = new_session_token()  # the form a genuine code has
    assert _confirm(account, forged).status_code == 404
    cli = run_cli(erasure_pipeline, "intake", "confirm", forged, ERASURE_ACCOUNT_DATABASE_URL=url_of(account))
    assert cli.exit_code == 2 and "not valid" in cli.output
    assert deregistrations(erasure_pipeline) == [], "nothing but the first confirmation was published"
    assert count_rows(account.engine, "outbox") == 0


# ---- the completion notice ----------------------------------------------------------------------------
def _notice(running: RunningService, request_id: str, keep_until: datetime) -> None:
    with running.engine.begin() as conn:
        conn.execute(CompletionNotice.__table__.insert().values(
            request_id=request_id, email=Subject(ANNA, notice_subject(request_id)), keep_until=keep_until))


def test_completion_notice_outlasts_a_relay_outage_and_is_sent_once(
    erasure_pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()
    monkeypatch.setenv("ERASURE_ACCOUNT_SMTP_PORT", str(port))
    running = erasure_pipeline.start(build())
    request_id = str(uuid.uuid4())
    _notice(running, request_id, datetime.now(UTC) + timedelta(days=30))
    completion = example_completion("u-anna", request_id=request_id)
    with capture_logs() as logs:
        [first] = erasure_pipeline.publish(completion)
        wait_until(lambda: any(entry["event"] == "retry scheduled" for entry in logs), what="a retry")
    assert count_rows(running.engine, "completed_erasures") == 0, "nothing is recorded while the mail waits"
    with Sandbox(smtp_port=port) as relay:  # the relay comes back while the event waits in a delay tier
        running.wait_handled(first.event_id, timeout=15)
        [again] = erasure_pipeline.publish(completion)
        running.wait_handled(again.event_id)
        assert [m["subject"] for m in relay.mails()] == [DONE_SUBJECT]
    assert count_rows(running.engine, "completion_notices") == 0
    with running.engine.connect() as conn:
        assert conn.execute(select(CompletedErasure.request_id)).scalars().all() == [request_id]


def test_notice_past_its_keep_until_is_deleted_unsent_and_replays_send_nothing(
    erasure_pipeline: Pipeline, sandbox: Sandbox
) -> None:
    running = erasure_pipeline.start(build())
    stale, replayed = str(uuid.uuid4()), str(uuid.uuid4())
    _notice(running, stale, datetime.now(UTC) - timedelta(minutes=1))
    _notice(running, replayed, datetime.now(UTC) + timedelta(days=30))
    sent = erasure_pipeline.publish(example_completion("u-anna", request_id=stale),
                                    example_completion("u-anna", request_id=replayed, replay=True))
    for message in sent:
        running.wait_handled(message.event_id)
    assert sandbox.mails() == []
    with running.engine.connect() as conn:
        assert conn.execute(select(CompletionNotice.request_id)).scalars().all() == [replayed]
    cleaned = run_cli(erasure_pipeline, "intake", "cleanup", "--json", ERASURE_ACCOUNT_DATABASE_URL=url_of(running))
    assert cleaned.exit_code == 0 and '"notices": 0' in cleaned.stdout


def test_emailed_access_request_is_confirmed_like_an_erasure_and_answered_with_an_export(
    erasure_pipeline: Pipeline, db_backend: str, sandbox: Sandbox
) -> None:
    from services.account.mails import ACCESS_CONFIRM_SUBJECT
    from services.ledger.access import access_status

    running = start_all(erasure_pipeline)
    purchase = example_purchase("u-access-mail")
    buy(erasure_pipeline, sandbox, running, purchase)
    email = purchase.customer.email
    accepted = _mail_in(running["account"], raw_mail(f"Anna <{email}>", f"Access request: <{email}>"))
    assert accepted.status_code == 202, accepted.text
    request_id = accepted.json()["request_id"]
    [mail] = wait_until(lambda: mails_to(sandbox, email, ACCESS_CONFIRM_SUBJECT), what="the confirmation mail")
    assert "a copy of the personal data" in mail["body"] and "nothing will be sent" in mail["body"]
    assert count_rows(running["account"].engine, "outbox") == 0, "nothing is asked of the slices before confirming"
    assert _confirm(running["account"], code_in(mail)).json() == {"status": "confirmed", "request_id": request_id}

    def assembled():
        with Session(running["ledger"].engine) as session:
            found = access_status(session, request_id)
            return found if found is not None and found.export_available else None

    status = wait_until(assembled, timeout=60, what="the access export")
    assert status.user_id == "u-access-mail" and len(status.answered) == 5
    assert deregistrations(erasure_pipeline) == [], "an access request erases nothing"
    with Session(running["account"].engine) as session:
        assert session.get(IntakeRequest, request_id).kind == "access"
