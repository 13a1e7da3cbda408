"""The key store: per-subject AES-256-GCM data keys, wrapped by a key-encryption key, in a database of their own."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import (
    Column,
    DateTime,
    Engine,
    LargeBinary,
    MetaData,
    String,
    Table,
    func,
    insert,
    select,
    update,
)

from shared.keys.config import KEY_BYTES, KeyConfigError, KeyMaterial

MIGRATIONS = Path(__file__).with_name("migrations")
NONCE_BYTES = 12
KEY_ID_BYTES = 16
CACHE_ENTRIES = 10_000  # unwrapped keys a process keeps at most (the oldest go first): memory stays flat

metadata = MetaData()
data_keys = Table(
    "data_keys",
    metadata,
    Column("key_id", String(32), primary_key=True),  # random hex: names the key in every ciphertext
    Column("subject", String(120), nullable=False, index=True),  # "user:<id>", "notice:<request id>"
    Column("kek_id", String(64), nullable=True),
    Column("wrapped", LargeBinary, nullable=True),  # nonce + AES-GCM(KEK) of the data key; NULL once destroyed
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("destroyed_at", DateTime(timezone=True), nullable=True),
)


def user_subject(user_id: str) -> str:
    """The key subject of a user's personal data."""
    return f"user:{user_id}"


def notice_subject(request_id: str) -> str:
    """The key subject of an address kept only to tell the user their erasure request is done."""
    return f"notice:{request_id}"


def normalise_email(address: str) -> str:
    """An address as compared for lookups: NFKC, surrounding blanks dropped, lower case."""
    return unicodedata.normalize("NFKC", address).strip().lower()


@dataclass
class _Cached:
    key_id: str
    subject: str
    aead: AESGCM
    at: float


class KeyDestroyedError(LookupError):
    """The data key was destroyed: what it sealed can no longer be read."""


class KeyStore:
    """Creates, unwraps, re-wraps and destroys data keys; unwrapped keys are cached for `cache_seconds`."""

    def __init__(self, engine: Engine, material: KeyMaterial, *, cache_seconds: float = 30.0) -> None:
        self.engine = engine
        self.material = material
        self.cache_seconds = cache_seconds
        self._by_id: dict[str, _Cached] = {}
        self._active: dict[str, str] = {}  # subject -> key id of its newest live key
        self._lock = threading.Lock()
        self.destroyed_since_wipe = False  # whether the journal may still hold a destroyed key's wrapped form

    def _read(self) -> Any:
        """A connection for reading: on SQLite a DEFERRED transaction, so that readers in six processes never
        queue for the write lock."""
        return self.engine.connect().execution_options(sqlite_begin="DEFERRED")

    # -- schema and checks -------------------------------------------------------------------------------------

    def ensure_schema(self) -> None:
        """Bring the key database to the newest schema (its own Alembic migrations). Six services starting at
        once on a new key database race to create it: the losers find it made when they look again."""
        from sqlalchemy.exc import DBAPIError

        from shared.migrations import upgrade

        for attempt in range(3):
            try:
                upgrade(self.engine, MIGRATIONS, with_runtime=False)
                return
            except DBAPIError:
                if attempt == 2:
                    raise
                time.sleep(0.5 + attempt)

    def check(self) -> dict[str, int]:
        """Prove the configured key-encryption keys open the stored data keys: one live key per KEK id is
        unwrapped. Raises KeyConfigError naming the KEK that is missing or wrong; returns live keys per KEK id."""
        with self._read() as conn:
            counts = dict(conn.execute(
                select(data_keys.c.kek_id, func.count()).where(data_keys.c.wrapped.is_not(None))
                .group_by(data_keys.c.kek_id)).all())
            for kek_id, live in counts.items():
                if kek_id not in self.material.keks:
                    raise KeyConfigError(f"{live} data keys are wrapped by key-encryption key {kek_id!r}, "
                                         f"which is not configured ({self.material.origin}); restore it")
                row = conn.execute(select(data_keys.c.key_id, data_keys.c.subject, data_keys.c.wrapped)
                                   .where(data_keys.c.kek_id == kek_id, data_keys.c.wrapped.is_not(None))
                                   .limit(1)).one()
                try:
                    self._unwrap(kek_id, row.key_id, row.subject, row.wrapped)
                except InvalidTag:
                    raise KeyConfigError(f"key-encryption key {kek_id!r} ({self.material.origin}) does not open the "
                                         "data keys wrapped with it: it is the wrong key; restore the right one") \
                        from None
        return {str(k): int(v) for k, v in counts.items()}

    # -- wrapping ----------------------------------------------------------------------------------------------

    @staticmethod
    def _wrap_aad(key_id: str, subject: str) -> bytes:
        return f"data-key\x1f{key_id}\x1f{subject}".encode()

    def _wrap(self, key_id: str, subject: str, key: bytes) -> tuple[str, bytes]:
        kek_id = self.material.kek_id
        nonce = secrets.token_bytes(NONCE_BYTES)
        return kek_id, nonce + AESGCM(self.material.keks[kek_id]).encrypt(nonce, key,
                                                                           self._wrap_aad(key_id, subject))

    def _unwrap(self, kek_id: str, key_id: str, subject: str, wrapped: bytes) -> bytes:
        kek = self.material.keks.get(kek_id)
        if kek is None:
            raise KeyConfigError(f"data key {key_id} is wrapped by key-encryption key {kek_id!r}, which is not "
                                 f"configured ({self.material.origin})")
        wrapped = bytes(wrapped)
        return AESGCM(kek).decrypt(wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], self._wrap_aad(key_id, subject))

    # -- data keys ---------------------------------------------------------------------------------------------

    def _fresh(self, entry: _Cached | None) -> _Cached | None:
        if entry is None or time.monotonic() - entry.at > self.cache_seconds:
            return None
        return entry

    def active_key(self, subject: str) -> tuple[str, AESGCM]:
        """The subject's newest live data key (created on first use): its id and cipher."""
        with self._lock:
            key_id = self._active.get(subject)
            entry = self._fresh(self._by_id.get(key_id)) if key_id else None
        if entry is not None:
            return entry.key_id, entry.aead
        with self._read() as conn:
            row = conn.execute(
                select(data_keys.c.key_id, data_keys.c.kek_id, data_keys.c.wrapped)
                .where(data_keys.c.subject == subject, data_keys.c.wrapped.is_not(None))
                .order_by(data_keys.c.created_at.desc()).limit(1)).first()
        if row is not None:
            raw = self._unwrap(row.kek_id, row.key_id, subject, row.wrapped)
            key_id = row.key_id
        else:
            key_id, raw = secrets.token_hex(KEY_ID_BYTES), AESGCM.generate_key(bit_length=KEY_BYTES * 8)
            kek_id, wrapped = self._wrap(key_id, subject, raw)
            with self.engine.begin() as conn:
                conn.execute(insert(data_keys).values(
                    key_id=key_id, subject=subject, kek_id=kek_id, wrapped=wrapped, created_at=datetime.now(UTC)))
        return self._remember(key_id, subject, raw, active=True).key_id, self._by_id[key_id].aead

    def ensure_keys(self, subjects: list[str]) -> None:
        """Make sure each subject has a live data key, creating the missing ones in one transaction (bulk loads)."""
        subjects = list(dict.fromkeys(subjects))
        with self.engine.begin() as conn:
            have = set(conn.execute(select(data_keys.c.subject).where(
                data_keys.c.subject.in_(subjects), data_keys.c.wrapped.is_not(None))).scalars())
            rows, made = [], []
            for subject in subjects:
                if subject in have:
                    continue
                key_id, raw = secrets.token_hex(KEY_ID_BYTES), AESGCM.generate_key(bit_length=KEY_BYTES * 8)
                kek_id, wrapped = self._wrap(key_id, subject, raw)
                rows.append({"key_id": key_id, "subject": subject, "kek_id": kek_id, "wrapped": wrapped,
                             "created_at": datetime.now(UTC)})
                made.append((key_id, subject, raw))
            if rows:
                conn.execute(insert(data_keys), rows)
        for key_id, subject, raw in made:
            self._remember(key_id, subject, raw, active=True)

    def _remember(self, key_id: str, subject: str, raw: bytes, *, active: bool) -> _Cached:
        entry = _Cached(key_id, subject, AESGCM(raw), time.monotonic())
        with self._lock:
            while len(self._by_id) >= CACHE_ENTRIES:
                oldest = self._by_id.pop(next(iter(self._by_id)))
                if self._active.get(oldest.subject) == oldest.key_id:
                    del self._active[oldest.subject]
            self._by_id[key_id] = entry
            if active:
                self._active[subject] = key_id
        return entry

    def issue(self, subject: str) -> tuple[str, bytes]:
        """The subject's live data key itself (id and raw bytes), for a publisher that seals events for it."""
        key_id, _aead = self.active_key(subject)
        with self._read() as conn:
            row = conn.execute(select(data_keys.c.kek_id, data_keys.c.wrapped)
                               .where(data_keys.c.key_id == key_id)).one()
        if row.wrapped is None:
            raise KeyDestroyedError(key_id)
        return key_id, self._unwrap(row.kek_id, key_id, subject, row.wrapped)

    def key_by_id(self, key_id: str) -> tuple[str, AESGCM]:
        """The subject and cipher of a data key named in a ciphertext; KeyDestroyedError once it is destroyed."""
        with self._lock:
            entry = self._fresh(self._by_id.get(key_id))
        if entry is not None:
            return entry.subject, entry.aead
        with self._read() as conn:
            row = conn.execute(select(data_keys.c.subject, data_keys.c.kek_id, data_keys.c.wrapped)
                               .where(data_keys.c.key_id == key_id)).first()
        if row is None or row.wrapped is None:
            raise KeyDestroyedError(key_id)
        raw = self._unwrap(row.kek_id, key_id, row.subject, row.wrapped)
        return row.subject, self._remember(key_id, row.subject, raw, active=False).aead

    def destroy(self, subject: str) -> int:
        """Destroy every data key of the subject (idempotent): the wrapped key is overwritten with NULL.
        Returns how many were live."""
        with self.engine.begin() as conn:
            destroyed = conn.execute(
                update(data_keys).where(data_keys.c.subject == subject, data_keys.c.wrapped.is_not(None))
                .values(wrapped=None, kek_id=None, destroyed_at=datetime.now(UTC))).rowcount
        with self._lock:
            self._active.pop(subject, None)
            for key_id in [k for k, e in self._by_id.items() if e.subject == subject]:
                del self._by_id[key_id]
            self.destroyed_since_wipe = self.destroyed_since_wipe or bool(destroyed)
        return int(destroyed or 0)

    def destroyed_keys(self, subject: str) -> int:
        """How many data keys of the subject are destroyed, in all."""
        with self._read() as conn:
            return int(conn.execute(select(func.count()).select_from(data_keys).where(
                data_keys.c.subject == subject, data_keys.c.wrapped.is_(None))).scalar_one())

    def wipe_journal(self) -> None:
        """Truncate the key database's SQLite journal if a key was destroyed since the last time."""
        from shared.db import wipe_sqlite_journal

        if self.destroyed_since_wipe:
            self.destroyed_since_wipe = False
            wipe_sqlite_journal(self.engine)

    def forget_cache(self) -> None:
        """Drop every unwrapped key held in memory (tests; after a rotation)."""
        with self._lock:
            self._by_id.clear()
            self._active.clear()

    def rewrap(self, batch: int = 500) -> int:
        """Re-wrap every live data key not yet under the current key-encryption key, in batches, while the
        services run (they read either wrapping). Returns how many were re-wrapped."""
        done = 0
        current = self.material.kek_id
        while True:
            with self.engine.begin() as conn:
                rows = conn.execute(
                    select(data_keys.c.key_id, data_keys.c.subject, data_keys.c.kek_id, data_keys.c.wrapped)
                    .where(data_keys.c.wrapped.is_not(None), data_keys.c.kek_id != current)
                    .limit(batch)).all()
                for row in rows:
                    raw = self._unwrap(row.kek_id, row.key_id, row.subject, row.wrapped)
                    kek_id, wrapped = self._wrap(row.key_id, row.subject, raw)
                    # Only if it is still live and unchanged: a key destroyed meanwhile stays destroyed.
                    conn.execute(update(data_keys).where(data_keys.c.key_id == row.key_id,
                                                         data_keys.c.kek_id == row.kek_id)
                                 .values(kek_id=kek_id, wrapped=wrapped))
            done += len(rows)
            if len(rows) < batch:
                return done

    def status(self) -> dict[str, Any]:
        """Counts of live and destroyed data keys, live keys per key-encryption key, and the configured KEKs."""
        with self._read() as conn:
            per_kek = dict(conn.execute(
                select(data_keys.c.kek_id, func.count()).where(data_keys.c.wrapped.is_not(None))
                .group_by(data_keys.c.kek_id)).all())
            destroyed = conn.execute(select(func.count()).where(data_keys.c.wrapped.is_(None))
                                     .select_from(data_keys)).scalar_one()
        return {
            "live": sum(per_kek.values()), "destroyed": destroyed,
            "live_by_kek": {str(k): int(v) for k, v in per_kek.items()},
            "keks_configured": sorted(self.material.keks), "kek_id": self.material.kek_id,
            "keys_from": self.material.origin,
        }

    def subjects_destroyed(self, subjects: list[str]) -> Iterator[str]:
        """Those of `subjects` whose every data key is destroyed (and that had one)."""
        with self._read() as conn:
            rows = conn.execute(select(data_keys.c.subject, func.count(data_keys.c.wrapped))
                                .where(data_keys.c.subject.in_(subjects)).group_by(data_keys.c.subject)).all()
        return (row[0] for row in rows if row[1] == 0)

    # -- blind index -------------------------------------------------------------------------------------------

    def blind_index(self, address: str) -> str:
        """Keyed HMAC-SHA256 of a normalised e-mail address: finds a row by address without storing it."""
        return hmac.new(self.material.index_key, normalise_email(address).encode(), hashlib.sha256).hexdigest()
