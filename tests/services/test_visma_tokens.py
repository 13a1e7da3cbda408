"""Visma's refresh tokens work once. bookkeeping keeps the newest in its database, so a restart goes on from it,
a new authorisation in the settings takes over, and a replica whose token was renewed by another reads it back."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from schemas.examples import example_purchase
from services.bookkeeping.main import build
from services.bookkeeping.models import MIGRATIONS, Sale, metadata
from services.bookkeeping.tokens import TokenStore
from services.sandbox import Sandbox, SandboxConfig
from services.vendors.visma import VismaClient
from shared.db import ensure_schema, make_engine
from shared.testing import Pipeline, wait_until

CONFIGURED = SandboxConfig().visma_refresh_token
ANNA = {"Name": "Anna Andersson", "InvoiceCity": "Umeå", "InvoicePostalCode": "90326", "IsPrivatePerson": True,
        "IsActive": True, "TermsOfPaymentId": SandboxConfig().visma_terms_of_payment_id}


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    made = make_engine(f"sqlite:///{tmp_path}/bookkeeping.db")
    ensure_schema(made, metadata, MIGRATIONS)
    yield made
    made.dispose()


def _client(sandbox: Sandbox, store: TokenStore, refresh_token: str | None) -> VismaClient:
    config = SandboxConfig()
    return VismaClient(
        f"{sandbox.http_url}/visma", access_token=None, refresh_token=refresh_token,
        client_id=config.visma_client_id, client_secret=config.visma_client_secret,
        token_url=f"{sandbox.http_url}/visma/connect/token",
        on_tokens=lambda _access, refresh: store.save(refresh), stored_refresh_token=store.latest)


def _renewals(sandbox: Sandbox) -> list[dict[str, Any]]:
    return [r for r in sandbox.requests("visma") if r["path"] == "/connect/token"]


def test_a_restart_goes_on_from_the_refresh_token_visma_issued_last(
    erasure_pipeline: Pipeline, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ERASURE_BOOKKEEPING_VISMA_ACCESS_TOKEN", "")  # begin from the refresh token
    database = erasure_pipeline.database_url("bookkeeping")
    booked = []
    for run in (1, 2):  # the second run is configured with the same, by now retired, refresh token
        running = erasure_pipeline.start(build(), database)
        [sent] = erasure_pipeline.publish(example_purchase(f"bk-token-{run}"))
        running.wait_handled(sent.event_id)
        with running.engine.connect() as conn:
            booked = list(conn.execute(select(Sale.purchase_id)).scalars())
        running.stop()
    assert sorted(booked) == ["P-2026-bk-token-1", "P-2026-bk-token-2"]
    assert [r["status"] for r in _renewals(sandbox)] == [200, 200], "each start renewed with a token that worked"
    assert erasure_pipeline.depth(f"{erasure_pipeline.namespace}.bookkeeping.dead") == 0


def test_a_refresh_token_new_to_the_store_means_someone_authorised_again(engine: Engine) -> None:
    store = TokenStore(engine)
    assert store.starting_token("first") == "first"
    store.save("renewed")
    store.close()
    assert TokenStore(engine).starting_token("first") == "renewed", "the configured token was used up"
    assert TokenStore(engine).starting_token("authorised again") == "authorised again"
    assert TokenStore(engine).latest() == "authorised again"


def test_a_replica_whose_token_another_renewed_reads_the_new_one_back(engine: Engine, sandbox: Sandbox) -> None:
    store = TokenStore(engine)
    start = store.starting_token(CONFIGURED)
    with _client(sandbox, store, start) as first, _client(sandbox, store, start) as second:
        first.upsert_customer("1001", ANNA)  # renews: CONFIGURED is retired, its successor stored
        wait_until(lambda: store.latest() != CONFIGURED, what="the renewed token stored")
        second.upsert_customer("1002", ANNA)  # CONFIGURED is refused; the stored one works
    store.close()
    assert [r["status"] for r in _renewals(sandbox)] == [200, 400, 200]
    assert len(sandbox.state()["visma"]["customers"]) == 2
