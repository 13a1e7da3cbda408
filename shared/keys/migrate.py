"""Sealing rows written before their columns were sealed: the data step of the migrations that seal a table."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from sqlalchemy import Connection, column, select, table, update

from shared.keys.sealing import blind_index, is_sealed, seal
from shared.keys.store import user_subject


def seal_existing(conn: Connection, service: str, table_name: str, keys: Sequence[str], columns: Sequence[str], *,
                  owner: str = "user_id", subject: Callable[[str], str] = user_subject,
                  indexes: dict[str, str] | None = None) -> int:
    """Seal every clear value of `columns` in place (and fill each blind-index column from its e-mail column),
    row by row under the owner's data key; values already sealed are left alone. Returns rows changed."""
    indexes = indexes or {}
    wanted = list(dict.fromkeys([*keys, owner, *columns, *indexes.values()]))
    target = table(table_name, *(column(name) for name in [*wanted, *indexes]))
    changed = 0
    for row in conn.execute(select(*(target.c[name] for name in wanted))).mappings().all():
        values: dict[str, str] = {}
        for name in columns:
            value = row[name]
            if value is not None and not is_sealed(value):
                values[name] = seal(subject(row[owner]), f"{service}.{table.name}.{name}", value)
        for index, source in indexes.items():
            if row[source] is not None and not is_sealed(row[source]):
                values[index] = blind_index(row[source])
        if values:
            where = [target.c[name] == row[name] for name in keys]
            conn.execute(update(target).where(*where).values(**values))
            changed += 1
    return changed
