"""HTTP routes of the account service: the inbound-mail webhook and the confirmation link.

`POST /intake/email` takes the raw RFC 5322 message, as inbound-mail webhooks deliver it, and requires the
shared secret in `X-Intake-Secret`. `GET /intake/confirm?token=...` only shows a page with a Confirm button;
the `POST` it sends does the confirming. Mail scanners and link previews fetch every link in a message, so
a GET that erased an account would let a virus scanner confirm on the user's behalf.
"""

from __future__ import annotations

import hmac
import html
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qs

from services.account.intake import (
    ConfirmRefused,
    IntakeRejected,
    confirm_by_token,
    pending_request,
    receive_by_email,
)
from services.account.settings import AccountSettings
from shared.errors import PermanentError, TransientError
from shared.logging import get_logger
from shared.web import Request, Response

log = get_logger(__name__)
SECRET_HEADER = "x-intake-secret"  # noqa: S105 - a header name, not a secret
CONFIRM_STATUS = {"unknown_token": 404, "token_used": 409, "token_expired": 410, "account_gone": 410}
FORM = "application/x-www-form-urlencoded"


def _header(request: Request, name: str) -> str:
    return next((value for key, value in request.headers.items() if key.lower() == name), "")


def _token(request: Request) -> str:
    fields = parse_qs(request.query)
    if _header(request, "content-type").split(";")[0].strip().lower() == FORM:
        fields = {**fields, **parse_qs(request.body.decode("utf-8", "replace"))}
    return (fields.get("token") or [""])[0]


def _page(status: int, title: str, text: str, form_token: str | None = None) -> Response:
    form = "" if form_token is None else (
        '<form method="post" action="/intake/confirm">'
        f'<input type="hidden" name="token" value="{html.escape(form_token)}">'
        '<button type="submit">Confirm</button></form>')
    body = (f"<!doctype html><html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title></head>"
            f"<body><h1>{html.escape(title)}</h1><p>{html.escape(text)}</p>{form}</body></html>")
    return Response(status, body.encode(), "text/html; charset=utf-8")


def intake_routes(runner: Any, settings: AccountSettings) -> Mapping[tuple[str, str], Callable[[Request], Response]]:
    """The intake routes, bound to a running account service (its sessions, runtime settings and relay)."""

    def receive_email(request: Request) -> Response:
        secret = settings.intake_secret.get_secret_value()
        if not secret:
            return Response.json(503, {"error": "intake_disabled",
                                       "message": "set ERASURE_ACCOUNT_INTAKE_SECRET to accept inbound mail"})
        if not hmac.compare_digest(_header(request, SECRET_HEADER).encode(), secret.encode()):
            log.warning("inbound mail refused: wrong or missing intake secret")
            return Response.json(401, {"error": "unauthorized", "message": "wrong or missing X-Intake-Secret"})
        try:
            accepted = receive_by_email(runner.sessions, request.body, settings)
        except IntakeRejected as exc:
            return Response.json(422, {"error": exc.reason, "message": str(exc)})
        except (TransientError, PermanentError):
            # The webhook sender retries a 5xx later; the request was withdrawn, so nothing half-done is left.
            return Response.json(503, {"error": "mail_relay_unavailable",
                                       "message": "the confirmation mail could not be sent; try again later"})
        return Response.json(202, {"status": "confirmation_sent", "request_id": accepted.request_id,
                                   "expires_at": accepted.expires_at.isoformat()})

    def show_confirmation(request: Request) -> Response:
        token = _token(request)
        try:
            with runner.sessions() as session:
                pending_request(session, token)
        except ConfirmRefused as exc:
            return _page(CONFIRM_STATUS[exc.reason], "Cannot confirm", str(exc).capitalize() + ".")
        return _page(200, "Unregister your Loggamera account?",
                     "Press Confirm to unregister the account and delete its personal data.", form_token=token)

    def confirm(request: Request) -> Response:
        from_form = _header(request, "content-type").split(";")[0].strip().lower() == FORM
        try:
            confirmed = confirm_by_token(runner.sessions, _token(request), runner.settings)
        except ConfirmRefused as exc:
            status = CONFIRM_STATUS[exc.reason]
            if from_form:
                return _page(status, "Cannot confirm", str(exc).capitalize() + ".")
            return Response.json(status, {"error": exc.reason, "message": str(exc)})
        if runner.relay is not None:
            runner.relay.notify()
        if from_form:
            return _page(200, "Confirmed", "Your account is being deleted. We will e-mail you when it is done.")
        return Response.json(200, {"status": "confirmed", "request_id": confirmed.request_id})

    return {
        ("POST", "/intake/email"): receive_email,
        ("GET", "/intake/confirm"): show_confirmation,
        ("POST", "/intake/confirm"): confirm,
    }
