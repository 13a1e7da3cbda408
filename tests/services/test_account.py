"""The account service: erasure of every row of a user, sessions, device free text, completions, seeding."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event, func, insert, select
from sqlalchemy.orm import Session, sessionmaker
from structlog.testing import capture_logs

from schemas import ErasureCompleted, ErasureSliceReported
from schemas.examples import example_completion, example_deregistration
from services.account import accounts, notices
from services.account.main import build
from services.account.models import (
    CompletedErasure,
    CompletionNotice,
    Device,
    Preference,
    SignInSession,
    User,
    metadata,
)
from services.account.seed import seed_users
from services.account.settings import AccountSettings
from shared.codec import decode
from shared.db import ensure_schema, make_engine, session_factory
from shared.erasure import tombstone
from shared.keys import blind_index, of_user
from shared.testing import wait_until
from shared.testing.memory import MemoryPipeline
from shared.testing.scan import personal_data_hits

MIGRATIONS = Path(__file__).resolve().parents[2] / "services" / "account" / "migrations"
NOW = datetime(2026, 4, 14, 8, 0, tzinfo=UTC)
ANNA = {
    "name": "Anna Lindqvist",
    "email": "Anna.Lindqvist@Kund.Loggamera.se",
    "phone": "070-174 06 05",
    "street": "Storgatan 12",
    "postal_code": "11455",
    "city": "Stockholm",
    "company_name": "Anna Lindqvist Fastighetsservice",
    "corporate_id": "811218-9876",
}
# Every spelling in which Anna's data may sit in a table.
ANNA_TRACES = ["anna.lindqvist@kund.loggamera.se", "+46701740605", "070-174 06 05", "Anna Lindqvist",
               "198112189876", "Storgatan 12"]
ERIK = {"name": "Erik Johansson", "email": "erik.johansson@kund.loggamera.se", "phone": "070-174 06 06"}


# ---- helpers -----------------------------------------------------------------------------------------
@pytest.fixture
def account_db(db_backend: str, empty_database_url: str) -> Iterator[Engine]:
    """An account database migrated to head, on the backend of this test run (no broker)."""
    engine = make_engine(empty_database_url)
    ensure_schema(engine, metadata, MIGRATIONS)
    yield engine
    engine.dispose()


def _sessions(engine: Engine) -> sessionmaker[Session]:
    return session_factory(engine, metadata)


def _populate(engine: Engine, person: dict[str, Any], *, user_id: str) -> str:
    """A user with preferences, two sign-ins and a device and a plant; returns a session token."""
    token = accounts.new_session_token()
    with _sessions(engine)() as session, session.begin():
        accounts.register_user(session, user_id=user_id, at=NOW - timedelta(days=400), **person)
        accounts.set_preferences(session, user_id, [("email", "freight_status"), ("sms", "offers")])
        accounts.record_sign_in(session, user_id, accounts.new_session_token(), NOW - timedelta(days=2))
        accounts.record_sign_in(session, user_id, token, datetime.now(UTC))
        accounts.save_device(session, user_id, kind="device", name="Gateway källaren",
                             location_note="Bakom pannan", description="Mäter temperatur")
        accounts.save_device(session, user_id, kind="plant", name="Värmecentral",
                             description="Nyckel hos grannen")
    return token


def _rows_of(engine: Engine, user_id: str) -> dict[str, int]:
    with engine.connect() as conn:
        return {model.__tablename__: conn.execute(
            select(func.count()).select_from(model).where(model.user_id == user_id)).scalar_one()
            for model in (User, Preference, SignInSession, Device)}


def _validate(engine: Engine, token: str, at: datetime | None = None) -> str | None:
    with _sessions(engine)() as session:
        return accounts.validate_session(session, token, at)


class Ledger:
    """Slice reports read from the namespace's ledger queue (which receives every report)."""

    def __init__(self, pipeline: MemoryPipeline) -> None:
        self.pipeline = pipeline
        self.queue = f"{pipeline.namespace}.ledger"
        self.reports: list[ErasureSliceReported] = []

    def _drain(self) -> None:
        settings = self.pipeline.settings
        for message in self.pipeline.take(self.queue):
            if message.properties.get("type") != ErasureSliceReported.event_type:
                continue  # the ledger queue also receives the deregistrations themselves
            inbound = decode(message.body, content_type=message.properties.get("content_type"),
                             headers=message.headers, keyring=settings.keyring, max_bytes=settings.max_body_bytes)
            self.reports.append(inbound.data)  # type: ignore[arg-type]

    def of(self, user_id: str) -> list[ErasureSliceReported]:
        self._drain()
        return [r for r in self.reports if r.user_id == user_id]

    def wait_for(self, user_id: str, count: int = 1) -> list[ErasureSliceReported]:
        """Block until `count` reports about the user have arrived; return them."""
        return wait_until(lambda: len(self.of(user_id)) >= count and self.of(user_id), timeout=10,
                          what=f"{count} slice report(s) for {user_id}")


# ---- erasure through the pipeline ----------------------------------------------------------------------
def test_erasure_leaves_no_trace_of_the_user_in_any_table(erasure_memory, db_backend) -> None:
    running = erasure_memory.start(build())
    _populate(running.engine, ANNA, user_id="u-anna")
    _populate(running.engine, ERIK, user_id="u-erik")
    assert personal_data_hits(running.engine, ANNA_TRACES), "the scan must see Anna before the erasure"

    [sent] = erasure_memory.publish(example_deregistration("u-anna"))
    running.wait_handled(sent.event_id)
    Ledger(erasure_memory).wait_for("u-anna")

    assert personal_data_hits(running.engine, ANNA_TRACES) == []
    assert _rows_of(running.engine, "u-anna") == {"users": 0, "preferences": 0, "sessions": 0, "devices": 0}
    assert _rows_of(running.engine, "u-erik") == {"users": 1, "preferences": 2, "sessions": 2, "devices": 2}
    assert personal_data_hits(running.engine, ["Erik Johansson"]) == [("users", "name")]
    with _sessions(running.engine)() as session:
        assert accounts.is_erased_user(session, "u-anna")


def test_slice_report_names_the_categories_that_were_held(erasure_memory, db_backend) -> None:
    running = erasure_memory.start(build())
    with _sessions(running.engine)() as session, session.begin():
        accounts.register_user(session, user_id="u-thin", name="Maria Karlsson", email="maria@kund.loggamera.se")
        accounts.record_sign_in(session, "u-thin", accounts.new_session_token())
    [sent] = erasure_memory.publish(example_deregistration("u-thin"))
    running.wait_handled(sent.event_id)
    [report] = Ledger(erasure_memory).wait_for("u-thin")
    assert report.service == "account"
    assert report.outcome == "erased"
    assert report.erased == ["account profile", "sign-in sessions"]
    assert report.retained == []
    assert report.recipients_notified == []
    assert str(report.request_id) == str(example_deregistration("u-thin").request_id)


def _restore_anna(conn: Any) -> None:
    """Anna's profile row as a backup restore brings it back: sealed, as it was stored."""
    conn.execute(insert(User).values(
        user_id="u-anna", name=of_user("u-anna", "Anna Lindqvist"), email=of_user("u-anna", "anna@kund.loggamera.se"),
        email_index=blind_index("anna@kund.loggamera.se"), country="SE", created_at=NOW, last_sign_in_at=NOW))


def test_second_identical_event_has_no_second_effect(erasure_memory) -> None:
    running = erasure_memory.start(build())
    _populate(running.engine, ANNA, user_id="u-anna")
    message = erasure_memory.encode(example_deregistration("u-anna"))
    erasure_memory.publish(message)
    running.wait_handled(message.event_id)
    ledger = Ledger(erasure_memory)
    ledger.wait_for("u-anna")
    # A row that appears afterwards shows whether the duplicate erased again; it must not.
    with running.engine.begin() as conn:
        _restore_anna(conn)
    erasure_memory.publish(message)
    [sentinel] = erasure_memory.publish(example_deregistration("u-sentinel"))
    running.wait_handled(sentinel.event_id)  # one queue, one consumer: the duplicate was settled before
    ledger.wait_for("u-sentinel")
    assert _rows_of(running.engine, "u-anna")["users"] == 1
    assert len(ledger.of("u-anna")) == 1


def test_replayed_deregistration_erases_restored_rows_and_reports_again(erasure_memory) -> None:
    running = erasure_memory.start(build())
    _populate(running.engine, ANNA, user_id="u-anna")
    first = example_deregistration("u-anna")
    erasure_memory.publish(first)
    ledger = Ledger(erasure_memory)
    ledger.wait_for("u-anna")
    with running.engine.begin() as conn:  # a backup restore brings the profile back
        _restore_anna(conn)
    replay = example_deregistration("u-anna", request_id=str(uuid.uuid4()), replay=True,
                                    original_request_id=str(first.request_id))
    erasure_memory.publish(replay)
    reports = ledger.wait_for("u-anna", count=2)
    assert personal_data_hits(running.engine, ANNA_TRACES) == []
    assert [(r.replay, r.outcome) for r in reports] == [(False, "erased"), (True, "erased")]
    assert reports[1].erased == ["account profile"]


def test_unknown_user_reports_nothing_held_and_is_tombstoned(erasure_memory, db_backend) -> None:
    running = erasure_memory.start(build())
    [sent] = erasure_memory.publish(example_deregistration("u-stranger"))
    running.wait_handled(sent.event_id)
    [report] = Ledger(erasure_memory).wait_for("u-stranger")
    assert report.outcome == "nothing_held"
    assert report.erased == []
    with _sessions(running.engine)() as session:
        assert accounts.is_erased_user(session, "u-stranger")


def test_a_second_erasure_keeps_the_first_tombstone(account_db) -> None:
    first, second = (example_deregistration("u-twice", request_id=str(uuid.uuid4())) for _ in range(2))
    for event_ in (first, second, first):
        with _sessions(account_db)() as session, session.begin():
            tombstone(session, event_)
    tombstones = metadata.tables["tombstones"]
    with account_db.connect() as conn:
        rows = conn.execute(select(tombstones.c.user_id, tombstones.c.request_id)).all()
    assert [tuple(r) for r in rows] == [("u-twice", str(first.request_id))]


def test_erased_users_cookie_no_longer_validates_even_after_a_restore(erasure_memory, db_backend) -> None:
    running = erasure_memory.start(build())
    token = _populate(running.engine, ANNA, user_id="u-anna")
    assert _validate(running.engine, token) == "u-anna"
    [sent] = erasure_memory.publish(example_deregistration("u-anna"))
    running.wait_handled(sent.event_id)
    assert _validate(running.engine, token) is None
    with running.engine.begin() as conn:  # a backup restore brings the user and the session back
        _restore_anna(conn)
        conn.execute(insert(SignInSession).values(
            token_sha256=accounts.hash_token(token), user_id="u-anna", created_at=NOW,
            expires_at=datetime.now(UTC) + timedelta(days=1), revoked_at=None))
    assert _validate(running.engine, token) is None


def test_completed_erasure_is_recorded_once_without_personal_data(erasure_memory, db_backend) -> None:
    running = erasure_memory.start(build())
    completion = example_completion("u-anna")
    message = erasure_memory.encode(completion)
    erasure_memory.publish(message)
    erasure_memory.publish(message)
    [resent] = erasure_memory.publish(completion)  # the same completion again under a new event id
    running.wait_handled(resent.event_id)
    with running.engine.connect() as conn:
        rows = conn.execute(select(CompletedErasure.request_id, CompletedErasure.user_id,
                                   CompletedErasure.replay)).all()
    assert [tuple(r) for r in rows] == [(str(completion.request_id), "u-anna", False)]
    assert ErasureCompleted.event_type in build().event_types


# ---- housekeeping ---------------------------------------------------------------------------------------
def test_cleanup_is_due_at_first_then_at_most_once_per_interval() -> None:
    timer = notices.CleanupTimer(interval=0.2)
    assert timer.due()
    assert not timer.due()
    time.sleep(0.25)
    assert timer.due()
    assert not timer.due()


def test_erasures_do_not_each_run_the_cleanup(erasure_memory) -> None:
    running = erasure_memory.start(build())
    cleanups: list[str] = []

    @event.listens_for(running.engine, "before_cursor_execute")
    def _count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.startswith("DELETE FROM completion_notices WHERE completion_notices.keep_until"):
            cleanups.append(statement)

    events = [example_deregistration(f"u-{uuid.uuid4().hex[:10]}", request_id=str(uuid.uuid4()))
              for _ in range(3)]
    for sent in erasure_memory.publish(*events):
        running.wait_handled(sent.event_id)
    event.remove(running.engine, "before_cursor_execute", _count)
    assert len(cleanups) == 1, "the first event after the start cleans up, the next ones within a minute do not"


def test_notice_past_its_keep_until_is_deleted_unsent_though_no_cleanup_ran(
        account_db, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(notices, "send", lambda *_args, **_kwargs: pytest.fail("a notice past its date was sent"))
    completion = example_completion("u-anna", request_id=str(uuid.uuid4()))
    with _sessions(account_db)() as session, session.begin():
        session.add(CompletionNotice(request_id=str(completion.request_id), email=ANNA["email"].lower(),
                                     keep_until=datetime.now(UTC) - timedelta(minutes=1)))
    with _sessions(account_db)() as session, session.begin():
        assert notices.send_completion_notice(session, completion, AccountSettings()) is False
    with account_db.connect() as conn:
        assert conn.execute(select(func.count()).select_from(CompletionNotice)).scalar_one() == 0


# ---- sessions -------------------------------------------------------------------------------------------
def test_revoked_session_cookie_no_longer_validates(account_db) -> None:
    with _sessions(account_db)() as session, session.begin():
        accounts.register_user(session, user_id="u-anna", **ANNA)
        token = accounts.new_session_token()
        accounts.record_sign_in(session, "u-anna", token)
    assert _validate(account_db, token) == "u-anna"
    with _sessions(account_db)() as session, session.begin():
        assert accounts.revoke_sessions(session, "u-anna") == 1
    assert _validate(account_db, token) is None


def test_expired_or_unknown_session_cookie_does_not_validate(account_db) -> None:
    with _sessions(account_db)() as session, session.begin():
        accounts.register_user(session, user_id="u-anna", **ANNA)
        token = accounts.new_session_token()
        expires = accounts.record_sign_in(session, "u-anna", token, NOW, lifetime=timedelta(hours=1))
    assert _validate(account_db, token, NOW + timedelta(minutes=59)) == "u-anna"
    assert _validate(account_db, token, expires) is None
    assert _validate(account_db, accounts.new_session_token(), NOW) is None


def test_only_the_hash_of_a_session_token_is_stored(account_db) -> None:
    with _sessions(account_db)() as session, session.begin():
        accounts.register_user(session, user_id="u-anna", **ANNA)
        token = accounts.new_session_token()
        accounts.record_sign_in(session, "u-anna", token, NOW)
    assert personal_data_hits(account_db, [token]) == []
    with account_db.connect() as conn:
        signed_in = conn.execute(select(User.last_sign_in_at)).scalar_one()
    assert (signed_in if signed_in.tzinfo else signed_in.replace(tzinfo=UTC)) == NOW


# ---- profile and preferences ----------------------------------------------------------------------------
def test_registration_normalises_contact_details_and_finds_email_in_any_case(account_db) -> None:
    with _sessions(account_db)() as session, session.begin():
        accounts.register_user(session, user_id="u-anna", **ANNA)
        user = accounts.find_user_by_email(session, "ANNA.LINDQVIST@kund.loggamera.SE")
        assert user is not None
        assert (user.email, user.phone, user.postal_code, user.corporate_id) == (
            "anna.lindqvist@kund.loggamera.se", "+46701740605", "114 55", "198112189876")
        with pytest.raises(accounts.AccountError, match="already registered"):
            accounts.register_user(session, name="Other", email="anna.lindqvist@KUND.LOGGAMERA.SE")


@pytest.mark.parametrize(("field", "value"), [
    ("corporate_id", "811218-9875"), ("phone", "12345"), ("postal_code", "01234"), ("email", "not-an-address")])
def test_invalid_contact_details_are_refused_without_echoing_them(account_db, field: str, value: str) -> None:
    with _sessions(account_db)() as session, pytest.raises(accounts.AccountError) as refused:
        accounts.register_user(session, **{**ANNA, field: value})
    assert value not in str(refused.value)


def test_preferences_keep_one_row_per_enabled_combination(account_db) -> None:
    with _sessions(account_db)() as session, session.begin():
        accounts.register_user(session, user_id="u-anna", **ANNA)
        accounts.set_preferences(session, "u-anna", [("email", "newsletters"), ("sms", "freight_status")])
        kept = accounts.set_preferences(session, "u-anna", [("phone", "offers"), ("phone", "offers")])
        with pytest.raises(accounts.AccountError, match="unknown channel"):
            accounts.set_preferences(session, "u-anna", [("fax", "offers")])
    assert kept == [("phone", "offers")]
    with account_db.connect() as conn:
        assert conn.execute(select(Preference.channel, Preference.topic)).all() == [("phone", "offers")]


# ---- devices --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "kinds"), [
    ("Ring Anna på 070-174 06 05 om larmet", ("phone",)),
    ("Larm till anna.lindqvist@kund.loggamera.se", ("email",)),
    ("Ägare 811218-9876", ("personnummer",)),
    ("anna@kund.loggamera.se, +46 70 174 06 05, 19811218-9876", ("email", "phone", "personnummer")),
])
def test_device_free_text_with_personal_data_is_flagged(account_db, text: str, kinds: tuple[str, ...]) -> None:
    with _sessions(account_db)() as session, session.begin():
        accounts.register_user(session, user_id="u-anna", **ANNA)
        with capture_logs() as logs:
            saved = accounts.save_device(session, "u-anna", kind="plant", name="Värmecentral", description=text)
    assert saved.personal_data_flags == kinds
    assert saved.flagged_fields == ("description",)
    with account_db.connect() as conn:
        assert conn.execute(select(Device.personal_data_flags)).scalar_one() == ",".join(kinds)
    [warning] = [entry for entry in logs if entry["log_level"] == "warning"]
    assert warning["kinds"] == list(kinds)
    # The ids are random hex (a device id can contain "070"); everything else in the line is scanned.
    assert warning["device_id"] == saved.device_id and warning["user_id"] == "u-anna"
    rest = repr({key: value for key, value in warning.items() if key not in ("device_id", "user_id")})
    assert text not in rest and "070" not in rest and "@" not in rest and "811218" not in rest


def test_device_free_text_without_personal_data_is_not_flagged(account_db) -> None:
    with _sessions(account_db)() as session, session.begin():
        accounts.register_user(session, user_id="u-anna", **ANNA)
        saved = accounts.save_device(session, "u-anna", kind="device", name="Gateway SN 1234567890",
                                     location_note="Källaren, givare 0-10 V", description="Modell 2021 12 03")
        flagged = accounts.save_device(session, "u-anna", device_id=saved.device_id, kind="device",
                                       name="Gateway", location_note="Ring 070-174 06 05")
    assert saved.personal_data_flags == ()
    assert flagged.personal_data_flags == ("phone",) and flagged.flagged_fields == ("location_note",)
    with account_db.connect() as conn:
        assert conn.execute(select(func.count()).select_from(Device)).scalar_one() == 1


# ---- seeding --------------------------------------------------------------------------------------------
def test_seed_users_inserts_n_users_with_the_requested_inactive_fraction(account_db) -> None:
    three_years_ago = NOW - timedelta(days=3 * 365)
    with _sessions(account_db)() as session, session.begin():
        seeded = seed_users(session, 1000, inactive_fraction=0.25, now=NOW, batch=300)
    with account_db.connect() as conn:
        total = conn.execute(select(func.count()).select_from(User)).scalar_one()
        emails = conn.execute(select(func.count(func.distinct(User.email)))).scalar_one()
        inactive = conn.execute(select(func.count()).select_from(User)
                                .where(User.last_sign_in_at < three_years_ago)).scalar_one()
    assert (seeded.count, seeded.inactive) == (1000, 250)
    assert (total, emails, inactive) == (1000, 1000, 250)


def test_seeding_twice_adds_users_without_colliding(account_db) -> None:
    with _sessions(account_db)() as session, session.begin():
        seed_users(session, 50, now=NOW)
        seed_users(session, 50, now=NOW)
    with account_db.connect() as conn:
        assert conn.execute(select(func.count()).select_from(User)).scalar_one() == 100


# ---- the scan itself ------------------------------------------------------------------------------------
def test_scan_finds_traces_in_text_and_binary_columns_case_insensitively(account_db) -> None:
    _populate(account_db, ANNA, user_id="u-anna")
    with account_db.begin() as conn:  # an outbox body is bytes: a leak there must be found as well
        conn.execute(insert(metadata.tables["outbox"]).values(
            event_id="e-1", event_type="t", routing_key="k", body=b'{"mail": "ANNA.LINDQVIST@KUND.LOGGAMERA.SE"}',
            signature="s", source="urn:test", created_at=NOW))
    assert personal_data_hits(account_db, ["anna.lindqvist@kund.loggamera.se", "+46701740605"]) == [
        ("outbox", "body"), ("users", "email"), ("users", "phone")]
    assert personal_data_hits(account_db, ["%"]) == []  # a wildcard is searched as text


def test_tokens_never_start_with_a_dash_that_a_command_line_would_take_for_an_option() -> None:
    tokens = [accounts.new_session_token() for _ in range(3000)]  # 1 in 64 of token_urlsafe's start with "-"
    assert not [t for t in tokens if t.startswith("-")]
    assert len(set(tokens)) == len(tokens) and all(len(t) == 43 for t in tokens)
