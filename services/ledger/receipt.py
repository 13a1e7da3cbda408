"""The tamper-evident receipt: slice reports chained by SHA-256, starting from the request's opening record.

Pure functions only. Entry n's hash is sha256(prev_hash + canonical payload), its prev_hash is entry n-1's
hash, and entry 1's prev_hash is the hash of the opening record. Changing any stored payload, hash, order
or the opening record breaks the chain at the first entry affected.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol


class ChainEntry(Protocol):
    """What verification reads of a stored entry (an ORM row or an `Entry`)."""

    @property
    def seq(self) -> int: ...
    @property
    def service(self) -> str: ...
    @property
    def payload(self) -> str: ...
    @property
    def prev_hash(self) -> str: ...
    @property
    def entry_hash(self) -> str: ...


@dataclass(frozen=True)
class Entry:
    """One link of a receipt chain."""

    seq: int
    service: str
    payload: str
    prev_hash: str
    entry_hash: str


@dataclass(frozen=True)
class VerifyResult:
    """Whether a chain is intact; if not, the first entry that fails and why."""

    ok: bool
    broken_at_seq: int | None
    reason: str


def canonical(payload: Mapping[str, Any]) -> str:
    """The one text form of a JSON object that is hashed: sorted keys, no whitespace, UTF-8 kept as is."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _instant(value: datetime) -> str:
    if value.tzinfo is None:
        raise ValueError("the opening record needs a timezone-aware requested_at")
    return value.astimezone(UTC).isoformat()


def opening_hash(request_id: str, user_id: str, reason: str, requested_at: datetime) -> str:
    """The hash the chain starts from: the request's opening record (id, user id, reason, received)."""
    return _sha256(canonical({
        "request_id": str(request_id),
        "user_id": user_id,
        "reason": reason,
        "requested_at": _instant(requested_at),
    }))


def entry_hash(prev: str, payload: str | Mapping[str, Any]) -> str:
    """sha256(prev_hash + canonical payload) as lower-case hex; a mapping is made canonical first."""
    text = payload if isinstance(payload, str) else canonical(payload)
    return _sha256(prev + text)


def link(prev: str, seq: int, service: str, payload: Mapping[str, Any]) -> Entry:
    """The entry that follows `prev` for a slice's report payload."""
    text = canonical(payload)
    return Entry(seq=seq, service=service, payload=text, prev_hash=prev, entry_hash=entry_hash(prev, text))


def _check_entry(entry: ChainEntry, expected_seq: int, prev: str | None) -> str | None:
    """Why this entry breaks the chain, or None if it holds."""
    if entry.seq != expected_seq:
        return f"expected entry {expected_seq} here, found entry {entry.seq} (entries missing or reordered)"
    if prev is not None and entry.prev_hash != prev:
        return "prev_hash does not match the hash before it"
    try:
        content = json.loads(entry.payload)
    except ValueError:
        return "payload is not JSON"
    if not isinstance(content, dict) or content.get("service") != entry.service:
        return "payload names a different slice than the entry"
    if entry.entry_hash != entry_hash(entry.prev_hash, entry.payload):
        return "entry hash does not match its content"
    return None


def verify_chain(
    entries: Sequence[ChainEntry], *, opening: str | None = None, head: str | None = None
) -> VerifyResult:
    """Check every link in seq order; `opening` pins entry 1's prev_hash, `head` the receipt hash."""
    ordered = sorted(entries, key=lambda e: e.seq)
    prev = opening
    for expected_seq, entry in enumerate(ordered, start=1):
        problem = _check_entry(entry, expected_seq, prev)
        if problem is not None:
            if expected_seq == 1 and problem.startswith("prev_hash"):
                problem = "the first entry does not start from the request's opening record"
            return VerifyResult(False, entry.seq, problem)
        prev = entry.entry_hash
    seen: set[str] = set()
    for entry in ordered:
        if entry.service in seen:
            return VerifyResult(False, entry.seq, f"slice {entry.service} appears twice in the chain")
        seen.add(entry.service)
    if head is not None:
        if not ordered:
            return VerifyResult(False, None, "a receipt hash is recorded but the chain is empty")
        if ordered[-1].entry_hash != head:
            return VerifyResult(False, ordered[-1].seq, "the receipt hash is not the hash of the last entry")
    return VerifyResult(True, None, f"{len(ordered)} entries intact")
