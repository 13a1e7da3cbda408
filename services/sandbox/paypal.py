"""Fake PayPal REST: OAuth2 client credentials, then Vault v3 payment tokens behind a bearer token."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from services.sandbox.wire import Reply, Request, dispatch, new_id, route
from services.vendors.rules import PAYPAL_CUSTOMER_ID, PAYPAL_TOKEN_ID, IdRule

if TYPE_CHECKING:
    from services.sandbox.state import SandboxState

TOKENS = r"/v3/vault/payment-tokens"
MAX_PAGE_SIZE = 5
SCOPE = "https://uri.paypal.com/services/vault/payment-tokens/readwrite"


@dataclass
class PayPalState:
    """Vaulted payment tokens by id and by customer (so a customer's list is a dict access however many are
    vaulted), and the access tokens handed out (token → monotonic expiry)."""

    payment_tokens: dict[str, dict[str, Any]] = field(default_factory=dict)
    access_tokens: dict[str, float] = field(default_factory=dict)
    by_customer: dict[str, dict[str, None]] = field(default_factory=dict)

    def add_token(self, token: dict[str, Any]) -> None:
        """Vault one payment token (a token id is unique: vaulting it again moves it to the new customer)."""
        self.remove_token(token["id"])
        self.payment_tokens[token["id"]] = token
        self.by_customer.setdefault(token["customer"]["id"], {})[token["id"]] = None

    def remove_token(self, token_id: str) -> dict[str, Any] | None:
        """Delete one payment token; the token, or None if there was none."""
        token = self.payment_tokens.pop(token_id, None)
        if token is not None:
            owned = self.by_customer[token["customer"]["id"]]
            del owned[token_id]
            if not owned:
                del self.by_customer[token["customer"]["id"]]
        return token

    def tokens_of(self, customer_id: str) -> list[dict[str, Any]]:
        """A customer's tokens, in the order they were vaulted."""
        return [self.payment_tokens[t] for t in self.by_customer.get(customer_id, {})]

    def snapshot(self) -> dict[str, Any]:
        """JSON-ready copy."""
        return {"payment_tokens": dict(self.payment_tokens)}

    def seed(self, data: dict[str, Any]) -> dict[str, Any]:
        """Vault tokens per customer: `vault` maps customer id → token ids, or a number of tokens to make."""
        created: dict[str, list[str]] = {}
        for customer_id, tokens in data.get("vault", {}).items():
            problem = PAYPAL_CUSTOMER_ID.problem(customer_id)
            if problem is not None:  # PayPal would not have vaulted anything under it
                raise ValueError(f"cannot seed the vault: {problem}")
            ids = [f"tok-{secrets.token_hex(4)}" for _ in range(tokens)] if isinstance(tokens, int) else tokens
            for token_id in ids:
                self.add_token({
                    "id": token_id,
                    "customer": {"id": customer_id},
                    "payment_source": {"paypal": {"email_address": f"payer-{customer_id}@kund.loggamera.se"}},
                })
            created[customer_id] = list(ids)
        return {"vault": created}

    def expire_tokens(self) -> None:
        """Every access token handed out so far stops working."""
        self.access_tokens.clear()


def error(status: int, name: str, message: str, details: list[dict[str, str]] | None = None) -> Reply:
    """An error as PayPal REST sends it."""
    body = {"name": name, "message": message, "debug_id": secrets.token_hex(7), "details": details or []}
    return Reply(status, body)


def _not_found() -> Reply:
    return error(
        404,
        "RESOURCE_NOT_FOUND",
        "The specified resource does not exist.",
        [{"issue": "INVALID_RESOURCE_ID", "description": "Specified resource ID does not exist."}],
    )


def _invalid(field_name: str, issue: str, location: str = "query", description: str = "") -> Reply:
    detail = {"field": field_name, "location": location, "issue": issue}
    if description:
        detail["description"] = description
    return error(400, "INVALID_REQUEST", "Request is not well-formed, syntactically incorrect, or violates schema.",
                 [detail])


def _malformed(rule: IdRule, value: str, field_name: str, location: str) -> Reply | None:
    """INVALID_REQUEST as PayPal answers an id that breaks its schema: length first, then syntax."""
    if rule.min_length <= len(value) <= rule.max_length:
        if rule.pattern.fullmatch(value):
            return None
        return _invalid(field_name, "INVALID_PARAMETER_SYNTAX", location,
                        "The value of a field does not conform to the expected format.")
    return _invalid(field_name, "INVALID_STRING_LENGTH", location,
                    "The value of a field is either too short or too long.")


def issue_token(sb: SandboxState, req: Request) -> Reply:
    config = sb.config
    if req.basic_auth() != (config.paypal_client_id, config.paypal_client_secret):
        return Reply(401, {"error": "invalid_client", "error_description": "Client Authentication failed"})
    if req.form().get("grant_type") != "client_credentials":
        return Reply(400, {"error": "unsupported_grant_type", "error_description": "Grant Type is NULL"})
    token = "A21AA" + secrets.token_urlsafe(32)
    sb.paypal.access_tokens[token] = time.monotonic() + config.paypal_token_ttl
    body = {
        "scope": SCOPE,
        "access_token": token,
        "token_type": "Bearer",
        "app_id": "APP-SANDBOX",
        "expires_in": config.paypal_token_ttl,
        "nonce": new_id(),
    }
    return Reply(200, body)


def _int_param(req: Request, name: str, default: int, upper: int) -> int | None:
    try:
        value = int(req.query.get(name, default))
    except ValueError:
        return None
    return value if 1 <= value <= upper else None


def list_tokens(sb: SandboxState, req: Request) -> Reply:
    customer_id = req.query.get("customer_id")
    if not customer_id:
        return _invalid("customer_id", "MISSING_REQUIRED_PARAMETER")
    malformed = _malformed(PAYPAL_CUSTOMER_ID, customer_id, "customer_id", "query")
    if malformed is not None:
        return malformed
    page_size = _int_param(req, "page_size", MAX_PAGE_SIZE, MAX_PAGE_SIZE)
    page = _int_param(req, "page", 1, 10)
    if page_size is None or page is None:
        return _invalid("page_size" if page_size is None else "page", "INVALID_PARAMETER_VALUE")
    tokens = sb.paypal.tokens_of(customer_id)
    body: dict[str, Any] = {
        "customer": {"id": customer_id},
        "payment_tokens": tokens[(page - 1) * page_size : page * page_size],
        "links": [{"href": f"{TOKENS}?customer_id={customer_id}&page={page}", "rel": "self", "method": "GET"}],
    }
    if req.query.get("total_required") == "true":
        body["total_items"] = len(tokens)
        body["total_pages"] = -(-len(tokens) // page_size)
    return Reply(200, body)


def get_token(sb: SandboxState, req: Request, token_id: str) -> Reply:
    malformed = _malformed(PAYPAL_TOKEN_ID, token_id, "id", "path")
    if malformed is not None:
        return malformed
    token = sb.paypal.payment_tokens.get(token_id)
    return Reply(200, token) if token else _not_found()


def delete_token(sb: SandboxState, req: Request, token_id: str) -> Reply:
    malformed = _malformed(PAYPAL_TOKEN_ID, token_id, "id", "path")
    if malformed is not None:
        return malformed
    token = sb.paypal.remove_token(token_id)
    if token is None:
        return _not_found()
    sb.effect("paypal", "payment_token_deleted", token_id=token_id, customer_id=token["customer"]["id"])
    return Reply(204)


ROUTES = [
    route("GET", TOKENS, list_tokens),
    route("GET", TOKENS + r"/(?P<token_id>[^/]+)", get_token),
    route("DELETE", TOKENS + r"/(?P<token_id>[^/]+)", delete_token),
]


def handle(sb: SandboxState, req: Request) -> Reply:
    """Answer one request as PayPal would."""
    if req.method == "POST" and req.path == "/v1/oauth2/token":
        return issue_token(sb, req)
    expires = sb.paypal.access_tokens.get(req.bearer() or "")
    if expires is None or time.monotonic() >= expires:
        return error(
            401,
            "AUTHENTICATION_FAILURE",
            "Authentication failed due to invalid authentication credentials or a missing Authorization header.",
        )
    return dispatch(ROUTES, sb, req) or _not_found()
