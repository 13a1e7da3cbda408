"""Prove an erasure: search every column of every table of a database for traces of a person."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import JSON, Engine, LargeBinary, MetaData, String, Table, or_, select
from sqlalchemy.types import TypeEngine

from shared.keys.sealing import PREFIX, unseal_found

# Types that cannot hold a name, an e-mail address or a phone number as written.
_NEVER_TEXT = ("INTEGER", "BIGINT", "SMALLINT", "NUMERIC", "DECIMAL", "FLOAT", "REAL", "DOUBLE", "BOOLEAN",
               "DATE", "TIME", "TIMESTAMP", "DATETIME", "INTERVAL", "UUID")


def _kind(column_type: TypeEngine[object]) -> str:
    """'text' (searched in SQL), 'other' (fetched and searched here) or 'skip'."""
    if isinstance(column_type, String):
        return "text"
    if isinstance(column_type, LargeBinary | JSON):
        return "other"
    name = str(column_type).upper()
    return "skip" if name.startswith(_NEVER_TEXT) else "other"


def _as_text(value: object) -> str:
    """A fetched value as lower-case text; bytes (e.g. an outbox body) decoded as UTF-8."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", "replace").lower()
    return str(value).lower()


def _text_hits(engine: Engine, table: Table, needles: list[str]) -> list[str]:
    columns = [c for c in table.columns if _kind(c.type) == "text"]
    lowered = [n.lower() for n in needles]
    hits = []
    with engine.connect() as conn:
        for column in columns:
            query = select(column).where(or_(*(column.icontains(n, autoescape=True) for n in needles))).limit(1)
            if conn.execute(query).first() is not None:
                hits.append(column.name)
                continue
            # Sealed values are searched as what they still reveal: their plain text while their key lives.
            sealed = select(column).where(column.startswith(PREFIX))
            for (value,) in conn.execution_options(yield_per=1000).execute(sealed):
                plain = unseal_found(table.name, column.name, value)
                if plain is not None and any(n in plain.lower() for n in lowered):
                    hits.append(column.name)
                    break
    return hits


def _other_hits(engine: Engine, table: Table, needles: list[str]) -> list[str]:
    columns = [c for c in table.columns if _kind(c.type) == "other"]
    if not columns:
        return []
    lowered = [n.lower() for n in needles]
    hits: set[str] = set()
    with engine.connect() as conn:
        for row in conn.execution_options(yield_per=1000).execute(select(*columns)):
            for column, value in zip(columns, row, strict=True):
                if value is None or column.name in hits:
                    continue
                if any(n in _as_text(value) for n in lowered):
                    hits.add(column.name)
    return [c.name for c in columns if c.name in hits]


def personal_data_hits(engine: Engine, needles: Iterable[str]) -> list[tuple[str, str]]:
    """Every (table, column) in the database holding any needle, case-insensitively; [] proves absence.

    Tables are read from the database itself, not from models, so a table nobody declared is searched too.
    Pass each spelling a value may be stored in (e.g. a phone number as typed and in E.164).
    """
    wanted = [n for n in dict.fromkeys(needles) if n]
    if not wanted:
        raise ValueError("give at least one non-empty needle to search for")
    reflected = MetaData()
    reflected.reflect(engine)
    hits: list[tuple[str, str]] = []
    for name in sorted(reflected.tables):
        table = reflected.tables[name]
        found = set(_text_hits(engine, table, wanted)) | set(_other_hits(engine, table, wanted))
        hits.extend((name, column.name) for column in table.columns if column.name in found)
    return hits
