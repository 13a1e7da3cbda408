"""The key store on SQLite and PostgreSQL: data keys, destruction, KEK rotation, wrong or missing KEKs, blind index."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import select

from shared.db import make_engine
from shared.keys import (
    KeyConfigError,
    KeySettings,
    KeyStore,
    load_material,
    new_material,
    seal,
    unseal,
    use_key_store,
    write_key_file,
)
from shared.keys.store import data_keys

CONTEXT = "account.users.name"


@pytest.fixture
def store(db_backend: str, empty_database_url: str) -> Iterator[KeyStore]:
    """A key store on a fresh database of the backend, made the process's key store for the test."""
    engine = make_engine(empty_database_url)
    made = KeyStore(engine, new_material(), cache_seconds=0)
    made.ensure_schema()
    previous = use_key_store(made)
    try:
        yield made
    finally:
        use_key_store(previous)
        engine.dispose()


def test_a_sealed_value_reads_back_until_its_key_is_destroyed(store: KeyStore) -> None:
    sealed = seal("user:u-1", CONTEXT, "Åsa Öberg")
    other = seal("user:u-2", CONTEXT, "Per Persson")
    assert "Åsa" not in sealed
    assert unseal(CONTEXT, sealed) == "Åsa Öberg"
    assert store.destroy("user:u-1") == 1
    assert unseal(CONTEXT, sealed) is None
    assert unseal(CONTEXT, other) == "Per Persson"
    assert store.destroy("user:u-1") == 0  # idempotent
    assert store.destroyed_keys("user:u-1") == 1
    with store.engine.connect() as conn:
        wrapped = conn.execute(select(data_keys.c.wrapped).where(data_keys.c.subject == "user:u-1")).scalar_one()
    assert wrapped is None


def test_a_sealed_value_moved_to_another_column_does_not_open(store: KeyStore) -> None:
    sealed = seal("user:u-1", CONTEXT, "Åsa Öberg")
    with pytest.raises(ValueError, match="does not belong there"):
        unseal("account.users.email", sealed)


def test_a_destroyed_subject_gets_a_new_key_and_old_values_stay_unreadable(store: KeyStore) -> None:
    old = seal("user:u-1", CONTEXT, "before")
    store.destroy("user:u-1")
    new = seal("user:u-1", CONTEXT, "after")
    assert unseal(CONTEXT, old) is None
    assert unseal(CONTEXT, new) == "after"


def test_rotation_rewraps_every_live_key_and_both_keks_open_meanwhile(store: KeyStore) -> None:
    sealed = [seal(f"user:u-{i}", CONTEXT, f"name {i}") for i in range(5)]
    store.destroy("user:u-0")
    rotated = replace(store.material, keks={**store.material.keks, "k2": b"\x02" * 32}, kek_id="k2")
    store.material = rotated
    store.forget_cache()
    assert unseal(CONTEXT, sealed[1]) == "name 1"  # still under k1, read with both configured
    assert store.rewrap(batch=2) == 4
    assert store.status()["live_by_kek"] == {"k2": 4}
    store.material = replace(rotated, keks={"k2": b"\x02" * 32})
    store.forget_cache()
    assert store.check() == {"k2": 4}
    assert [unseal(CONTEXT, s) for s in sealed] == [None, "name 1", "name 2", "name 3", "name 4"]


def test_a_wrong_or_missing_kek_is_refused_with_the_reason(store: KeyStore) -> None:
    seal("user:u-1", CONTEXT, "x")
    good = store.material
    store.material = replace(good, keks={"k1": b"\x01" * 32})
    with pytest.raises(KeyConfigError, match="wrong key"):
        store.check()
    store.material = replace(good, keks={"other": b"\x01" * 32}, kek_id="other")
    with pytest.raises(KeyConfigError, match="not configured"):
        store.check()


def test_keys_come_from_the_environment_or_the_file_never_a_default(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ERASURE_KEYS_KEK", raising=False)
    with pytest.raises(KeyConfigError, match="erasure keys generate"):
        load_material(KeySettings(file=tmp_path / "absent.json"))
    write_key_file(tmp_path / "keys.json", new_material("k9"))
    assert (tmp_path / "keys.json").stat().st_mode & 0o077 == 0
    assert load_material(KeySettings(file=tmp_path / "keys.json")).kek_id == "k9"
    monkeypatch.setenv("ERASURE_KEYS_KEK", "k1:bm90LWJhc2U2NA")
    with pytest.raises(KeyConfigError):
        load_material(KeySettings())


def test_the_blind_index_finds_an_address_however_it_is_written(store: KeyStore) -> None:
    assert store.blind_index(" Anna.Berg@Example.SE ") == store.blind_index("anna.berg@example.se")
    assert store.blind_index("anna.berg@example.se") != store.blind_index("anna.berg@example.com")
    other = KeyStore(store.engine, new_material())
    assert other.blind_index("anna.berg@example.se") != store.blind_index("anna.berg@example.se")


def test_only_services_that_touch_sealed_data_open_the_key_store() -> None:
    from schemas import UserDeregistered
    from services.registry import SERVICES, load
    from shared.consumer import needs_key_store
    from shared.db import runtime_metadata
    from shared.service import Service

    assert all(needs_key_store(load(name)) for name in SERVICES), "every slice and the ledger check their keys"
    plain = Service(name="no-personal-data", handlers={UserDeregistered: lambda event, ctx: None},
                    metadata=runtime_metadata(), build_deps=lambda _engine: None, database_only=True)
    assert not needs_key_store(plain), "a service with no sealed column and no sealed event needs no keys"
