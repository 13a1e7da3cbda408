"""Re-applying erasures after a backup restore: the restored user is gone again, everywhere."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from schemas.examples import example_deregistration, example_purchase
from services.account.main import build
from services.ledger.main import build as build_ledger
from services.ledger.models import COMPLETE, OPEN, ErasureRequest
from services.ledger.models import metadata as ledger_metadata
from services.ledger.replay import replay_request_id
from services.sandbox import Sandbox
from shared.db import ensure_schema, make_engine, session_factory
from shared.testing import Pipeline, wait_until
from shared.testing.scan import personal_data_hits
from tests.flows import (
    buy,
    completed,
    count_rows,
    point_at_sandbox,
    run_cli,
    start_all,
    summary,
    take_events,
    traces,
    url_of,
)

LEDGER_MIGRATIONS = Path(__file__).resolve().parents[2] / "services" / "ledger" / "migrations"


@pytest.fixture
def sandbox(monkeypatch: pytest.MonkeyPatch) -> Iterator[Sandbox]:
    with Sandbox() as running:
        point_at_sandbox(running, monkeypatch)
        yield running


class AccountBackup:
    """A copy of the account database, taken and restored the way each backend does it."""

    def __init__(self, url: str, admin: str | None) -> None:
        self.url, self.admin = make_url(url), admin
        self.name = f"{self.url.database}_backup" if admin else f"{self.url.database}.backup"

    def _admin(self, *statements: str) -> None:
        engine = create_engine(self.admin or "", isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            for statement in statements:
                conn.execute(text(statement))
        engine.dispose()

    def take(self) -> None:
        """Copy the (stopped) database: SQLite's online backup, or CREATE DATABASE ... TEMPLATE."""
        if self.admin:
            self._admin(f'CREATE DATABASE "{self.name}" TEMPLATE "{self.url.database}"')
            return
        with sqlite3.connect(str(self.url.database)) as source, sqlite3.connect(self.name) as target:
            source.backup(target)

    def restore(self) -> None:
        """Swap the copy in for the (stopped) database."""
        if self.admin:
            self._admin(f'DROP DATABASE "{self.url.database}" WITH (FORCE)',
                        f'CREATE DATABASE "{self.url.database}" TEMPLATE "{self.name}"')
            return
        for suffix in ("-wal", "-shm"):
            Path(f"{self.url.database}{suffix}").unlink(missing_ok=True)
        with sqlite3.connect(self.name) as source, sqlite3.connect(str(self.url.database)) as target:
            source.backup(target)

    def drop(self) -> None:
        if self.admin:
            self._admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


def test_restored_account_database_is_erased_again_by_replay(
    erasure_pipeline: Pipeline, db_backend: str, sandbox: Sandbox, request: pytest.FixtureRequest
) -> None:
    running = start_all(erasure_pipeline)
    purchase = example_purchase("u-restore")
    buy(erasure_pipeline, sandbox, running, purchase)
    account_url = url_of(running["account"])
    admin = request.getfixturevalue("postgres_admin_url") if db_backend == "postgresql" else None
    backup = AccountBackup(account_url, admin)
    running["account"].stop()
    backup.take()  # the nightly backup, taken before the user asked to be erased
    try:
        running["account"] = erasure_pipeline.start(build(), account_url)
        since = datetime.now(UTC) - timedelta(minutes=1)
        original = example_deregistration("u-restore", request_id=str(uuid.uuid4()), requested_at=datetime.now(UTC))
        erasure_pipeline.publish(original)
        completed(running["ledger"], str(original.request_id))
        assert personal_data_hits(running["account"].engine, traces(purchase)) == []

        running["account"].stop()
        backup.restore()
        running["account"] = erasure_pipeline.start(build(), account_url)
        with running["account"].engine.connect() as conn:
            restored = conn.execute(text("select count(*) from users where user_id = 'u-restore'")).scalar_one()
        assert restored == 1, "the restore brought the user's row back"
        assert personal_data_hits(running["account"].engine, traces(purchase)) == [], \
            "but nothing of it can be read: the user's data key was destroyed with the erasure"

        replayed = run_cli(erasure_pipeline, "replay", "--since", since.isoformat(), "--json",
                           ERASURE_LEDGER_DATABASE_URL=url_of(running["ledger"]))
        assert replayed.exit_code == 0, replayed.output
        assert (summary(replayed)["users"], summary(replayed)["published"]) == (1, 1)
        again = completed(running["ledger"], str(replay_request_id(str(original.request_id))))
        assert again.replay and again.original_request_id == str(original.request_id)
        for name, service in running.items():
            assert personal_data_hits(service.engine, traces(purchase)) == [], f"{name} holds the user again"
        wait_until(lambda: count_rows(running["account"].engine, "completed_erasures") == 1, what="completion")
        with running["account"].engine.connect() as conn:
            assert conn.execute(text("select replay from completed_erasures")).scalar_one()
        assert sandbox.mails() == [], "a replay tells the user nothing again"
    finally:
        backup.drop()


# ---- which requests a replay re-applies -----------------------------------------------------------------
T0 = datetime(2026, 4, 1, tzinfo=UTC)


def _request(request_id: str, user_id: str, completed_at: datetime | None, *, replay: bool = False) -> ErasureRequest:
    return ErasureRequest(
        request_id=request_id, user_id=user_id, reason="admin" if replay else "user_request",
        requested_at=T0, opened_at=T0, opened_by="deregistration", due_at=T0 + timedelta(days=30), replay=replay,
        original_request_id=str(uuid.uuid4()) if replay else None, status=COMPLETE if completed_at else OPEN,
        completed_at=completed_at, receipt_hash="0" * 64 if completed_at else None)


@pytest.fixture
def ledger_url(tmp_path: Path) -> str:
    """A ledger database holding: one request before the backup, two for one user, one for another, a
    replay, and one still open."""
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    engine = make_engine(url)
    ensure_schema(engine, ledger_metadata, LEDGER_MIGRATIONS)
    with session_factory(engine)() as session, session.begin():
        session.add_all([
            _request("00000000-0000-4000-8000-000000000000", "u-before", T0 - timedelta(days=2)),
            _request("11111111-1111-4111-8111-111111111111", "u-twice", T0 + timedelta(hours=1)),
            _request("22222222-2222-4222-8222-222222222222", "u-twice", T0 + timedelta(hours=3)),
            _request("33333333-3333-4333-8333-333333333333", "u-once", T0 + timedelta(hours=2)),
            _request("44444444-4444-4444-8444-444444444444", "u-replayed", T0 + timedelta(hours=4), replay=True),
            _request("55555555-5555-4555-8555-555555555555", "u-open", None),
        ])
    engine.dispose()
    return url


def _replays_on(pipeline: Pipeline) -> list[dict]:
    """UserDeregistered events that reached the (stopped) account's queue."""
    return [e["data"] for e in take_events(pipeline, f"{pipeline.namespace}.account")]


def test_replay_re_applies_each_user_once_with_the_same_request_ids_every_run(
    erasure_pipeline: Pipeline, ledger_url: str
) -> None:
    ledger = erasure_pipeline.start(build_ledger(), ledger_url)
    dry = run_cli(erasure_pipeline, "replay", "--since", "2026-04-01", "--dry-run", "--json",
                  ERASURE_LEDGER_DATABASE_URL=ledger_url)
    planned = summary(dry)
    assert (planned["completed"], planned["users"], planned["published"]) == (4, 2, 0)
    assert (planned["skipped_replays"], planned["skipped_same_user"]) == (1, 1)
    assert planned["original_request_ids"] == ["33333333-3333-4333-8333-333333333333",
                                               "22222222-2222-4222-8222-222222222222"]
    assert _replays_on(erasure_pipeline) == []

    runs = []
    for _ in range(2):
        result = run_cli(erasure_pipeline, "replay", "--since", "2026-04-01", "--json",
                         ERASURE_LEDGER_DATABASE_URL=ledger_url)
        assert result.exit_code == 0, result.output
        assert summary(result)["published"] == 2
        runs.append(wait_until(lambda: _replays_on(erasure_pipeline), what="the replayed events"))
    first, second = ({(e["user_id"], e["request_id"], e["original_request_id"]) for e in run} for run in runs)
    assert first == second == {
        ("u-once", str(replay_request_id("33333333-3333-4333-8333-333333333333")),
         "33333333-3333-4333-8333-333333333333"),
        ("u-twice", str(replay_request_id("22222222-2222-4222-8222-222222222222")),
         "22222222-2222-4222-8222-222222222222"),
    }
    assert all(e["reason"] == "admin" and e["replay"] is True for e in runs[0])
    # The ledger consumed both runs: the repeated request ids open one request each, not two.
    wait_until(lambda: erasure_pipeline.depth(f"{erasure_pipeline.namespace}.ledger") == 0, what="ledger drained")
    with ledger.engine.connect() as conn:
        opened = conn.execute(text("select request_id from erasure_requests where replay")).scalars().all()
    assert sorted(opened) == sorted(["44444444-4444-4444-8444-444444444444", *(r for _, r, _ in first)])


def test_replay_without_a_ledger_database_refuses_clearly(erasure_pipeline: Pipeline, tmp_path: Path) -> None:
    result = run_cli(erasure_pipeline, "replay", "--since", "2026-04-01",
                     ERASURE_LEDGER_DATABASE_URL=f"sqlite:///{tmp_path / 'missing.db'}")
    assert result.exit_code == 2 and "no ledger database" in result.output
    assert not (tmp_path / "missing.db").exists()
