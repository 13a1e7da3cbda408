"""The three-year sweep: exactly the inactive accounts, each once, across re-runs and crashes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from services.account.main import build
from services.account.models import SweepMark, User
from services.account.publishing import account_database
from services.account.seed import seed_users
from services.account.sweep import inactivity_cutoff
from shared.testing import Pipeline, wait_until
from tests.flows import count_rows, deregistrations, run_cli, summary

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 4, 14, 8, 0, tzinfo=UTC)
BIG = 100_000


@pytest.fixture
def account_url(erasure_pipeline: Pipeline, db_backend: str) -> str:
    """A fresh account database on this run's backend, dropped after the services stop."""
    return erasure_pipeline.database_url("account")


def _seed(url: str, n: int, fraction: float) -> set[str]:
    """n users, a fraction inactive for over three years as of NOW; return the inactive ids."""
    with account_database(url) as (_engine, sessions):
        with sessions() as session, session.begin():
            seed_users(session, n, inactive_fraction=fraction, now=NOW)
        with sessions() as session:
            return set(session.scalars(select(User.user_id).where(User.last_sign_in_at < inactivity_cutoff(NOW))))


def _marks(url: str) -> int:
    with account_database(url) as (engine, _sessions):
        return count_rows(engine, "sweep_marks")


def _sweep(pipeline: Pipeline, url: str, *args: str) -> dict[str, Any]:
    result = run_cli(pipeline, "sweep", "inactive", "--now", NOW.isoformat(), "--json", *args,
                     ERASURE_ACCOUNT_DATABASE_URL=url)
    assert result.exit_code == 0, result.output
    return summary(result)


def _unique(events: list[dict[str, Any]]) -> dict[str, set[str]]:
    """Request ids per user among the events (a re-published copy of the same event counts once)."""
    per_user: dict[str, set[str]] = {}
    for event in events:
        assert event["reason"] == "inactivity" and event["replay"] is False
        per_user.setdefault(event["user_id"], set()).add(event["request_id"])
    return per_user


# ---- small: behaviour -------------------------------------------------------------------------------
def test_sweep_deregisters_exactly_the_inactive_accounts_and_the_account_erases_them(
    erasure_pipeline: Pipeline, account_url: str
) -> None:
    inactive = _seed(account_url, 400, 0.25)
    running = erasure_pipeline.start(build(), account_url)
    first = _sweep(erasure_pipeline, account_url, "--batch", "30")
    assert (first["selected"], first["deregistered"], first["skipped_already_swept"]) == (100, 100, 0)
    per_user = _unique(wait_until(lambda: deregistrations(erasure_pipeline), what="the sweep's events"))
    assert set(per_user) == inactive and all(len(ids) == 1 for ids in per_user.values())
    wait_until(lambda: count_rows(running.engine, "users") == 300, what="the account to erase the inactive")
    again = _sweep(erasure_pipeline, account_url)
    assert (again["selected"], again["published"]) == (0, 0)


def test_dry_run_counts_without_writing_or_publishing(erasure_pipeline: Pipeline, account_url: str) -> None:
    erasure_pipeline.declare()
    _seed(account_url, 200, 0.2)
    dry = _sweep(erasure_pipeline, account_url, "--dry-run")
    assert (dry["selected"], dry["would_deregister"], dry["published"], dry["dry_run"]) == (40, 40, 0, True)
    assert "deregistered" not in dry
    assert _marks(account_url) == 0
    assert deregistrations(erasure_pipeline) == []


def test_accounts_swept_once_are_skipped_while_their_erasure_is_pending(
    erasure_pipeline: Pipeline, account_url: str
) -> None:
    erasure_pipeline.declare()
    _seed(account_url, 100, 0.3)
    _sweep(erasure_pipeline, account_url, "--batch", "7")
    again = _sweep(erasure_pipeline, account_url)
    assert (again["selected"], again["deregistered"], again["skipped_already_swept"], again["published"]) == \
        (30, 0, 30, 0)
    assert len(deregistrations(erasure_pipeline)) == 30


# ---- 100k in a child process: memory, idempotency, crashes -----------------------------------------
@dataclass(frozen=True)
class Run:
    code: int
    summary: dict[str, Any]
    peak_rss_mb: float | None


# A fork carries the parent's memory into the child's peak RSS (pytest's, here), so the measured sweep is
# started by a small launcher that reports getrusage of exactly its own child.
LAUNCHER = """
import os, subprocess, sys
child = subprocess.Popen(sys.argv[1:])
_pid, status, usage = os.wait4(child.pid, 0)
print(f"peak_rss_kb={usage.ru_maxrss}", file=sys.stderr)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def _start(pipeline: Pipeline, url: str, *, measure: bool = False, **extra: str) -> subprocess.Popen[bytes]:
    sweep = [sys.executable, "-m", "services.cli", "sweep", "inactive", "--now", NOW.isoformat(), "--json"]
    args = [sys.executable, "-c", LAUNCHER, *sweep] if measure else sweep
    env = {**os.environ, "ERASURE_AMQP_URL": pipeline.settings.amqp_url, "ERASURE_NAMESPACE": pipeline.namespace,
           "ERASURE_ACCOUNT_DATABASE_URL": url, "ERASURE_LOG_LEVEL": "WARNING", **extra}
    return subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _finish(child: subprocess.Popen[bytes]) -> Run:
    """Wait for the child; its JSON summary, and its peak RSS if it was started to be measured."""
    out, err = child.communicate(timeout=120)
    lines = out.decode().strip().splitlines()
    rss = [line.split("=", 1)[1] for line in err.decode().splitlines() if line.startswith("peak_rss_kb=")]
    return Run(child.returncode, json.loads(lines[-1]) if child.returncode == 0 else {},
               int(rss[-1]) / 1024 if rss else None)


@pytest.mark.slow
def test_sweep_of_100k_accounts_is_exact_idempotent_and_flat_in_memory(
    erasure_pipeline: Pipeline, account_url: str, db_backend: str
) -> None:
    erasure_pipeline.declare()
    inactive = _seed(account_url, BIG, 0.1)
    first = _finish(_start(erasure_pipeline, account_url, measure=True))
    assert first.code == 0 and first.peak_rss_mb is not None
    print(f"\nsweep of {BIG} accounts ({db_backend}): {first.summary['seconds']} s, "
          f"peak RSS {first.peak_rss_mb:.0f} MB")
    assert (first.summary["selected"], first.summary["published"]) == (len(inactive), len(inactive))
    per_user = _unique(deregistrations(erasure_pipeline))
    assert set(per_user) == inactive and all(len(ids) == 1 for ids in per_user.values())
    assert first.peak_rss_mb < 160, "batches of 1000 keep memory near the interpreter's own ~80 MB"

    second = _finish(_start(erasure_pipeline, account_url))
    assert second.code == 0
    assert (second.summary["published"], second.summary["skipped_already_swept"]) == (0, len(inactive))
    assert deregistrations(erasure_pipeline) == []


@pytest.mark.slow
def test_sweep_killed_half_way_resumes_and_deregisters_nobody_twice(
    erasure_pipeline: Pipeline, account_url: str, db_backend: str
) -> None:
    erasure_pipeline.declare()
    inactive = _seed(account_url, BIG, 0.1)
    crashed = _finish(_start(erasure_pipeline, account_url, ERASURE_FAILPOINTS="sweep_after_batch"))
    assert crashed.code == 70, "the failpoint ends the process right after the first batch commit"
    assert _marks(account_url) == 1000
    killed = _start(erasure_pipeline, account_url)
    wait_until(lambda: _marks(account_url) >= 4000, timeout=30, interval=0.01, what="a few more batches")
    os.kill(killed.pid, signal.SIGKILL)
    assert _finish(killed).code == -signal.SIGKILL
    assert _marks(account_url) < len(inactive), "killed half-way, not at the end"

    resumed = _finish(_start(erasure_pipeline, account_url))
    assert resumed.code == 0
    assert resumed.summary["skipped_already_swept"] > 0
    events = deregistrations(erasure_pipeline)
    per_user = _unique(events)
    assert set(per_user) == inactive, "every inactive account was published"
    assert all(len(ids) == 1 for ids in per_user.values()), "no account got two requests"
    copies = Counter(Counter(e["request_id"] for e in events).values())
    print(f"\n{len(events)} events for {len(per_user)} accounts; resent copies of one event: {copies}")
    assert _marks(account_url) == len(inactive)
    with account_database(account_url) as (engine, _sessions):
        assert count_rows(engine, "outbox") == 0
        with engine.connect() as conn:
            marked = set(conn.execute(select(SweepMark.user_id)).scalars())
    assert marked == inactive
