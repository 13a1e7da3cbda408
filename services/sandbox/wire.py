"""The request and reply the sandbox's vendor fakes see, and the small router they share."""

from __future__ import annotations

import base64
import binascii
import json
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

# Request fields that carry secrets; the request log shows that they were sent, never their value.
SECRET_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})
SECRET_FORM_FIELDS = frozenset({"client_secret", "refresh_token", "code", "password", "access_token"})
REDACTED = "[redacted]"


@dataclass(frozen=True)
class Request:
    """One HTTP request, its path relative to the vendor prefix (`/3.0/lists/…` for Mailchimp)."""

    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]  # lower-cased names
    body: bytes = b""

    def json(self) -> Any:
        """The body as JSON; ValueError if it is not."""
        return json.loads(self.body) if self.body else None

    def form(self) -> dict[str, str]:
        """The body as an application/x-www-form-urlencoded form."""
        return dict(parse_qsl(self.body.decode("utf-8", "replace"), keep_blank_values=True))

    def basic_auth(self) -> tuple[str, str] | None:
        """(user, password) from an HTTP Basic Authorization header."""
        scheme, _, value = self.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            user, sep, password = base64.b64decode(value, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return (user, password) if sep else None

    def bearer(self) -> str | None:
        """The token of a Bearer Authorization header."""
        scheme, _, value = self.headers.get("authorization", "").partition(" ")
        return value.strip() if scheme.lower() == "bearer" and value.strip() else None

    def loggable_body(self) -> Any:
        """The body for the request log: JSON as sent, forms with secrets redacted."""
        if not self.body:
            return None
        if self.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            form = self.form()
            return {k: REDACTED if k in SECRET_FORM_FIELDS else v for k, v in form.items()}
        try:
            return self.json()
        except ValueError:
            return self.body.decode("utf-8", "replace")

    def loggable_headers(self) -> dict[str, str]:
        """Headers for the request log, without credentials."""
        return {k: v for k, v in self.headers.items() if k not in SECRET_HEADERS}


@dataclass
class Reply:
    """What a fake vendor answers; body None means an empty body."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"


Handler = Callable[..., Reply]
Route = tuple[str, re.Pattern[str], Handler]


def route(method: str, pattern: str, handler: Handler) -> Route:
    """A route: method, full-match path pattern with named groups, handler(state, req, **groups)."""
    return (method, re.compile(pattern), handler)


def dispatch(routes: list[Route], state: Any, req: Request) -> Reply | None:
    """Run the handler whose route matches, or None when no route does."""
    for method, pattern, handler in routes:
        match = pattern.fullmatch(req.path)
        if match and method == req.method:
            return handler(state, req, **match.groupdict())
    return None


def new_id() -> str:
    """A fresh opaque id."""
    return str(uuid.uuid4())
