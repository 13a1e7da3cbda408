"""Access requests (GDPR Art. 15) in the ledger: opened, each slice's answer kept, one export assembled.

The export is one JSON document and one HTML page rendering it, with a manifest holding the SHA-256 of each
slice's part and of both renderings; the manifest's own hash is the request's receipt. It holds personal
data, so it is kept only until it expires (`ERASURE_LEDGER_ACCESS_EXPORT_DAYS`) or the user is erased, never
written to a log, and each part's items are dropped once the export holds them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from jinja2 import Environment
from sqlalchemy import select, update
from sqlalchemy.orm import Session, selectinload

from schemas import SLICE_SERVICES, AccessRequested, AccessSliceAnswered
from services.ledger.models import COMPLETE, OPEN, AccessPart, AccessRequest
from services.ledger.rights import known, locked_with_parts
from services.ledger.settings import LedgerSettings
from shared.service import Context

EXPIRED, USER_ERASED = "expired", "user_erased"

_HTML = Environment(autoescape=True).from_string("""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Your personal data at Loggamera</title></head>
<body>
<h1>Your personal data at Loggamera</h1>
<p>Access request <code>{{ export.request_id }}</code>, received {{ export.requested_at }}, assembled
{{ export.generated_at }}. Each part below says what is held, by whom, why, who received it, how long it is kept
and on what legal basis (GDPR Art. 15).</p>
{% for part in export.parts %}
<section>
<h2>{{ part.service | replace("_", " ") }}</h2>
{% for item in part["items"] %}
<h3>{{ item.category }} (held by {{ item.held_by }})</h3>
<dl>
  <dt>Purpose</dt><dd>{{ item.purpose }}</dd>
  <dt>Recipients</dt><dd>{{ item.recipients | join(", ") or "none" }}</dd>
  <dt>Kept</dt><dd>{{ item.retention }}</dd>
  <dt>Legal basis</dt><dd>{{ item.legal_basis }}</dd>
</dl>
<pre>{{ item.data | tojson(indent=2) }}</pre>
{% else %}
<p>Nothing is held about you here.</p>
{% endfor %}
</section>
{% endfor %}
</body></html>
""")


def _canonical(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def open_access_request(event: AccessRequested, ctx: Context[LedgerSettings]) -> None:
    """Open the request (once) with its deadline, expecting a part from each of the five slices."""
    request_id = str(event.request_id)
    if known(ctx.session, AccessRequest, request_id, event.user_id, ctx.event_id):
        return
    ctx.session.add(new_request(event, ctx.deps, datetime.now(UTC)))
    ctx.log.info("access request opened", request_id=request_id)


def new_request(event: AccessRequested, settings: LedgerSettings, now: datetime) -> AccessRequest:
    """A new open access request for the event, due one month (legal time) after its receipt."""
    request = AccessRequest(request_id=str(event.request_id), user_id=event.user_id,
                            requested_at=event.requested_at, opened_at=now,
                            due_at=settings.due_at(event.requested_at), status=OPEN)
    request.parts = [AccessPart(service=name, position=i) for i, name in enumerate(SLICE_SERVICES)]
    return request


def record_access_answer(event: AccessSliceAnswered, ctx: Context[LedgerSettings]) -> None:
    """Keep a slice's part (first answer wins); assemble the export once every slice has answered."""
    session, now, request_id = ctx.session, datetime.now(UTC), str(event.request_id)
    request = locked_with_parts(session, AccessRequest, request_id, event.user_id, ctx.event_id)
    part = next(p for p in request.parts if p.service == event.service)
    if part.answered_at is not None or request.status != OPEN:
        ctx.log.info("repeated access answer ignored", request_id=request_id, service=event.service)
        return
    items = [item.model_dump(mode="json") for item in event.items]
    part.items, part.answered_at, part.sha256 = items, event.answered_at, sha256(_canonical(items))
    ctx.log.info("access part recorded", request_id=request_id, service=event.service, items=len(items))
    if all(p.answered_at is not None for p in request.parts):
        _assemble(request, now, ctx.deps)
        ctx.log.info("access export assembled", request_id=request_id, manifest_hash=request.manifest_hash)
    purge_expired(session, now)


def _assemble(request: AccessRequest, now: datetime, settings: LedgerSettings) -> None:
    """The export (JSON and HTML), its manifest and receipt hash; the parts keep only their hashes."""
    document = {
        "request_id": request.request_id, "user_id": request.user_id,
        "requested_at": request.requested_at.isoformat(), "generated_at": now.isoformat(),
        "parts": [{"service": p.service, "answered_at": p.answered_at.isoformat() if p.answered_at else None,
                   "items": p.items or []} for p in request.parts],
    }
    export_json = json.dumps(document, indent=2, ensure_ascii=False)
    export_html = _HTML.render(export=document)
    manifest = {
        "request_id": request.request_id,
        "parts": {p.service: p.sha256 for p in request.parts},
        "export.json": sha256(export_json.encode()),
        "export.html": sha256(export_html.encode()),
        "generated_at": now.isoformat(),
    }
    request.export_json, request.export_html, request.manifest = export_json, export_html, manifest
    request.manifest_hash = sha256(_canonical(manifest))
    request.status, request.completed_at = COMPLETE, now
    request.expires_at = now + settings.access_export_kept
    for part in request.parts:
        part.items = None


def _erase_exports(session: Session, condition: Any, now: datetime, why: str) -> int:
    """Erase the content of matching exports (and any parts not yet assembled); how many exports."""
    ids = list(session.scalars(select(AccessRequest.request_id).where(condition)))
    if ids:
        session.execute(update(AccessRequest).where(AccessRequest.request_id.in_(ids)).values(
            export_json=None, export_html=None, export_erased_at=now, export_erased_why=why))
        session.execute(update(AccessPart).where(AccessPart.request_id.in_(ids)).values(items=None))
    return len(ids)


def purge_expired(session: Session, now: datetime) -> int:
    """Erase every export past its expiry; how many."""
    return _erase_exports(session, (AccessRequest.expires_at < now) & AccessRequest.export_erased_at.is_(None),
                          now, EXPIRED)


def erase_user_exports(session: Session, user_id: str, now: datetime) -> int:
    """Erase every access export and unassembled part of a user being erased; how many requests."""
    return _erase_exports(session, (AccessRequest.user_id == user_id) & AccessRequest.export_erased_at.is_(None),
                          now, USER_ERASED)


def close_for_erased_user(session: Session, user_id: str, now: datetime) -> int:
    """Close the user's open access requests once their data keys are destroyed: the slices' answers still on
    their way can no longer be opened, and nothing is left to export. Each unanswered part counts as answered
    with nothing; the request is complete with its export erased. How many requests."""
    requests = list(session.scalars(select(AccessRequest).where(
        AccessRequest.user_id == user_id, AccessRequest.status == OPEN).options(selectinload(AccessRequest.parts))))
    nothing = sha256(_canonical([]))
    for request in requests:
        for part in request.parts:
            if part.answered_at is None:
                part.answered_at, part.sha256 = now, nothing
            part.items = None
        request.status, request.completed_at = COMPLETE, now
        request.export_json = request.export_html = None
        request.export_erased_at, request.export_erased_why = now, USER_ERASED
    return len(requests)


@dataclass(frozen=True)
class AccessStatus:
    """What an operator sees of an access request: never the data itself."""

    request_id: str
    user_id: str
    status: str
    requested_at: datetime
    due_at: datetime
    completed_at: datetime | None
    expires_at: datetime | None
    manifest: dict[str, Any] | None
    manifest_hash: str | None
    answered: tuple[str, ...]
    missing: tuple[str, ...]
    export_erased_at: datetime | None
    export_erased_why: str | None

    @property
    def export_available(self) -> bool:
        return self.status == COMPLETE and self.export_erased_at is None


def access_status(session: Session, request_id: str) -> AccessStatus | None:
    """The status of one access request, or None if the ledger has never heard of it."""
    request = session.get(AccessRequest, request_id.strip(), options=[selectinload(AccessRequest.parts)])
    if request is None:
        return None
    return AccessStatus(
        request.request_id, request.user_id, request.status, request.requested_at, request.due_at,
        request.completed_at, request.expires_at, request.manifest, request.manifest_hash,
        tuple(p.service for p in request.parts if p.answered_at is not None),
        tuple(p.service for p in request.parts if p.answered_at is None),
        request.export_erased_at, request.export_erased_why)


def export_of(session: Session, request_id: str, fmt: str, now: datetime) -> str | None:
    """The export in `json` or `html`, or None when there is none (open, expired or erased)."""
    request = session.get(AccessRequest, request_id.strip())
    if request is None or request.export_erased_at is not None:
        return None
    if request.expires_at is not None and request.expires_at < now:
        return None
    return request.export_json if fmt == "json" else request.export_html
