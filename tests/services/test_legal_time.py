"""Extensions (GDPR Art. 12(3)) and legal holds, through the `erasure` commands, on the ledger and both databases."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest
from click.testing import CliRunner, Result
from sqlalchemy.orm import Session

from schemas import SLICE_SERVICES, UserDeregistered
from schemas.examples import example_deregistration, example_slice_report
from services.account.accounts import register_user
from services.account.main import build as build_account
from services.cli.main import cli
from services.common.deadline import legal_deadline
from services.ledger import queries
from services.ledger.commands import receipt_command, status_command
from services.ledger.main import build
from services.sandbox.server import Sandbox
from shared.codec import Inbound, decode_delivery
from shared.db import ensure_schema, make_engine
from shared.testing import Pipeline, wait_until
from shared.testing.memory import MemoryPipeline, MemoryService

ADDRESS = "anna.lindqvist@kund.loggamera.se"


@pytest.fixture
def ledger(erasure_memory: MemoryPipeline, monkeypatch: pytest.MonkeyPatch) -> MemoryService:
    url = erasure_memory.database_url("ledger")
    monkeypatch.setenv("ERASURE_LEDGER_DATABASE_URL", url)
    return erasure_memory.start(build(), url)


@pytest.fixture
def account_url(erasure_memory: MemoryPipeline, monkeypatch: pytest.MonkeyPatch, sandbox: Sandbox) -> str:
    """The account service's database (migrated, empty); its mails go to the sandbox."""
    url = erasure_memory.database_url("account")
    service = build_account()
    engine = make_engine(url)
    ensure_schema(engine, service.metadata, service.migrations)
    engine.dispose()
    monkeypatch.setenv("ERASURE_ACCOUNT_DATABASE_URL", url)
    monkeypatch.setenv("ERASURE_ACCOUNT_SMTP_PORT", str(sandbox.smtp_port))
    return url


def _register(account_url: str, user_id: str) -> None:
    engine = make_engine(account_url)
    with Session(engine) as session, session.begin():
        register_user(session, user_id=user_id, name="Anna Lindqvist", email=ADDRESS)
    engine.dispose()


def _request(pipeline: MemoryPipeline, ledger: MemoryService, **fields: Any) -> UserDeregistered:
    request = example_deregistration(f"u-{uuid4().hex[:12]}", request_id=str(uuid4()),
                                     requested_at=fields.pop("requested_at", datetime.now(UTC)), **fields)
    for sent in pipeline.publish(request):
        ledger.wait_handled(sent.event_id)
    return request


def _report_all(pipeline: MemoryPipeline, ledger: MemoryService, request: UserDeregistered) -> None:
    reports = [example_slice_report(s, request.user_id, request_id=str(request.request_id),
                                    reported_at=datetime.now(UTC)) for s in SLICE_SERVICES]
    for sent in pipeline.publish(*reports):
        ledger.wait_handled(sent.event_id)


def _erasure(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def _status(ledger: MemoryService, request: UserDeregistered) -> queries.RequestStatus:
    with Session(ledger.engine) as session:
        found = queries.request_status(session, str(request.request_id))
    assert found is not None
    return found


def _services(ledger: MemoryService, request: UserDeregistered) -> list[str]:
    with Session(ledger.engine) as session:
        return [e.service for e in queries.receipt_entries(session, str(request.request_id))]


def test_an_extension_moves_the_deadline_mails_the_reason_and_is_in_the_receipt(
        erasure_memory: MemoryPipeline, db_backend: str, ledger: MemoryService, account_url: str,
        sandbox: Sandbox) -> None:
    request = _request(erasure_memory, ledger)
    _register(account_url, request.user_id)
    reason = "records held by three installers must be traced"

    result = _erasure("extend", str(request.request_id), "--reason", reason, "--months", "2")
    assert result.exit_code == 0, result.output
    status = _status(ledger, request)
    assert status.due_at == legal_deadline(request.requested_at, 3)
    assert (status.extension_months, status.extension_reason, status.extension_notice) == (2, reason, "mailed")
    [mail] = sandbox.mails()
    assert mail["to"] == [ADDRESS]
    assert reason in mail["body"] and str(request.request_id) in mail["body"]
    assert f"{status.due_at:%Y-%m-%d %H:%M} UTC" in mail["body"]
    assert "extended:     by 2 month(s)" in status_command(None, request_id=str(request.request_id))[0]

    again = _erasure("extend", str(request.request_id), "--reason", "more")
    assert again.exit_code == 2 and "already extended" in again.output
    assert len(sandbox.mails()) == 1

    _report_all(erasure_memory, ledger, request)
    assert _status(ledger, request).status == "complete"
    assert _services(ledger, request) == ["extension", *SLICE_SERVICES, "keys"]
    text, code = receipt_command(None, str(request.request_id), verify=True, as_json=True)
    assert code == 0, text
    [extension] = [json.loads(e["payload"]) for e in json.loads(text)["entries"] if e["service"] == "extension"]
    assert (extension["months"], extension["reason"]) == (2, reason)


def test_an_extension_after_the_first_month_is_refused(
        erasure_memory: MemoryPipeline, db_backend: str, ledger: MemoryService, account_url: str,
        sandbox: Sandbox) -> None:
    request = _request(erasure_memory, ledger, requested_at=datetime.now(UTC) - timedelta(days=40))
    _register(account_url, request.user_id)
    result = _erasure("extend", str(request.request_id), "--reason", "too late")
    assert result.exit_code == 2
    assert "GDPR Art. 12(3) allows an extension only within it" in result.output
    assert _status(ledger, request).due_at == legal_deadline(request.requested_at)
    assert sandbox.mails() == []
    assert _erasure("extend", str(uuid4()), "--reason", "x").exit_code == 2
    assert _erasure("extend", str(request.request_id), "--reason", "x", "--months", "3").exit_code == 2


def test_an_extension_without_a_known_address_records_that_none_was_known(
        erasure_memory: MemoryPipeline, ledger: MemoryService, account_url: str, sandbox: Sandbox) -> None:
    request = _request(erasure_memory, ledger)
    result = _erasure("extend", str(request.request_id), "--reason", "many systems", "--months", "1")
    assert result.exit_code == 0, result.output
    assert "no address known" in result.output
    status = _status(ledger, request)
    assert (status.extension_notice, status.due_at) == ("no_address", legal_deadline(request.requested_at, 2))
    assert sandbox.mails() == []


def test_a_held_request_past_its_deadline_shows_as_held_until_released(
        erasure_memory: MemoryPipeline, db_backend: str, ledger: MemoryService) -> None:
    request = _request(erasure_memory, ledger, requested_at=datetime.now(UTC) - timedelta(days=45))
    assert status_command(None, overdue=True)[1] == 1

    result = _erasure("hold", "--user", request.user_id, "--reason", "court order 2026-T-1234")
    assert result.exit_code == 0, result.output
    data, code = status_command(None, overdue=True, as_json=True)
    assert code == 0, "a held request alerts no one"
    assert [(d["request_id"], d["why"]) for d in json.loads(data)] == [(str(request.request_id), "held")]
    assert "legal hold:   court order 2026-T-1234" in status_command(None, request_id=str(request.request_id))[0]
    with Session(ledger.engine) as session:
        assert queries.state_counts(session, datetime.now(UTC), timedelta(days=1), timedelta(days=20))["held"] == 1
    again = _erasure("hold", "--user", request.user_id, "--reason", "another")
    assert again.exit_code == 2 and "already under a legal hold" in again.output

    assert _erasure("release", "--user", request.user_id).exit_code == 0
    assert status_command(None, overdue=True)[1] == 1
    assert _erasure("release", "--user", request.user_id).exit_code == 2
    assert _services(ledger, request) == ["hold 1", "release 1"]

    _report_all(erasure_memory, ledger, request)
    text, code = receipt_command(None, str(request.request_id), verify=True)
    assert code == 0, text
    assert _services(ledger, request) == ["hold 1", "release 1", *SLICE_SERVICES, "keys"]


# ---- erasure retry and status --failures: on the real broker --------------------------------------------------

@pytest.fixture
def broker_ledger(erasure_pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, str]:
    """The ledger consuming on the real broker, and its database URL; the commands point at both."""
    url = erasure_pipeline.database_url("ledger")
    monkeypatch.setenv("ERASURE_LEDGER_DATABASE_URL", url)
    monkeypatch.setenv("ERASURE_AMQP_URL", erasure_pipeline.settings.amqp_url)
    monkeypatch.setenv("ERASURE_NAMESPACE", erasure_pipeline.namespace)
    return erasure_pipeline.start(build(), url), url


def test_retry_resends_the_request_to_its_unfinished_slices_only(
        erasure_pipeline: Pipeline, db_backend: str, broker_ledger: tuple[Any, str]) -> None:
    ledger, url = broker_ledger
    request = example_deregistration(f"u-{uuid4().hex[:12]}", request_id=str(uuid4()),
                                     requested_at=datetime.now(UTC))
    reports = [example_slice_report(s, request.user_id, request_id=str(request.request_id),
                                    reported_at=datetime.now(UTC)) for s in SLICE_SERVICES[:3]]
    [original, *sent] = erasure_pipeline.publish(request, *reports)
    for message in (original, *sent):
        ledger.wait_handled(message.event_id)

    def queued() -> dict[str, list[Inbound]]:
        """Each slice's queued events, decoded as the runtime decodes them: signature, and the effective routing
        key (the x-original-routing-key of a message on the default exchange) against the event's type."""
        settings = erasure_pipeline.settings
        found: dict[str, list[Inbound]] = {}
        for s in SLICE_SERVICES:
            messages = erasure_pipeline.take(f"{erasure_pipeline.namespace}.{s}")
            for m in messages:
                if not m.delivery_info.get("exchange"):  # a retry, through the default exchange
                    assert m.headers["x-original-routing-key"] == original.routing_key
            found[s] = [decode_delivery(m, keyring=settings.keyring, max_bytes=settings.max_body_bytes,
                                        max_clock_skew=None) for m in messages]
        return found

    queued()  # the slices are not running: drop the first deliveries
    result = _erasure("retry", str(request.request_id))
    assert result.exit_code == 0, result.output
    resent = queued()
    assert {s: len(found) for s, found in resent.items()} == {
        "account": 0, "installer_sharing": 0, "payment": 0, "bookkeeping": 1, "newsletter": 1}
    for inbound in resent["bookkeeping"] + resent["newsletter"]:
        assert inbound.data == request, "the request's own event: same request id, reason and time of receipt"
        assert inbound.envelope.id != original.event_id, "a fresh event id, so each slice's inbox runs it again"

    assert _erasure("retry", str(request.request_id), "--slice", "newsletter").exit_code == 0
    assert {s: len(found) for s, found in queued().items()}["newsletter"] == 1
    refused = _erasure("retry", str(request.request_id), "--slice", "account")
    assert refused.exit_code == 2 and "already reported" in refused.output
    assert _erasure("retry", str(request.request_id), "--slice", "nope").exit_code == 2
    assert all(not found for found in queued().values())
    assert status_command(url, request_id=str(request.request_id))[1] == 0


def test_an_extension_with_the_account_database_away_is_kept_and_the_failed_mail_recorded(
        erasure_memory: MemoryPipeline, ledger: MemoryService, monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    monkeypatch.setenv("ERASURE_ACCOUNT_DATABASE_URL", f"sqlite:///{tmp_path / 'nowhere' / 'account.db'}")
    request = _request(erasure_memory, ledger)
    result = _erasure("extend", str(request.request_id), "--reason", "many systems", "--months", "1")
    assert result.exit_code == 1
    assert "account database did not answer" in result.output and "Traceback" not in result.output
    status = _status(ledger, request)
    assert (status.extension_months, status.extension_notice) == (1, "mail_failed")


def test_status_with_failures_names_the_service_and_its_last_error(
        erasure_pipeline: Pipeline, db_backend: str, broker_ledger: tuple[Any, str]) -> None:
    ledger, _ = broker_ledger
    request = example_deregistration(f"u-{uuid4().hex[:12]}", request_id=str(uuid4()),
                                     requested_at=datetime.now(UTC))
    [sent] = erasure_pipeline.publish(request)
    ledger.wait_handled(sent.event_id)
    assert "Failures: no dead letters of this request." in _erasure(
        "status", str(request.request_id), "--failures").output
    # A report naming another user is refused for good by the ledger: a dead letter of this request.
    erasure_pipeline.publish(example_slice_report("newsletter", "u-someone-else", request_id=str(request.request_id)))
    dead = f"{erasure_pipeline.namespace}.ledger.dead"
    wait_until(lambda: erasure_pipeline.depth(dead) == 1, what="the dead letter")
    result = _erasure("status", str(request.request_id), "--failures")
    assert result.exit_code == 0, result.output
    failures = result.output.split("Failures:")[1]
    assert "ledger" in failures and "permanent" in failures and "u-someone-else" in failures
    assert "none: dead-lettered" in failures
