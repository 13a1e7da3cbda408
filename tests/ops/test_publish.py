"""`erasure publish` against a running pipeline: every published example is a new request that completes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from services.sandbox import Sandbox
from tests.flows import completed, point_at_sandbox, run_cli, start_all, take_events, url_of


def test_deregistrations_published_for_two_users_both_complete(erasure_pipeline, db_backend,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    with Sandbox() as sandbox:
        point_at_sandbox(sandbox, monkeypatch)
        running = start_all(erasure_pipeline)
        started = datetime.now(UTC)
        sent = {}
        for user in ("u-2001", "u-2002"):
            result = run_cli(erasure_pipeline, "publish", "deregistration", "--user", user, "--json")
            assert result.exit_code == 0, result.output
            [line] = result.stdout.splitlines()
            sent[user] = json.loads(line)["request_id"]
        assert len(set(sent.values())) == 2, "each publish is a new request"
        for user, request_id in sent.items():
            status = completed(running["ledger"], request_id)
            assert status.user_id == user
            assert started - timedelta(seconds=5) <= status.requested_at.replace(tzinfo=UTC) <= datetime.now(UTC)
            found = run_cli(erasure_pipeline, "status", "--user", user, "--json",
                            ERASURE_LEDGER_DATABASE_URL=url_of(running["ledger"]))
            assert found.exit_code == 0, found.output
            [request] = json.loads(found.stdout)
            assert (request["request_id"], request["status"]) == (request_id, "complete")


def test_every_published_example_is_a_new_fact(erasure_pipeline) -> None:
    erasure_pipeline.declare()
    started = datetime.now(UTC) - timedelta(seconds=5)
    for kind in ("deregistration", "purchase", "consent"):
        result = run_cli(erasure_pipeline, "publish", kind, "--count", "2", "--json")
        assert result.exit_code == 0, result.output
    ledger = [e["data"] for e in take_events(erasure_pipeline, f"{erasure_pipeline.namespace}.ledger")]
    assert len({d["request_id"] for d in ledger}) == 2
    assert all(datetime.fromisoformat(d["requested_at"].replace("Z", "+00:00")) >= started for d in ledger)
    payment = [e["data"] for e in take_events(erasure_pipeline, f"{erasure_pipeline.namespace}.payment")
               if e["type"].endswith("purchase.completed.v1")]
    assert len({d["purchase_id"] for d in payment}) == 2
    assert all(datetime.fromisoformat(d["purchased_at"].replace("Z", "+00:00")) >= started for d in payment)
    consent = [e["data"] for e in take_events(erasure_pipeline, f"{erasure_pipeline.namespace}.newsletter")
               if e["type"].endswith("consent_changed.v1")]
    assert len(consent) == 2
    assert all(datetime.fromisoformat(d["changed_at"].replace("Z", "+00:00")) >= started for d in consent)
