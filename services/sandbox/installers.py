"""Fake installation-company endpoints: per-installer bearer tokens, Idempotency-Key replay, Art. 19 notices."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from services.sandbox.wire import Reply, Request, new_id

if TYPE_CHECKING:
    from services.sandbox.state import SandboxState

NOTICE_FIELDS = frozenset({"type", "user_ref", "purchase_ids"})
NOTICE_TYPE = "gdpr-art-19-erasure"
CONTACT_FIELDS = frozenset({"name", "address", "phone", "email"})


@dataclass
class InstallerState:
    """Contacts each installer holds by (installer, purchase) (so a notice erases its purchases' contacts by dict
    access however many are held), notices received, and first replies by (installer, Idempotency-Key)."""

    contacts: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)
    erasure_notices: list[dict[str, Any]] = field(default_factory=list)
    replies: dict[tuple[str, str], tuple[str, Reply]] = field(default_factory=dict)

    def snapshot(self) -> dict[str, Any]:
        """JSON-ready copy."""
        held = [contact for per_purchase in self.contacts.values() for contact in per_purchase]
        return {"contacts": held, "erasure_notices": list(self.erasure_notices)}


def error(status: int, code: str, message: str) -> Reply:
    """An error as our installer endpoint contract defines it."""
    return Reply(status, {"error": code, "message": message})


def _receive_contact(sb: SandboxState, installer_id: str, key: str, body: Any) -> Reply:
    if not (
        isinstance(body, dict) and isinstance(body.get("purchase_id"), str) and isinstance(body.get("contact"), dict)
    ):
        return error(400, "invalid_body", "a contact needs purchase_id (string) and contact (object)")
    record_id = f"ct_{new_id()[:12]}"
    sb.installers.contacts.setdefault((installer_id, body["purchase_id"]), []).append(
        {
            "id": record_id,
            "installer_id": installer_id,
            "purchase_id": body["purchase_id"],
            "contact": body["contact"],
            "received_at": datetime.now(UTC).isoformat(),
        }
    )
    sb.effect(
        "installers",
        "contact_received",
        installer_id=installer_id,
        purchase_id=body["purchase_id"],
        idempotency_key=key,
    )
    return Reply(201, {"id": record_id, "status": "received"})


def _receive_notice(sb: SandboxState, installer_id: str, key: str, body: Any) -> Reply:
    valid = (
        isinstance(body, dict)
        and set(body) == NOTICE_FIELDS
        and body["type"] == NOTICE_TYPE
        and isinstance(body["user_ref"], str)
        and isinstance(body["purchase_ids"], list)
        and all(isinstance(p, str) for p in body["purchase_ids"])
    )
    if not valid:
        return error(400, "invalid_body", "an erasure notice carries only type, user_ref and purchase_ids")
    record_id = f"en_{new_id()[:12]}"
    purchases = set(body["purchase_ids"])
    state = sb.installers
    # What a well-behaved recipient does with the notice: erase what it was sent.
    for purchase_id in purchases:
        state.contacts.pop((installer_id, purchase_id), None)
    state.erasure_notices.append(
        {"id": record_id, "installer_id": installer_id, **body, "received_at": datetime.now(UTC).isoformat()}
    )
    sb.effect(
        "installers",
        "erasure_notice_received",
        installer_id=installer_id,
        user_ref=body["user_ref"],
        purchase_ids=sorted(purchases),
        idempotency_key=key,
    )
    return Reply(202, {"id": record_id, "status": "accepted"})


def _receive_correction(sb: SandboxState, installer_id: str, key: str, body: Any) -> Reply:
    """An Art. 19 correction: the installer replaces the corrected contact fields of these purchases."""
    valid = (isinstance(body, dict) and set(body) == {"purchase_ids", "contact"}
             and isinstance(body["purchase_ids"], list) and all(isinstance(p, str) for p in body["purchase_ids"])
             and isinstance(body["contact"], dict) and set(body["contact"]) <= CONTACT_FIELDS)
    if not valid:
        return error(400, "invalid_body", "a correction carries purchase_ids and the corrected contact fields")
    purchases = set(body["purchase_ids"])
    for purchase_id in purchases:
        for record in sb.installers.contacts.get((installer_id, purchase_id), ()):
            record["contact"] = {**record["contact"], **body["contact"]}
    sb.effect("installers", "contact_corrected", installer_id=installer_id, purchase_ids=sorted(purchases),
              fields=sorted(body["contact"]), idempotency_key=key)
    return Reply(202, {"status": "accepted"})


RECEIVERS = {"contacts": _receive_contact, "erasure-notices": _receive_notice,
             "contact-corrections": _receive_correction}


def _refusal(sb: SandboxState, req: Request, installer_id: str, resource: str) -> Reply | None:
    token = sb.config.installers.get(installer_id)
    if token is None:
        return error(404, "not_found", f"no installer {installer_id!r}")
    if req.bearer() != token:
        return error(401, "unauthorized", "missing or wrong bearer token")
    if resource not in RECEIVERS or (req.method != "POST" and (req.method, resource) != ("GET", "contacts")):
        return error(404, "not_found", f"no resource {req.method} {resource!r}")
    return None


def _contacts_of(sb: SandboxState, installer_id: str, req: Request) -> Reply:
    """What the installer holds for one purchase (GET contacts?purchase_id=…): read back for an access request."""
    purchase_id = req.query.get("purchase_id") or ""
    if not purchase_id:
        return error(400, "purchase_id_missing", "say which purchase: ?purchase_id=…")
    found = list(sb.installers.contacts.get((installer_id, purchase_id), ()))
    return Reply(200, {"contacts": found})


def handle(sb: SandboxState, req: Request) -> Reply:
    """Answer one request as an installer endpoint should: `/{installer_id}/contacts|erasure-notices`, and a
    read of the contacts it holds for a purchase."""
    installer_id, _, resource = req.path.strip("/").partition("/")
    refusal = _refusal(sb, req, installer_id, resource)
    if refusal is not None:
        return refusal
    if req.method == "GET":
        return _contacts_of(sb, installer_id, req)
    key = req.headers.get("idempotency-key", "")
    if not key:
        return error(400, "idempotency_key_missing", "every POST needs an Idempotency-Key header")
    fingerprint = hashlib.sha256(req.body).hexdigest()
    seen = sb.installers.replies.get((installer_id, key))
    if seen is not None:
        if seen[0] != fingerprint:
            return error(422, "idempotency_key_reused", "this Idempotency-Key was used with another body")
        first = seen[1]
        return Reply(first.status, first.body, {**first.headers, "Idempotent-Replayed": "true"})
    try:
        body = json.loads(req.body) if req.body else None
    except ValueError:
        return error(400, "invalid_json", "the body is not JSON")
    reply = RECEIVERS[resource](sb, installer_id, key, body)
    if reply.status < 400:
        sb.installers.replies[(installer_id, key)] = (fingerprint, reply)
    return reply
