"""What every slice does alike on an access request (GDPR Art. 15): rows as plain data, and the slice's answer."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import inspect

from schemas import AccessItem, AccessRequested, AccessSliceAnswered


def plain(value: Any) -> Any:
    """A stored value as JSON data: instants and dates in ISO 8601, amounts as exact decimal strings."""
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def row_data(row: Any, *, leave_out: Iterable[str] = ()) -> dict[str, Any]:
    """An ORM row's columns as JSON data, but those left out (secrets, internal keys)."""
    skipped = set(leave_out)
    return {attr.key: plain(getattr(row, attr.key)) for attr in inspect(row).mapper.column_attrs
            if attr.key not in skipped}


def answer(event: AccessRequested, service: str, items: Iterable[AccessItem]) -> AccessSliceAnswered:
    """The slice's part of the access request: what it holds, or an empty list when it holds nothing."""
    return AccessSliceAnswered(request_id=event.request_id, user_id=event.user_id, service=service,  # type: ignore[arg-type]
                               items=list(items), answered_at=datetime.now(UTC))
