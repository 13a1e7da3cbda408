"""What both test pipelines (on the broker and in memory) share: scratch databases, signed events, events read back."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeVar

from schemas import EventData
from shared.codec import Outbound, encode, encode_sealed
from shared.settings import RuntimeSettings
from shared.testing.infra import create_database, drop_database

E = TypeVar("E", bound=EventData)


class Scratch:
    """Scratch databases (PostgreSQL if an admin URL is given, else SQLite under `workdir`) and upstream signing."""

    settings: RuntimeSettings
    namespace: str
    workdir: Path
    postgres_admin_url: str | None
    _databases: list[str]

    def database_url(self, service: str) -> str:
        """A new, empty database for a service: PostgreSQL if an admin URL was given, else SQLite."""
        if self.postgres_admin_url:
            name = f"{self.namespace}_{uuid.uuid4().hex[:6]}_{service}"
            self._databases.append(name)
            return create_database(self.postgres_admin_url, name)
        return f"sqlite:///{self.workdir / f'{self.namespace}_{service}.db'}"

    seal_contacts = False  # upstream events sent with their contact details sealed (docs/CONTRACT.md)

    def encode(self, data: EventData, **kwargs: Any) -> Outbound:
        """Sign an event with the pipeline's key, as an upstream producer would (sealed, as `erasure publish`
        sends it, when the pipeline seals contacts and no envelope attribute is given)."""
        sign: dict[str, Any] = {"source": "urn:loggamera:test", "keyring": self.settings.keyring,
                                "key_id": self.settings.signing_key_id}
        if self.seal_contacts and not kwargs:
            return encode_sealed(data, **sign)
        return encode(data, **sign, **kwargs)

    def drop_databases(self) -> None:
        """Drop the PostgreSQL databases made for this pipeline (SQLite files go with the workdir)."""
        for name in self._databases:
            drop_database(self.postgres_admin_url or "", name)
        self._databases.clear()


def events_of(model: type[E], events: Iterable[dict[str, Any]]) -> list[E]:
    """The data of every CloudEvent of `model`'s type among `events` (as read off a queue), its sealed field
    opened as a consumer opens it."""
    from shared.keys.wire import open_sealed_field

    return [model.model_validate(open_sealed_field(model.event_type, e["data"]))
            for e in events if e.get("type") == model.event_type]
