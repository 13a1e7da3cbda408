"""Sealed columns: personal data at rest encrypted under its subject's data key, declared once per model."""

from __future__ import annotations

import base64
import binascii
import secrets
from typing import Any

from cryptography.exceptions import InvalidTag
from sqlalchemy import Text, event
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import attributes
from sqlalchemy.types import TypeDecorator

from shared.keys.store import KEY_ID_BYTES, NONCE_BYTES, KeyDestroyedError, KeyStore, user_subject

PREFIX = "ev1:"
_state: dict[str, KeyStore | None] = {"store": None}
_sealing = {"on": True}
_services: set[str] = set()  # every service that declared sealed columns in this process


class Subject(str):
    """A plain value together with the key subject it belongs to: what a sealed column accepts to write."""

    __slots__ = ("subject",)
    subject: str

    def __new__(cls, value: str, subject: str) -> Subject:
        made = super().__new__(cls, value)
        made.subject = subject
        return made


def of_user(user_id: str, value: str | None) -> Subject | None:
    """`value` as the user's personal data, for a sealed column written without the ORM (Core insert/update)."""
    return None if value is None else Subject(value, user_subject(user_id))


def key_store() -> KeyStore:
    """The process's key store, built from settings on first use (KeyConfigError if the keys are missing)."""
    store = _state["store"]
    if store is None:
        from shared.db import make_engine
        from shared.keys.config import KeySettings, load_material
        from shared.settings import database_url_for

        settings = KeySettings()
        _sealing["on"] = settings.sealing
        material = load_material(settings)
        store = KeyStore(make_engine(database_url_for("keys")), material, cache_seconds=settings.cache_seconds)
        store.ensure_schema()
        _state["store"] = store
    return store


def use_key_store(store: KeyStore | None) -> KeyStore | None:
    """Make `store` the process's key store (None: build it from settings again); returns the previous one."""
    previous, _state["store"] = _state["store"], store
    return previous


def set_sealing(on: bool) -> bool:
    """Switch sealing on or off for this process (the benchmark's encryption-off measurement only); returns
    the previous setting."""
    previous, _sealing["on"] = _sealing["on"], on
    return previous


def seal(subject: str, context: str, value: str) -> str:
    """`value` encrypted under the subject's data key, bound to `context` (service, table, column)."""
    key_id, aead = key_store().active_key(subject)
    nonce = secrets.token_bytes(NONCE_BYTES)
    body = aead.encrypt(nonce, value.encode(), f"{context}\x1f{subject}".encode())
    return PREFIX + base64.urlsafe_b64encode(bytes.fromhex(key_id) + nonce + body).decode()


def unseal(context: str, text: str) -> str | None:
    """The plain value of a sealed text; None when its data key has been destroyed (the value is gone)."""
    try:
        raw = base64.urlsafe_b64decode(text[len(PREFIX):])
    except (binascii.Error, ValueError):
        raise ValueError(f"a sealed value in {context} is corrupt") from None
    key_id, nonce, body = raw[:KEY_ID_BYTES].hex(), raw[KEY_ID_BYTES:KEY_ID_BYTES + NONCE_BYTES], \
        raw[KEY_ID_BYTES + NONCE_BYTES:]
    try:
        subject, aead = key_store().key_by_id(key_id)
    except KeyDestroyedError:
        return None
    try:
        return aead.decrypt(nonce, body, f"{context}\x1f{subject}".encode()).decode()
    except InvalidTag:
        raise ValueError(f"a sealed value in {context} does not belong there (moved or altered)") from None


def unseal_found(table: str, column: str, text: str) -> str | None:
    """The plain value of a sealed text found in `table.column` of some service's database (a scan that does not
    know whose database it reads); None if no declared service's context opens it, or its key is destroyed."""
    for service in sorted(_services):
        try:
            return unseal(f"{service}.{table}.{column}", text)
        except ValueError:
            continue
    return None


def declares_sealed_columns(service: str) -> bool:
    """Whether `service` declared sealed columns (its models are imported by the time it runs)."""
    return service in _services


def is_sealed(value: object) -> bool:
    """Whether a stored value is a sealed text."""
    return isinstance(value, str) and value.startswith(PREFIX)


class SealedText(TypeDecorator[str]):
    """A text column whose values are stored sealed. Writes take a `Subject` (seal_columns makes ORM writes
    one); a plain string is refused rather than written in clear."""

    impl = Text
    cache_ok = True

    def __init__(self, context: str) -> None:
        super().__init__()
        self.context = context

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        if value is None or is_sealed(value):
            return value
        if isinstance(value, Subject):
            return seal(value.subject, self.context, str(value)) if _sealing["on"] else str(value)
        if not _sealing["on"]:
            return str(value)
        raise ValueError(f"refusing to write {self.context} in clear: the value names no subject (see seal_columns)")

    def process_result_value(self, value: Any, dialect: Dialect) -> str | None:
        if value is None or not is_sealed(value):
            return value  # written with sealing off (benchmark) or before sealing existed
        return unseal(self.context, value)


def sealed_columns(table: Any) -> list[str]:
    """The names of a table's sealed columns."""
    return [column.name for column in table.c if isinstance(column.type, SealedText)]


def blind_index(address: str) -> str:
    """The blind index of an e-mail address (keyed HMAC of its normalised form): look rows up by this."""
    return key_store().blind_index(address)


def seal_columns(model: type, service: str, *columns: str, owner: str = "user_id",
                 subject: Any = user_subject, indexes: dict[str, str] | None = None) -> None:
    """Declare `columns` of an ORM model personal data of the row's `owner` (a user id by default): stored
    sealed under `subject(owner)`'s data key, read back in clear, unreadable once that key is destroyed.

    `indexes` maps a blind-index column to the sealed e-mail column it is kept from on every ORM write.
    """
    table = model.__table__  # type: ignore[attr-defined]
    _services.add(service)
    for name in columns:
        table.c[name].type = SealedText(f"{service}.{table.name}.{name}")
    indexes = indexes or {}

    def _name_subject(_mapper: Any, _connection: Any, target: Any) -> None:
        for name in columns:
            value = getattr(target, name)
            # Also a value that names another subject (an address copied from another row): this row's wins.
            if isinstance(value, str) and not is_sealed(value) and attributes.get_history(target, name).added:
                setattr(target, name, Subject(str(value), subject(getattr(target, owner))))
        for index, source in indexes.items():
            if attributes.get_history(target, source).added:
                value = getattr(target, source)
                setattr(target, index, None if value is None else blind_index(value))

    event.listen(model, "before_insert", _name_subject)
    event.listen(model, "before_update", _name_subject)
