"""A destroyed data key's left-over copies, read from the disk: gone from SQLite's files; on PostgreSQL found in
dead tuples and the WAL, and opening nothing once the key-encryption key that wrapped them is retired."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select, text

from shared.db import make_engine
from shared.keys import KeyConfigError, KeyStore, new_material, seal, unseal, use_key_store
from shared.keys.store import data_keys
from tests.chaos.harness import PostgresCluster, private_postgres

CONTEXT = "account.users.name"
SUBJECTS = [f"user:u-copies-{i}" for i in range(40)]
VICTIM = SUBJECTS[7]


def disk_hits(root: Path, needle: bytes) -> dict[str, int]:
    """How often `needle` occurs in each file under `root` (only files holding it)."""
    hits: dict[str, int] = {}
    for path in (p for p in root.rglob("*") if p.is_file()):
        try:
            found = path.read_bytes().count(needle)
        except OSError:  # a temporary file removed while we walk
            continue
        if found:
            hits[str(path.relative_to(root))] = found
    return hits


@pytest.fixture(scope="module")
def own_postgres() -> Iterator[PostgresCluster]:
    """A PostgreSQL cluster of our own, so that its data files and WAL can be read."""
    with private_postgres("reading a cluster's files") as cluster:
        yield cluster


def _filled(url: str) -> tuple[KeyStore, dict[str, str], bytes]:
    """A key store at `url` with a sealed name per subject; the sealed values and the victim's wrapped key."""
    store = KeyStore(make_engine(url), new_material(), cache_seconds=0)
    store.ensure_schema()
    use_key_store(store)
    sealed = {s: seal(s, CONTEXT, f"name of {s}") for s in SUBJECTS}
    with store.engine.connect() as conn:
        wrapped = conn.execute(select(data_keys.c.wrapped).where(data_keys.c.subject == VICTIM)).scalar_one()
    return store, sealed, bytes(wrapped)


def _retire_old_kek(store: KeyStore) -> None:
    """`erasure keys rotate` then `rotate --retire k1`: every live key re-wrapped, the old KEK forgotten."""
    store.material = replace(store.material, keks={**store.material.keks, "k2": os.urandom(32)}, kek_id="k2")
    store.forget_cache()
    store.rewrap(batch=16)
    store.material = replace(store.material, keks={"k2": store.material.keks["k2"]})
    store.forget_cache()


def test_sqlite_keeps_no_copy_of_a_destroyed_key(tmp_path: Path) -> None:
    previous = use_key_store(None)
    try:
        store, sealed, wrapped = _filled(f"sqlite:///{tmp_path / 'keys.db'}")
        assert disk_hits(tmp_path, wrapped), "the scan finds the wrapped key while it lives"
        store.destroy(VICTIM)
        store.wipe_journal()  # as the ledger does after destroying keys
        assert disk_hits(tmp_path, wrapped) == {}, "secure_delete and the truncated WAL leave no copy"
        assert unseal(CONTEXT, sealed[VICTIM]) is None
        assert unseal(CONTEXT, sealed[SUBJECTS[0]]) == f"name of {SUBJECTS[0]}"
        store.engine.dispose()
    finally:
        use_key_store(previous)


def test_postgresql_copies_of_a_destroyed_key_open_nothing_once_its_kek_is_retired(
        own_postgres: PostgresCluster, capsys: pytest.CaptureFixture[str]) -> None:
    previous = use_key_store(None)
    url = own_postgres.create_database("keys_copies")
    admin = create_engine(own_postgres.admin_url, isolation_level="AUTOCOMMIT")
    try:
        store, sealed, wrapped = _filled(url)
        with admin.connect() as conn:  # the nightly backup of the key database, taken before the erasure
            store.engine.dispose()
            conn.execute(text('CREATE DATABASE "keys_backup" TEMPLATE "keys_copies"'))
        store.destroy(VICTIM)
        with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM data_keys"))  # what autovacuum does: it frees the dead tuple, it wipes nothing
        with admin.connect() as conn:
            conn.execute(text("CHECKPOINT"))
        with admin.connect() as conn:
            oid = {row.datname: row.oid for row in conn.execute(text("SELECT datname, oid FROM pg_database"))}
        hits = disk_hits(own_postgres.root / "data", wrapped)
        in_backup = {f: n for f, n in hits.items() if f.startswith(f"base/{oid['keys_backup']}/")}
        left = {f: n for f, n in hits.items() if f not in in_backup}
        assert in_backup, "the scan finds the key in the backup, where it still lives"
        assert unseal(CONTEXT, sealed[VICTIM]) is None

        _retire_old_kek(store)
        assert unseal(CONTEXT, sealed[SUBJECTS[0]]) == f"name of {SUBJECTS[0]}", "the living read on"
        # Every copy left behind (the backup here; dead tuples and WAL hold the same bytes) is wrapped by k1.
        backup = KeyStore(make_engine(url.rsplit("/", 1)[0] + "/keys_backup"), store.material, cache_seconds=0)
        with backup.engine.connect() as conn:
            row = conn.execute(select(data_keys.c.key_id, data_keys.c.kek_id, data_keys.c.wrapped)
                               .where(data_keys.c.subject == VICTIM)).one()
        assert bytes(row.wrapped) == wrapped and row.kek_id == "k1"
        with pytest.raises(KeyConfigError, match="'k1', which is not configured"):
            backup.key_by_id(row.key_id)
        backup.engine.dispose()
        with capsys.disabled():
            print(f"\nPostgreSQL, a destroyed key's wrapped bytes after VACUUM and CHECKPOINT: {sum(left.values())} "
                  f"copies outside the backup (key database {oid['keys_copies']}: {sorted(left)}); "
                  f"none opens after k1 is retired")
    finally:
        use_key_store(previous)
        admin.dispose()
