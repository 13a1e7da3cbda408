"""Fake Mailchimp Marketing API v3: basic auth by API key, members, and the forgotten-e-mail rule."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from services.sandbox.wire import Reply, Request, dispatch, new_id, route
from services.vendors.rules import mail_address_problem
from services.vendors.rules import subscriber_hash as _hash

if TYPE_CHECKING:
    from services.sandbox.state import SandboxState

PROBLEM_TYPE = "https://mailchimp.com/developer/marketing/docs/errors/"
MEMBER = r"/3\.0/lists/(?P<list_id>[^/]+)/members/(?P<member_hash>[^/]+)"
# "Each user account is permitted up to 10 simultaneous connections"; the 11th is answered 429.
MAX_CONNECTIONS = 10


@dataclass
class MailchimpState:
    """Members of the one configured audience, and the hashes that were permanently deleted."""

    members: dict[str, dict[str, Any]] = field(default_factory=dict)
    forgotten: set[str] = field(default_factory=set)

    def snapshot(self) -> dict[str, Any]:
        """JSON-ready copy."""
        return {"members": dict(self.members), "forgotten": sorted(self.forgotten)}

    def seed(self, data: dict[str, Any], list_id: str) -> dict[str, Any]:
        """Add members (`members`: e-mails or member dicts) and erased addresses (`forgotten`: e-mails)."""
        created = []
        for item in data.get("members", []):
            member = {"email_address": item} if isinstance(item, str) else dict(item)
            member.setdefault("status", "subscribed")
            created.append(self.store(member, list_id))
        self.forgotten.update(_hash(email) for email in data.get("forgotten", []))
        return {"members": created}

    def store(self, body: dict[str, Any], list_id: str) -> str:
        email = str(body["email_address"]).strip()
        member_hash = _hash(email)
        self.members[member_hash] = {
            "id": member_hash,
            "email_address": email,
            "unique_email_id": new_id()[:10],
            "status": body.get("status") or body.get("status_if_new"),
            "merge_fields": dict(body.get("merge_fields") or {}),
            "list_id": list_id,
            "timestamp_signup": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        return member_hash


def error(status: int, title: str, detail: str = "") -> Reply:
    """An error as Mailchimp sends it: application/problem+json."""
    body = {"type": PROBLEM_TYPE, "title": title, "status": status, "detail": detail, "instance": new_id()}
    return Reply(status, body, content_type="application/problem+json")


def _not_found() -> Reply:
    return error(404, "Resource Not Found", "The requested resource could not be found.")


def _invalid(detail: str) -> Reply:
    return error(400, "Invalid Resource", detail)


def ping(sb: SandboxState, req: Request) -> Reply:
    return Reply(200, {"health_status": "Everything's Chimpy!"})


def get_list(sb: SandboxState, req: Request, list_id: str) -> Reply:
    if list_id != sb.config.mailchimp_list_id:
        return _not_found()
    return Reply(200, {"id": list_id, "stats": {"member_count": len(sb.mailchimp.members)}})


def get_member(sb: SandboxState, req: Request, list_id: str, member_hash: str) -> Reply:
    member = sb.mailchimp.members.get(member_hash)
    if list_id != sb.config.mailchimp_list_id or member is None:
        return _not_found()
    return Reply(200, member)


def _json(req: Request) -> Any:
    """The request's JSON body, or the error Mailchimp answers to one it cannot parse."""
    try:
        return req.json()
    except ValueError:
        return error(400, "JSON Parse Exception", "We encountered an unspecified JSON parsing error.")


def _member_body(sb: SandboxState, req: Request, list_id: str, member_hash: str) -> dict[str, Any] | Reply:
    """The PUT body if Mailchimp would accept it, else the error it would answer."""
    if list_id != sb.config.mailchimp_list_id:
        return _not_found()
    body = _json(req)
    if isinstance(body, Reply):
        return body
    email = body.get("email_address") if isinstance(body, dict) else None
    if not isinstance(body, dict) or not isinstance(email, str) or "@" not in email:
        return _invalid("The resource submitted could not be validated: email_address is required.")
    if mail_address_problem(email) is not None:
        return _invalid(f"{email} looks fake or invalid, please enter a real email address.")
    if _hash(email) != member_hash:
        return _invalid("The subscriber hash in the URL does not match email_address.")
    if member_hash in sb.mailchimp.forgotten:
        return error(
            400,
            "Forgotten Email Not Subscribed",
            f"{email} was permanently deleted and cannot be re-imported. "
            "The contact must re-subscribe to get back on the list.",
        )
    return body


def put_member(sb: SandboxState, req: Request, list_id: str, member_hash: str) -> Reply:
    body = _member_body(sb, req, list_id, member_hash)
    if isinstance(body, Reply):
        return body
    state = sb.mailchimp
    member = state.members.get(member_hash)
    if member is None:
        if not (body.get("status") or body.get("status_if_new")):
            return _invalid("status_if_new is required when the member does not exist.")
        state.store(body, list_id)
        sb.effect("mailchimp", "member_subscribed", subscriber_hash=member_hash)
        return Reply(200, state.members[member_hash])
    before = dict(member)
    member["merge_fields"].update(body.get("merge_fields") or {})
    member["status"] = body.get("status") or member["status"]
    if member != before:
        sb.effect("mailchimp", "member_updated", subscriber_hash=member_hash)
    return Reply(200, member)


def patch_member(sb: SandboxState, req: Request, list_id: str, member_hash: str) -> Reply:
    """Update a member; a new email_address moves it to the new address's subscriber hash, as Mailchimp does."""
    state = sb.mailchimp
    member = state.members.get(member_hash)
    if list_id != sb.config.mailchimp_list_id or member is None:
        return _not_found()
    body = _json(req)
    if isinstance(body, Reply):
        return body
    email = body.get("email_address") if isinstance(body, dict) else None
    if not isinstance(body, dict) or (email is not None and (not isinstance(email, str) or "@" not in email)):
        return _invalid("The resource submitted could not be validated: email_address must be an address.")
    if email is None or _hash(email) == member_hash:
        return Reply(200, member)
    if mail_address_problem(email) is not None:
        return _invalid(f"{email} looks fake or invalid, please enter a real email address.")
    new_hash = _hash(email)
    if new_hash in state.forgotten:
        return error(400, "Forgotten Email Not Subscribed",
                     f"{email} was permanently deleted and cannot be re-imported.")
    if new_hash in state.members:
        return error(400, "Member Exists", f"{email} is already a list member.")
    moved = {**state.members.pop(member_hash), "id": new_hash, "email_address": email.strip()}
    state.members[new_hash] = moved
    sb.effect("mailchimp", "member_address_changed", subscriber_hash=member_hash, new_subscriber_hash=new_hash)
    return Reply(200, moved)


def delete_permanent(sb: SandboxState, req: Request, list_id: str, member_hash: str) -> Reply:
    state = sb.mailchimp
    if list_id != sb.config.mailchimp_list_id or state.members.pop(member_hash, None) is None:
        return _not_found()
    state.forgotten.add(member_hash)
    sb.effect("mailchimp", "member_deleted_permanently", subscriber_hash=member_hash)
    return Reply(204)


ROUTES = [
    route("GET", r"/3\.0/ping", ping),
    route("GET", r"/3\.0/lists/(?P<list_id>[^/]+)", get_list),
    route("GET", MEMBER, get_member),
    route("PUT", MEMBER, put_member),
    route("PATCH", MEMBER, patch_member),
    route("POST", MEMBER + r"/actions/delete-permanent", delete_permanent),
]


def handle(sb: SandboxState, req: Request) -> Reply:
    """Answer one request as Mailchimp would."""
    credentials = req.basic_auth()
    if credentials is None or credentials[1] != sb.config.mailchimp_api_key:
        return error(
            401,
            "API Key Invalid",
            "Your API key may be invalid, or you've attempted to access the wrong datacenter.",
        )
    if sb.in_flight("mailchimp") > MAX_CONNECTIONS:
        return error(
            429,
            "Too Many Requests",
            f"You have exceeded the limit of {MAX_CONNECTIONS} simultaneous connections.",
        )
    return dispatch(ROUTES, sb, req) or _not_found()
