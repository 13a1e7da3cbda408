"""Each stage of the runtime on its own (shared/runtime/): decode, claim, handle, stage, settle, middleware."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import Engine, func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from schemas import ErasureSliceReported, NewsletterConsentChanged, UserDeregistered
from schemas.examples import example_consent_change, example_deregistration, example_slice_report
from shared.codec import Inbound, Outbound, decode, encode
from shared.errors import BadInput, PermanentError, TransientError
from shared.runtime import headers as h
from shared.runtime.decode import Ready, decode_delivery
from shared.runtime.delivery import Delivery
from shared.runtime.handle import context_for, failure_outcome, run_handler
from shared.runtime.inbox import Inbox
from shared.runtime.middleware import BatchReport, Handled, Metrics, Middleware
from shared.runtime.outcome import ACK, RELEASE, Action, Outcome
from shared.runtime.settle import RetryPolicy, Settler
from shared.runtime.stage import Stager
from shared.service import Context, Service
from shared.settings import RuntimeSettings
from shared.signing import HEADER as SIGNATURE_HEADER
from shared.testing.memory import MemoryBroker, MemoryChannel, MemoryMessage
from shared.topology import Names, build_topology
from tests.probe_service import effects, metadata

SETTINGS = RuntimeSettings(namespace="stages", retry_delays=(1.0, 10.0, 60.0))


def _noop(_event: Any, _ctx: Context[Any]) -> None:
    return None


SERVICE: Service[None] = Service(name="probe", handlers={UserDeregistered: _noop}, metadata=metadata)


def _signed(data: Any, **kwargs: Any) -> Outbound:
    return encode(data, source="urn:test", keyring=SETTINGS.keyring, key_id=SETTINGS.signing_key_id, **kwargs)


def _delivery(message: Outbound, *, tag: int = 1, attempts: int | None = None, redelivered: bool = False,
              body: bytes | None = None) -> Delivery:
    memory = MemoryMessage.of(message)
    memory.delivery_tag = tag
    memory.delivery_info["redelivered"] = redelivered
    if body is not None:
        memory.body = body
    if attempts is not None:
        memory.headers[h.ATTEMPTS] = attempts
    return Delivery(memory, generation=1)


def _inbound(message: Outbound) -> Inbound:
    ready = decode_delivery(_delivery(message), SERVICE, SETTINGS)
    assert isinstance(ready, Ready)
    return ready.inbound




# ---- decode --------------------------------------------------------------------------------------------------
def test_decode_gives_the_event_and_its_handler() -> None:
    message = _signed(example_deregistration("u-1"))
    ready = decode_delivery(_delivery(message), SERVICE, SETTINGS)
    assert isinstance(ready, Ready)
    assert (ready.inbound.event_id, ready.inbound.data.user_id, ready.handler) == (message.event_id, "u-1", _noop)


@pytest.mark.parametrize(("body", "kind"), [(b"not json", "signature"), (b"x" * 2_000_000, "oversized")])
def test_decode_dead_letters_what_cannot_be_handled_with_its_kind(body: bytes, kind: str) -> None:
    outcome = decode_delivery(_delivery(_signed(example_deregistration("u-2")), body=body), SERVICE, SETTINGS)
    assert isinstance(outcome, Outcome)
    assert (outcome.action, outcome.kind) == (Action.DEAD, kind)


def test_decode_dead_letters_an_event_type_the_service_has_no_handler_for() -> None:
    message = _signed(example_consent_change("u-3"))
    outcome = decode_delivery(_delivery(message), SERVICE, SETTINGS)
    assert isinstance(outcome, Outcome)
    assert (outcome.action, outcome.kind) == (Action.DEAD, "unknown_type")
    assert message.event_id in outcome.error and NewsletterConsentChanged.event_type in outcome.error


# ---- claim ---------------------------------------------------------------------------------------------------
def test_claim_takes_new_events_acks_duplicates_and_dead_letters_conflicts(engine: Engine) -> None:
    inbox = Inbox(metadata.tables["inbox"])
    first, second = (_signed(example_deregistration(u)) for u in ("u-a", "u-b"))
    conflict = _signed(example_deregistration("u-a", reason="admin"), event_id=UUID(first.event_id))
    with engine.begin() as conn:
        claim = inbox.claim(conn, [(0, _inbound(first)), (1, _inbound(first)), (2, _inbound(conflict))])
    assert claim.fresh == [0]
    assert claim.settled[1] == ACK and claim.duplicates == [UserDeregistered.event_type]
    assert (claim.settled[2].action, claim.settled[2].kind) == (Action.DEAD, "conflicting_duplicate")
    with engine.begin() as conn:  # a later batch finds the committed row
        later = inbox.claim(conn, [(0, _inbound(first)), (1, _inbound(second))])
    assert (later.fresh, later.settled) == ([1], {0: ACK})
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(inbox.table)).scalar_one() == 2


def test_claim_raises_when_a_replica_committed_the_row_between_read_and_write(engine: Engine) -> None:
    inbox = Inbox(metadata.tables["inbox"])
    message = _signed(example_deregistration("u-r"))
    with engine.begin() as conn:
        conn.execute(insert(inbox.table).values(event_id=message.event_id, event_type=message.event_type,
                                                body_sha256="0" * 64, handled_at=datetime.now(UTC)))
    inbox._seen = inbox._seen.where(inbox.table.c.event_id == "nothing")  # the read that missed the replica's row
    with engine.connect() as conn, conn.begin(), pytest.raises(IntegrityError):
        inbox.claim(conn, [(0, _inbound(message))])


# ---- handle --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("error", "action", "kind"), [
    (TransientError("later", retry_after=30), Action.RETRY, "transient"),
    (PermanentError("never"), Action.DEAD, "permanent"),
    (BadInput("schema", "bad field"), Action.DEAD, "schema"),
    (ZeroDivisionError("bug"), Action.RETRY, "error"),
])
def test_a_handlers_failure_is_classified(error: Exception, action: Action, kind: str) -> None:
    outcome = failure_outcome(error, "ev-1")
    assert (outcome.action, outcome.kind) == (action, kind)
    if isinstance(error, TransientError):
        assert outcome.retry_after == 30
    if action is Action.DEAD:
        assert "ev-1" in outcome.error


class _Recorder(Middleware):
    def __init__(self, name: str, calls: list[str]) -> None:
        self.name, self.calls = name, calls

    def before_handler(self, inbound: Inbound) -> None:
        self.calls.append(f"{self.name}.before")

    def after_handler(self, inbound: Inbound, seconds: float) -> None:
        self.calls.append(f"{self.name}.after")


@pytest.mark.parametrize("fails", [False, True])
def test_run_handler_wraps_it_in_the_middleware_hooks_even_when_it_raises(engine: Engine, fails: bool) -> None:
    calls: list[str] = []

    def handler(event: UserDeregistered, ctx: Context[str]) -> None:
        calls.append(f"handler {event.user_id} {ctx.deps} {ctx.attempts} {ctx.tried_before}")
        if fails:
            raise PermanentError("refused")
        ctx.session.execute(insert(effects).values(event_id=ctx.event_id, user_id=event.user_id))

    message = _signed(example_deregistration("u-h"))
    ready = Ready(_inbound(message), handler)
    with Session(engine) as session, session.begin():
        ctx = context_for(session, _delivery(message, attempts=2), ready, "gateways")
        if fails:
            with pytest.raises(PermanentError):
                run_handler(ready, ctx, session, [_Recorder("a", calls), _Recorder("b", calls)])
        else:
            assert run_handler(ready, ctx, session, [_Recorder("a", calls), _Recorder("b", calls)]) >= 0
    assert calls == ["a.before", "b.before", "handler u-h gateways 2 True", "b.after", "a.after"]


# ---- stage ---------------------------------------------------------------------------------------------------
def test_stage_writes_appended_rows_and_signed_outbox_rows_in_the_callers_transaction(engine: Engine) -> None:
    stager = Stager(metadata.tables["outbox"], SETTINGS)
    report = example_slice_report("account", "u-s")
    appended = [(effects, {"event_id": f"e{i}", "user_id": f"u{i}"}) for i in range(3)]
    with Session(engine) as session, session.begin():
        stager.write(session, appended, [report])
        session.rollback()  # nothing outlives a rolled-back transaction
    with Session(engine) as session, session.begin():
        stager.write(session, appended, [report])
    with engine.connect() as conn:
        assert sorted(conn.execute(select(effects.c.user_id)).scalars()) == ["u0", "u1", "u2"]
        [row] = conn.execute(select(stager.outbox)).all()
    assert row.event_type == ErasureSliceReported.event_type
    assert row.routing_key == "erasure.slice_reported.v1"
    inbound = decode(row.body, content_type="application/cloudevents+json",
                     headers={SIGNATURE_HEADER: row.signature}, keyring=SETTINGS.keyring,
                     max_bytes=SETTINGS.max_body_bytes)
    assert inbound.data == report


# ---- settle --------------------------------------------------------------------------------------------------
def test_retry_policy_walks_the_tiers_honours_retry_after_and_is_exhausted_after_the_last() -> None:
    policy = RetryPolicy((1.0, 10.0, 60.0))
    assert [policy.tier(n, None) for n in range(4)] == [0, 1, 2, None]
    assert policy.tier(0, 30.0) == 2, "a Retry-After of 30 s skips the tiers shorter than that"
    assert policy.tier(1, 5.0) == 1, "never back to an earlier tier"
    assert policy.tier(0, 3600.0) == 0, "longer than every tier: the next tier, as without it"


def _settling() -> tuple[Settler, MemoryBroker, Any]:
    names = Names("stages")
    topology = build_topology(names, {"probe": [UserDeregistered.event_type]}, retry_delays=(1.0, 10.0),
                              delivery_limit=5, dead_letter_ttl_days=90)
    broker = MemoryBroker(topology)
    return Settler("probe", names, RetryPolicy((1.0, 10.0)), []), broker, MemoryChannel(broker, names.queue("probe"))


def test_settle_sends_failures_on_with_their_headers_then_acks_the_batch_once() -> None:
    settler, broker, channel = _settling()
    messages = [_signed(example_deregistration(f"u-{i}")) for i in range(5)]
    batch = [_delivery(m, tag=i + 1, attempts=1 if i == 2 else None) for i, m in enumerate(messages)]
    for delivery in batch:
        channel.unsettled[delivery.tag] = delivery.message
    outcomes = [ACK, Outcome.retry("transient", "vendor down for anna@example.com"),
                Outcome.retry("transient", "still down"), Outcome.dead("permanent", "refused"), RELEASE]
    settler.settle(channel, channel, batch, outcomes)

    [first_retry] = broker.queues["stages.probe.retry.1s"]
    assert first_retry.headers[h.ATTEMPTS] == 1
    assert "anna@example.com" not in first_retry.headers[h.LAST_ERROR], "personal data is masked"
    assert first_retry.headers[h.ORIGINAL_ROUTING_KEY] == "user.deregistered.v1"
    [second_retry] = broker.queues["stages.probe.retry.10s"]
    assert second_retry.headers[h.ATTEMPTS] == 2 and second_retry.body == messages[2].body
    [dead] = broker.queues["stages.probe.dead"]
    assert (dead.headers[h.ERROR_KIND], dead.headers[h.ERROR], dead.headers[h.SERVICE]) == ("permanent", "refused",
                                                                                               "probe")
    assert dead.properties["message_id"] == messages[3].event_id and dead.properties["delivery_mode"] == 2
    assert list(broker.queues["stages.probe"]) == [batch[4].message], "released back to its queue"
    assert channel.unsettled == {}, "one multiple-ack settled tags 1-4"


def test_settle_dead_letters_a_retry_once_the_tiers_are_used_up() -> None:
    settler, broker, channel = _settling()
    delivery = _delivery(_signed(example_deregistration("u-x")), attempts=2)
    channel.unsettled[1] = delivery.message
    settler.settle(channel, channel, [delivery], [Outcome.retry("transient", "down")])
    [dead] = broker.queues["stages.probe.dead"]
    assert dead.headers[h.ERROR_KIND] == "retries_exhausted" and dead.headers[h.ATTEMPTS] == 3
    assert dead.headers[h.ERROR] == "gave up after 3 attempts: down"


# ---- middleware ----------------------------------------------------------------------------------------------
def _sample(name: str, labels: dict[str, str]) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_metrics_middleware_counts_a_committed_batch() -> None:
    kind = UserDeregistered.event_type
    labels = {"service": "stages-metrics", "event_type": kind}
    before = {o: _sample("erasure_events_handled_total", {**labels, "outcome": o}) for o in ("ok", "duplicate")}
    dup_before = _sample("erasure_inbox_duplicates_total", {"service": "stages-metrics"})
    Metrics((kind,)).after_commit(BatchReport("stages-metrics", 4, [
        Handled(kind, "ok", 0.01), Handled(kind, "ok", 0.02), Handled(kind, "duplicate"), Handled(kind, "raced")]))
    assert _sample("erasure_events_handled_total", {**labels, "outcome": "ok"}) - before["ok"] == 2
    assert _sample("erasure_events_handled_total", {**labels, "outcome": "duplicate"}) - before["duplicate"] == 1
    assert _sample("erasure_inbox_duplicates_total", {"service": "stages-metrics"}) - dup_before == 2
    assert _sample("erasure_handler_seconds_count", labels) >= 2


def test_outcome_actions_are_an_enum_that_still_reads_as_its_word() -> None:
    assert Outcome.dead("permanent", "x").action is Action.DEAD
    assert Action.RETRY == "retry" and replace(ACK, kind="k").action is Action.ACK
