"""The ledger on the in-memory transport and both databases: every erasure is tracked to completion, with a receipt."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest
from sqlalchemy import event, select, update
from sqlalchemy.orm import Session

from schemas import SLICE_SERVICES, ErasureCompleted, ErasureSliceReported, UserDeregistered
from schemas.examples import example_deregistration, example_slice_report
from services.common.deadline import legal_deadline
from services.ledger import queries
from services.ledger.commands import receipt_command, status_command
from services.ledger.main import build
from services.ledger.models import ReceiptEntry, SliceReport, metadata
from services.ledger.receipt import Entry, canonical, entry_hash, link, opening_hash, verify_chain
from shared.testing import Pipeline, wait_until
from shared.testing.memory import MemoryPipeline, MemoryService


def _deregistration(**overrides: Any) -> UserDeregistered:
    """A fresh request for a fresh user, received now."""
    fields = {"request_id": str(uuid4()), "requested_at": datetime.now(UTC), **overrides}
    return example_deregistration(f"u-{uuid4().hex[:12]}", **fields)


def _reports(request: UserDeregistered, services: Iterable[str] = SLICE_SERVICES) -> list[ErasureSliceReported]:
    return [example_slice_report(s, request.user_id, request_id=str(request.request_id), replay=request.replay,
                                 reported_at=datetime.now(UTC))
            for s in services]


def _publish_and_wait(pipeline: MemoryPipeline, running: MemoryService, *events: Any) -> None:
    for sent in pipeline.publish(*events):
        running.wait_handled(sent.event_id)


class Completions:
    """ErasureCompleted events read from the account queue (bound to them), kept across reads."""

    def __init__(self, pipeline: MemoryPipeline | Pipeline) -> None:
        self.pipeline = pipeline
        self.seen: list[dict[str, Any]] = []

    def read(self) -> list[dict[str, Any]]:
        for message in self.pipeline.take(f"{self.pipeline.namespace}.account"):
            envelope = json.loads(message.body)
            if envelope["type"] == ErasureCompleted.event_type:
                self.seen.append(envelope["data"])
        return self.seen

    def of(self, request: UserDeregistered) -> list[dict[str, Any]]:
        return [c for c in self.read() if c["request_id"] == str(request.request_id)]

    def wait_one(self, request: UserDeregistered) -> dict[str, Any]:
        wait_until(lambda: self.of(request), what=f"ErasureCompleted for {request.request_id}")
        time.sleep(0.3)  # give a wrongly repeated completion the time to show up
        [completion] = self.of(request)
        return completion


def _status(running: MemoryService, request: UserDeregistered) -> queries.RequestStatus:
    with Session(running.engine) as session:
        status = queries.request_status(session, str(request.request_id))
    assert status is not None
    return status


def _verify(running: MemoryService, request: UserDeregistered) -> queries.VerifyResult:
    with Session(running.engine) as session:
        result = queries.verify_receipt(session, str(request.request_id))
    assert result is not None
    return result


@pytest.fixture
def ledger_url(erasure_memory: MemoryPipeline) -> str:
    return erasure_memory.database_url("ledger")


@pytest.fixture
def ledger(erasure_memory: MemoryPipeline, ledger_url: str) -> MemoryService:
    return erasure_memory.start(build(), ledger_url)


# ---- the receipt chain as pure functions ------------------------------------------------------------------

def _chain(payloads: list[dict[str, Any]], opening: str) -> list[Entry]:
    entries, prev = [], opening
    for seq, payload in enumerate(payloads, start=1):
        entries.append(link(prev, seq, payload["service"], payload))
        prev = entries[-1].entry_hash
    return entries


OPENING = opening_hash("r-1", "u-1", "user_request", datetime(2026, 4, 14, 8, tzinfo=UTC))
PAYLOADS = [{"service": s, "outcome": "erased", "erased": ["x"]} for s in SLICE_SERVICES]


def test_entry_hash_is_sha256_of_prev_hash_and_canonical_payload() -> None:
    payload = {"service": "payment", "b": [1, 2], "a": "Bokföringslagen"}
    assert canonical(payload) == '{"a":"Bokföringslagen","b":[1,2],"service":"payment"}'
    expected = hashlib.sha256(("0" * 64 + canonical(payload)).encode()).hexdigest()
    assert entry_hash("0" * 64, payload) == expected == entry_hash("0" * 64, canonical(payload))


def test_intact_chain_verifies_against_its_opening_record_and_head() -> None:
    entries = _chain(PAYLOADS, OPENING)
    result = verify_chain(entries, opening=OPENING, head=entries[-1].entry_hash)
    assert result.ok and result.broken_at_seq is None


def test_changed_payload_breaks_the_chain_at_that_entry() -> None:
    entries = _chain(PAYLOADS, OPENING)
    forged = entries[2].payload.replace('"erased"', '"nothing_held"')
    entries[2] = Entry(3, entries[2].service, forged, entries[2].prev_hash, entries[2].entry_hash)
    result = verify_chain(entries, opening=OPENING)
    assert not result.ok and result.broken_at_seq == 3 and "hash" in result.reason


def test_rehashed_forgery_is_caught_by_the_next_link_or_the_receipt_hash() -> None:
    entries = _chain(PAYLOADS, OPENING)
    head = entries[-1].entry_hash
    forged = _chain([*PAYLOADS[:3], {**PAYLOADS[3], "outcome": "nothing_held", "erased": []}], OPENING)[3]
    result = verify_chain([*entries[:3], forged, entries[4]], opening=OPENING, head=head)
    assert (result.ok, result.broken_at_seq) == (False, 5)
    rebuilt = _chain([*PAYLOADS[:3], {**PAYLOADS[3], "outcome": "nothing_held", "erased": []}, PAYLOADS[4]],
                     OPENING)
    assert verify_chain(rebuilt, opening=OPENING, head=head).broken_at_seq == 5


def test_chain_from_another_opening_record_fails_at_its_first_entry() -> None:
    other = opening_hash("r-1", "u-2", "user_request", datetime(2026, 4, 14, 8, tzinfo=UTC))
    result = verify_chain(_chain(PAYLOADS, other), opening=OPENING)
    assert (result.ok, result.broken_at_seq) == (False, 1)


def test_missing_or_repeated_entries_break_the_chain() -> None:
    entries = _chain(PAYLOADS, OPENING)
    assert verify_chain([entries[0], *entries[2:]], opening=OPENING).broken_at_seq == 3
    twice = _chain([*PAYLOADS, PAYLOADS[0]], OPENING)
    assert verify_chain(twice, opening=OPENING).broken_at_seq == 6


# ---- the ledger service ----------------------------------------------------------------------------------

def test_request_completes_once_all_five_slices_have_reported(
        erasure_memory: MemoryPipeline, db_backend: str, ledger: MemoryService) -> None:
    completions = Completions(erasure_memory)
    request = _deregistration()
    _publish_and_wait(erasure_memory, ledger, request)
    opened = _status(ledger, request)
    assert (opened.status, opened.reason, opened.opened_by) == ("open", "user_request", "deregistration")
    assert opened.due_at == legal_deadline(request.requested_at)
    assert opened.missing == SLICE_SERVICES

    reports = _reports(request)
    _publish_and_wait(erasure_memory, ledger, *reports[:4])
    assert _status(ledger, request).missing == ("newsletter",)
    assert completions.of(request) == []
    _publish_and_wait(erasure_memory, ledger, reports[4])

    status = _status(ledger, request)
    assert status.status == "complete" and status.missing == ()
    assert {s.service: s.outcome for s in status.slices} == {r.service: r.outcome for r in reports}
    assert _verify(ledger, request).ok
    completion = completions.wait_one(request)
    assert completion["user_id"] == request.user_id
    assert completion["receipt_hash"] == status.receipt_hash
    assert completion["replay"] is False
    assert datetime.fromisoformat(completion["completed_at"]) == status.completed_at
    assert max(r.reported_at for r in reports) <= status.completed_at <= datetime.now(UTC)
    kept = {(c["category"], c["held_by"], c["retain_until"]) for c in completion["retained"]}
    assert kept == {("payment transaction record", "PayPal", "2033-12-31"),
                    ("sales transaction details", "Visma eAccounting", "2033-12-31")}


def test_duplicate_reports_are_ignored_and_the_first_one_stands(
        erasure_memory: MemoryPipeline, db_backend: str, ledger: MemoryService) -> None:
    completions = Completions(erasure_memory)
    request = _deregistration()
    first, *rest = _reports(request)
    different = example_slice_report("account", request.user_id, request_id=str(request.request_id),
                                     erased=["contact details"])
    _publish_and_wait(erasure_memory, ledger, request, first, first, different, *rest)
    status = _status(ledger, request)
    assert status.status == "complete"
    assert status.slices[0].report["erased"] == list(first.erased)
    with Session(ledger.engine) as session:
        services = [e.service for e in queries.receipt_entries(session, str(request.request_id))]
        assert len(services) == 6 and services[-1] == "keys", "five reports, then the destruction of the keys"
    completions.wait_one(request)

    _publish_and_wait(erasure_memory, ledger, first, rest[-1])
    time.sleep(0.3)
    assert len(completions.of(request)) == 1, "a late duplicate must not complete the request again"
    assert _status(ledger, request).receipt_hash == status.receipt_hash


@pytest.mark.parametrize("early", [2, 5])
def test_reports_before_the_deregistration_open_the_request_and_nothing_is_lost(
        erasure_memory: MemoryPipeline, db_backend: str, ledger: MemoryService, early: int) -> None:
    completions = Completions(erasure_memory)
    request = _deregistration(reason="inactivity")
    reports = _reports(request)
    _publish_and_wait(erasure_memory, ledger, *reports[:early])
    waiting = _status(ledger, request)
    assert (waiting.status, waiting.opened_by, waiting.reason, waiting.requested_at) == ("open", "report", None, None)
    assert waiting.awaiting_deregistration
    assert waiting.missing == SLICE_SERVICES[early:]
    assert completions.of(request) == []

    _publish_and_wait(erasure_memory, ledger, request, *reports[early:])
    status = _status(ledger, request)
    assert (status.status, status.reason, status.opened_by) == ("complete", "inactivity", "report")
    assert status.requested_at == request.requested_at
    assert status.due_at == legal_deadline(request.requested_at)
    assert _verify(ledger, request).ok
    assert completions.wait_one(request)["receipt_hash"] == status.receipt_hash


def test_ledger_stopped_midway_loses_nothing(erasure_pipeline: Pipeline, db_backend: str, ledger_url: str) -> None:
    """On the broker: what a stopped consumer had not settled is redelivered to the next."""
    completions = Completions(erasure_pipeline)
    request = _deregistration()
    reports = _reports(request)
    first = erasure_pipeline.start(build(), ledger_url)
    _publish_and_wait(erasure_pipeline, first, request, *reports[:2])
    first.stop()

    sent = erasure_pipeline.publish(*reports[2:])
    second = erasure_pipeline.start(build(), ledger_url)
    for message in sent:
        second.wait_handled(message.event_id)
    status = _status(second, request)
    assert status.status == "complete"
    assert _verify(second, request).ok
    assert completions.wait_one(request)["receipt_hash"] == status.receipt_hash


def test_edited_slice_row_no_longer_matches_the_receipt(erasure_memory: MemoryPipeline, ledger: MemoryService) -> None:
    request = _deregistration()
    _publish_and_wait(erasure_memory, ledger, request, *_reports(request))
    with Session(ledger.engine) as session, session.begin():
        row = session.get(SliceReport, (str(request.request_id), "bookkeeping"))
        assert row is not None
        row.outcome, row.report = "erased", {**(row.report or {}), "outcome": "erased", "retained": []}
    result = _verify(ledger, request)
    assert (result.ok, result.broken_at_seq) == (False, 4)
    assert "bookkeeping" in result.reason


def test_tampered_receipt_entry_fails_verification_at_that_entry(
        erasure_memory: MemoryPipeline, db_backend: str, ledger: MemoryService, ledger_url: str) -> None:
    request = _deregistration()
    _publish_and_wait(erasure_memory, ledger, request, *_reports(request))
    assert _verify(ledger, request).ok
    with ledger.engine.begin() as conn:
        payload = conn.execute(select(ReceiptEntry.payload).where(
            ReceiptEntry.request_id == str(request.request_id), ReceiptEntry.seq == 3)).scalar_one()
        conn.execute(update(ReceiptEntry).where(
            ReceiptEntry.request_id == str(request.request_id), ReceiptEntry.seq == 3,
        ).values(payload=payload.replace("2033-12-31", "2026-12-31")))

    result = _verify(ledger, request)
    assert (result.ok, result.broken_at_seq) == (False, 3)
    text, code = receipt_command(ledger_url, str(request.request_id), verify=True)
    assert code == 1
    assert "VERIFICATION FAILED at entry 3" in text


def test_request_with_a_silent_slice_is_overdue_naming_that_slice(
        erasure_memory: MemoryPipeline, db_backend: str, ledger_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ERASURE_LEDGER_DUE_SECONDS", "1")
    ledger = erasure_memory.start(build(), ledger_url)
    request = _deregistration()
    _publish_and_wait(erasure_memory, ledger, request, *_reports(request, SLICE_SERVICES[:4]))

    def listed(now: datetime) -> list[queries.OverdueRequest]:
        with Session(ledger.engine) as session:
            return [o for o in queries.overdue(session, now) if o.request_id == str(request.request_id)]

    assert listed(request.requested_at) == []
    [late] = wait_until(lambda: listed(datetime.now(UTC)), timeout=5, what="the request to be overdue")
    assert late.why == "past_due"
    assert late.missing == ("newsletter",)
    text, code = status_command(ledger_url, overdue=True)
    assert code == 1, "an overdue request is listed: exit 1 for cron and monitoring"
    assert str(request.request_id) in text and "newsletter" in text and "past_due" in text


def test_request_open_longer_than_the_stuck_threshold_is_reported_stuck(
        erasure_memory: MemoryPipeline, ledger: MemoryService) -> None:
    request = _deregistration()
    _publish_and_wait(erasure_memory, ledger, request, *_reports(request, ["account", "payment"]))
    opened_at = _status(ledger, request).opened_at
    with Session(ledger.engine) as session:
        assert queries.overdue(session, opened_at, stuck_after=timedelta(seconds=1)) == []
        [stuck] = queries.overdue(session, opened_at + timedelta(seconds=2), stuck_after=timedelta(seconds=1))
    assert stuck.why == "stuck"
    assert stuck.missing == ("installer_sharing", "bookkeeping", "newsletter")


def test_report_naming_another_user_is_dead_lettered(erasure_memory: MemoryPipeline, ledger: MemoryService) -> None:
    request = _deregistration()
    _publish_and_wait(erasure_memory, ledger, request)
    stray = example_slice_report("account", "u-someone-else", request_id=str(request.request_id))
    erasure_memory.publish(stray)
    dead_queue = f"{erasure_memory.namespace}.ledger.dead"
    wait_until(lambda: erasure_memory.depth(dead_queue) == 1, what="dead letter")
    [dead] = erasure_memory.take(dead_queue)
    assert dead.headers["x-error-kind"] == "permanent"
    assert str(request.request_id) in dead.headers["x-error"]
    assert _status(ledger, request).missing == SLICE_SERVICES


def test_replayed_erasure_is_its_own_request_and_completes_as_a_replay(
        erasure_memory: MemoryPipeline, ledger: MemoryService) -> None:
    completions = Completions(erasure_memory)
    original = _deregistration()
    _publish_and_wait(erasure_memory, ledger, original, *_reports(original))
    replay = example_deregistration(original.user_id, request_id=str(uuid4()), requested_at=datetime.now(UTC),
                                    replay=True, original_request_id=str(original.request_id))
    _publish_and_wait(erasure_memory, ledger, replay, *_reports(replay))

    status = _status(ledger, replay)
    assert status.replay and status.original_request_id == str(original.request_id)
    assert completions.wait_one(replay)["replay"] is True
    with Session(ledger.engine) as session:
        since = _status(ledger, original).completed_at
        done = queries.completed_since(session, since)
        assert [d.request_id for d in done] == [str(original.request_id), str(replay.request_id)]
        mine = queries.requests_for_user(session, original.user_id)
        assert [r.request_id for r in mine] == [str(original.request_id), str(replay.request_id)]


def test_status_and_receipt_commands_show_every_slice_and_the_receipt_hash(
        erasure_memory: MemoryPipeline, db_backend: str, ledger: MemoryService, ledger_url: str) -> None:
    request = _deregistration()
    reports = _reports(request)
    _publish_and_wait(erasure_memory, ledger, request, *reports)
    receipt_hash = _status(ledger, request).receipt_hash
    assert receipt_hash

    text, code = status_command(ledger_url, request_id=str(request.request_id))
    assert code == 0
    assert str(request.request_id) in text and receipt_hash in text
    rows = {line.split()[0]: line.split()[1] for line in text.splitlines()
            if line.split() and line.split()[0] in SLICE_SERVICES}
    assert rows == {r.service: r.outcome for r in reports}
    assert "Bokföringslagen (1999:1078) 7 kap. 2 §; until 2033-12-31" in text

    data = json.loads(status_command(ledger_url, request_id=str(request.request_id), as_json=True)[0])
    assert data["receipt_hash"] == receipt_hash and data["status"] == "complete"
    assert [s["outcome"] for s in data["slices"]] == [r.outcome for r in reports]
    by_user, code = status_command(ledger_url, user_id=request.user_id)
    assert code == 0 and str(request.request_id) in by_user

    text, code = receipt_command(ledger_url, str(request.request_id), verify=True)
    assert code == 0
    assert receipt_hash in text and "Verified: 6 entries intact" in text
    data = json.loads(receipt_command(ledger_url, str(request.request_id), verify=True, as_json=True)[0])
    assert data["verification"]["ok"] and data["entries"][-1]["entry_hash"] == receipt_hash

    assert status_command(ledger_url, request_id=str(uuid4()))[1] == 2
    assert status_command(ledger_url, user_id="u-nobody")[1] == 2
    assert receipt_command(ledger_url, str(uuid4()), verify=True)[1] == 2
    assert status_command(ledger_url)[1] == 2


LEDGER_TABLES = ("erasure_requests", "erasure_slices", "receipt_entries")


def test_each_delivery_costs_the_ledger_a_few_statements(
        erasure_memory: MemoryPipeline, db_backend: str, ledger: MemoryService) -> None:
    """A regression guard: one read of the request (after its row lock on PostgreSQL), then only writes.

    Counted are the statements on the ledger's own tables; the runtime's (inbox, outbox, transaction
    control) are its own business.
    """
    assert set(LEDGER_TABLES) <= set(metadata.tables)
    statements: list[str] = []

    @event.listens_for(ledger.engine, "before_cursor_execute")
    def _count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if any(name in statement for name in LEDGER_TABLES):
            statements.append(statement)

    request = _deregistration()
    per_delivery = []
    for sent in [request, *_reports(request)]:
        before = len(statements)
        _publish_and_wait(erasure_memory, ledger, sent)
        per_delivery.append(len(statements) - before)
    event.remove(ledger.engine, "before_cursor_execute", _count)

    # Opening: read, insert the request and its five slices. A report: read, update its slice, add its link.
    # The last report also closes the request. PostgreSQL takes the row lock with a statement of its own.
    lock = 1 if db_backend == "postgresql" else 0
    expected = [3 + lock] * 5 + [4 + lock]
    assert all(1 <= n <= most for n, most in zip(per_delivery, expected, strict=True)), (per_delivery, statements)
    assert _status(ledger, request).status == "complete"
    assert _verify(ledger, request).ok


# ---- legal time: internal due date, the gauge of requests per state -------------------------------------------

def _ids(items: Iterable[queries.OverdueRequest]) -> dict[str, str]:
    return {o.request_id: o.why for o in items}


def test_due_soon_lists_open_requests_past_their_internal_due_date(
        erasure_memory: MemoryPipeline, db_backend: str, ledger_url: str, ledger: MemoryService) -> None:
    now = datetime.now(UTC)
    fresh = _deregistration()
    late = _deregistration(requested_at=now - timedelta(days=21))  # default internal due: 20 days
    past = _deregistration(requested_at=now - timedelta(days=45))  # past its legal deadline too
    done = _deregistration(requested_at=now - timedelta(days=25))
    _publish_and_wait(erasure_memory, ledger, fresh, late, past, done, *_reports(done))

    with Session(ledger.engine) as session:
        listed = _ids(queries.due_soon(session, datetime.now(UTC), timedelta(days=20)))
        assert listed == {str(late.request_id): "due_soon", str(past.request_id): "past_due"}
        assert _ids(queries.overdue(session, datetime.now(UTC))) == {str(past.request_id): "past_due"}

    text, code = status_command(ledger_url, due_soon=True)
    assert code == 1, "a request past its internal due date is listed: exit 1 for cron and monitoring"
    assert str(late.request_id) in text and "due_soon" in text and str(fresh.request_id) not in text
    data, code = status_command(ledger_url, due_soon=True, as_json=True)
    assert {d["request_id"] for d in json.loads(data)} == set(listed)
    # The internal due date is a setting: one of 30 days leaves only the request past its deadline.
    with Session(ledger.engine) as session:
        assert _ids(queries.due_soon(session, datetime.now(UTC), timedelta(days=30))) == {
            str(past.request_id): "past_due"}


def test_due_soon_with_nothing_due_exits_0(erasure_memory: MemoryPipeline, ledger_url: str,
                                           ledger: MemoryService) -> None:
    _publish_and_wait(erasure_memory, ledger, _deregistration())
    text, code = status_command(ledger_url, due_soon=True)
    assert (text, code) == ("No open erasure requests past their internal due date.", 0)
    assert status_command(ledger_url, due_soon=True, overdue=True)[1] == 2


def test_the_gauge_counts_requests_per_state_at_each_scrape(
        erasure_memory: MemoryPipeline, db_backend: str, ledger: MemoryService) -> None:
    from prometheus_client import REGISTRY, generate_latest

    from services.ledger.metrics import NAME

    def scraped() -> dict[str, float]:
        return {state: REGISTRY.get_sample_value(NAME, {"state": state}) or 0.0 for state in queries.STATES}

    assert scraped() == dict.fromkeys(queries.STATES, 0.0)
    now = datetime.now(UTC)
    done = _deregistration()
    _publish_and_wait(erasure_memory, ledger, _deregistration(), _deregistration(),
                      _deregistration(requested_at=now - timedelta(days=21)),
                      _deregistration(requested_at=now - timedelta(days=45)), done, *_reports(done))
    assert scraped() == {"open": 2, "due_soon": 1, "overdue": 1, "stuck": 0, "held": 0, "completed": 1}
    assert f'{NAME}{{state="due_soon"}} 1.0' in generate_latest(REGISTRY).decode()
    with Session(ledger.engine) as session:  # a day later the fresh ones are stuck: nothing reported since
        later = queries.state_counts(session, datetime.now(UTC) + timedelta(hours=25), timedelta(hours=24),
                                     timedelta(days=20))
    assert later == {"open": 0, "due_soon": 0, "overdue": 1, "stuck": 3, "held": 0, "completed": 1}


def test_stuck_means_no_progress_a_slice_report_resets_the_clock(
        erasure_memory: MemoryPipeline, db_backend: str, ledger: MemoryService) -> None:
    request = _deregistration()
    _publish_and_wait(erasure_memory, ledger, request)
    time.sleep(1.5)
    _publish_and_wait(erasure_memory, ledger, *_reports(request, ["account"]))
    second = timedelta(seconds=1)
    with Session(ledger.engine) as session:
        now = datetime.now(UTC)
        assert queries.overdue(session, now, stuck_after=second) == [], "a slice reported within the second"
        assert queries.state_counts(session, now, second, timedelta(days=20))["stuck"] == 0
        [stuck] = queries.overdue(session, now + 2 * second, stuck_after=second)
        assert queries.state_counts(session, now + 2 * second, second, timedelta(days=20))["stuck"] == 1
    assert (stuck.why, stuck.missing) == ("stuck", SLICE_SERVICES[1:])
