"""The console's web application (Starlette, Jinja2, a little htmx): routes, login, roles, CSRF, headers.

Every page needs a login; every POST needs the session's CSRF token; actions that change something need the
operator role and are recorded in the ledger (`console_actions`) before they run. Read-only pages are plain
HTML that works without JavaScript; htmx only refreshes the health panel and loads slow fragments.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jinja2
from sqlalchemy import Engine, select
from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlalchemy.orm import Session as DbSession
from sqlalchemy.orm import sessionmaker
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from schemas import SLICE_SERVICES
from services.cli import notice
from services.console import audit, broker, health
from services.console import requests as listing
from services.console.auth import Authenticator, RateLimited, role_allows
from services.console.auth import Session as Login
from services.console.settings import ConsoleSettings
from services.ledger import legal
from services.ledger.queries import verify_receipt
from services.ledger.retry import plan_retry, send_retry
from services.ledger.settings import LedgerSettings
from services.registry import SERVICES
from shared.db import make_engine, session_factory
from shared.errors import PublishError
from shared.logging import get_logger
from shared.settings import RuntimeSettings

log = get_logger(__name__)
HERE = Path(__file__).parent
COOKIE = "erasure_console"
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
SECURITY_HEADERS = {
    b"content-security-policy": CSP.encode(),
    b"x-frame-options": b"DENY",
    b"x-content-type-options": b"nosniff",
    b"referrer-policy": b"no-referrer",
    b"cache-control": b"no-store",
    b"permissions-policy": b"camera=(), microphone=(), geolocation=()",
}
SCHEMA_ATTEMPTS = 10
REQUEST_ID = re.compile(r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}")

Handler = Callable[[Request], Awaitable[Response]]


class ResponseHeaders:
    """Adds the security headers (CSP with frame-ancestors, framing, sniffing, referrer, caching) to every
    response, and `Server-Timing: app;dur=<ms>` (time to the response head) for operators and the bench."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                took = (time.perf_counter() - started) * 1000
                present = {k.lower() for k, _ in message.get("headers", [])}
                message["headers"] = [*message.get("headers", []),
                                      *((k, v) for k, v in SECURITY_HEADERS.items() if k not in present),
                                      (b"server-timing", f"app;dur={took:.2f}".encode())]
            await send(message)

        await self.app(scope, receive, with_headers)


@dataclass
class Console:
    """What the routes share: settings, the ledger and account databases, the logins, the metrics sampler."""

    settings: ConsoleSettings
    runtime: RuntimeSettings
    ledger: sessionmaker[DbSession]
    account: sessionmaker[DbSession] | None
    auth: Authenticator
    sampler: health.Sampler | None
    stuck_after: timedelta


def prepare_ledger(engine: Engine) -> None:
    """Bring the ledger schema up to date (the audit table); the ledger itself may be migrating at the same time."""
    from services.ledger.main import build
    from shared.db import ensure_schema

    service = build()
    for attempt in range(SCHEMA_ATTEMPTS):
        try:
            ensure_schema(engine, service.metadata, service.migrations)
            return
        except (OperationalError, ProgrammingError):
            if attempt == SCHEMA_ATTEMPTS - 1:
                raise
            time.sleep(1)


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _login(request: Request) -> Login | None:
    console: Console = request.app.state.console
    return console.auth.session(request.session.get("sid"))


def _now() -> datetime:
    return datetime.now(UTC)


templates = Jinja2Templates(env=jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True))


def _days(value: float) -> str:
    return f"{value:+.1f}"


def _when(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if value else "—"


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


templates.env.filters["days"] = _days
templates.env.filters["pretty"] = _pretty
templates.env.filters["when"] = _when


def render(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
    login = _login(request)
    return templates.TemplateResponse(request, name, {"login": login, "now": _now(), **context},
                                      status_code=status)


def error_page(request: Request, status: int, title: str, message: str) -> HTMLResponse:
    return render(request, "error.html", status, title=title, message=message)


def page(needed: str = "viewer") -> Callable[[Handler], Handler]:
    """Require a login with at least this role; POSTs also need the session's CSRF token."""

    def decorate(handler: Handler) -> Handler:
        async def guarded(request: Request) -> Response:
            login = _login(request)
            if login is None:
                if request.method == "POST":
                    return error_page(request, 403, "Not logged in", "Your session has ended; log in again.")
                return RedirectResponse("/login", status_code=303)
            if request.method == "POST":
                form = await request.form()
                request.state.form = form
                if not login.csrf_ok(str(form.get("csrf") or "")):
                    log.warning("console request refused: missing or wrong CSRF token", who=login.user,
                                path=request.url.path)
                    return error_page(request, 403, "Refused",
                                      "This form has expired or did not come from the console. Reload and retry.")
            if not role_allows(login.role, needed):
                log.warning("console request refused: role", who=login.user, role=login.role, needed=needed)
                return error_page(request, 403, "Not allowed", f"This needs the {needed} role.")
            request.state.login = login
            return await handler(request)

        return guarded

    return decorate


def _form(request: Request) -> FormData:
    return request.state.form


# --- login ------------------------------------------------------------------------------------------------


async def login_form(request: Request) -> Response:
    if _login(request) is not None:
        return RedirectResponse("/requests", status_code=303)
    request.session["login_csrf"] = request.session.get("login_csrf") or secrets.token_urlsafe(32)
    return render(request, "login.html", login_csrf=request.session["login_csrf"])


async def login_submit(request: Request) -> Response:
    console: Console = request.app.state.console
    form = await request.form()
    expected = request.session.get("login_csrf") or ""
    if not expected or not secrets.compare_digest(expected, str(form.get("csrf") or "")):
        return error_page(request, 403, "Refused", "The login form expired; open the login page again.")
    name, password = str(form.get("username") or ""), str(form.get("password") or "")
    try:
        login = await run_in_threadpool(console.auth.check, name, password, _client(request))
    except RateLimited as exc:
        log.warning("console login rate-limited", client=_client(request))
        response = render(request, "login.html", 429, login_csrf=expected, error=str(exc).capitalize() + ".")
        response.headers["Retry-After"] = str(int(exc.retry_after) + 1)
        return response
    if login is None:
        log.warning("console login failed", client=_client(request))
        return render(request, "login.html", 401, login_csrf=expected, error="Wrong name or password.")
    request.session.clear()
    request.session["sid"] = login.sid
    log.info("console login", who=login.user, role=login.role)
    return RedirectResponse("/requests", status_code=303)


@page()
async def logout(request: Request) -> Response:
    console: Console = request.app.state.console
    console.auth.end(request.session.get("sid"))
    log.info("console logout", who=request.state.login.user)
    request.session.clear()
    return RedirectResponse("/login", status_code=303)


# --- requests ---------------------------------------------------------------------------------------------


def _ledger(request: Request) -> sessionmaker[DbSession]:
    return request.app.state.console.ledger


@page()
async def request_list(request: Request) -> Response:
    console: Console = request.app.state.console
    q = request.query_params
    try:
        filters = listing.Filters.parse(q.get("state"), q.get("flag"), q.get("after"))
    except listing.BadFilter as exc:
        return error_page(request, 400, "Cannot show that list", str(exc))
    now = _now()

    def load() -> tuple[listing.Page, list[listing.RightsRow]]:
        due_soon = timedelta(days=console.settings.due_soon_days)
        with console.ledger() as session:
            return (listing.page(session, filters, now=now, size=console.settings.page_size,
                                 stuck_after=console.stuck_after, due_soon=due_soon),
                    listing.open_rights(session, now=now, stuck_after=console.stuck_after, due_soon=due_soon))

    try:
        found, rights = await run_in_threadpool(load)
    except listing.BadFilter as exc:
        return error_page(request, 400, "Cannot show that list", str(exc))
    return render(request, "requests.html", filters=filters, page=found, states=listing.STATES, rights=rights)


@page()
async def request_find(request: Request) -> Response:
    form = _form(request)
    request_id = str(form.get("request_id") or "").strip()
    user_id = str(form.get("user_id") or "").strip()
    if request_id:
        if not REQUEST_ID.fullmatch(request_id):
            return error_page(request, 400, "Not a request id", "A request id is a UUID, e.g. 3f0c2a9e-6d1b-….")
        return RedirectResponse(f"/requests/{request_id.lower()}", status_code=303)
    if not user_id:
        return error_page(request, 400, "Nothing to find", "Give a request id or a user id.")

    def load() -> list[Any]:
        with _ledger(request)() as session:
            return listing.for_user(session, user_id)

    found = await run_in_threadpool(load)
    return render(request, "user_requests.html", found=found, user_id=user_id)


def _status(request: Request, request_id: str) -> Any:
    with _ledger(request)() as session:
        return listing.one(session, request_id)


@page()
async def request_detail(request: Request) -> Response:
    request_id = request.path_params["request_id"]
    state = await run_in_threadpool(_status, request, request_id)
    if state is None:
        return error_page(request, 404, "No such request", "The ledger has no erasure request with that id.")
    console: Console = request.app.state.console
    return render(request, "request.html", r=state, stuck_after=console.stuck_after, verified=None)


@page()
async def request_verify(request: Request) -> Response:
    request_id = request.path_params["request_id"]

    def load() -> tuple[Any, Any]:
        with _ledger(request)() as session:
            return listing.one(session, request_id), verify_receipt(session, request_id)

    state, verified = await run_in_threadpool(load)
    if state is None:
        return error_page(request, 404, "No such request", "The ledger has no erasure request with that id.")
    if request.headers.get("hx-request"):
        return render(request, "_verify.html", verified=verified)
    console: Console = request.app.state.console
    return render(request, "request.html", r=state, stuck_after=console.stuck_after, verified=verified)


@page()
async def request_dead_letters(request: Request) -> Response:
    """Dead letters whose event carries this request id (a slice that gave up): browsing every queue is slow,
    so the request page loads this separately."""
    console: Console = request.app.state.console
    request_id = request.path_params["request_id"]
    try:
        _, letters = await run_in_threadpool(broker.survey, console.runtime)
    except broker.DeadLetterError as exc:
        return render(request, "_request_dead.html", letters=[], problem=str(exc))
    mine = [letter for letter in letters if _request_of(letter) == request_id or letter.id == request_id]
    return render(request, "_request_dead.html", letters=mine, problem=None, now=_now())


def _request_of(letter: broker.DeadLetter) -> str | None:
    try:
        body = json.loads(letter.body)
    except (UnicodeDecodeError, ValueError):
        return None
    data = body.get("data") if isinstance(body, dict) else None
    return str(data.get("request_id")) if isinstance(data, dict) and data.get("request_id") else None


# --- actions on a request ---------------------------------------------------------------------------------


class BadAction(Exception):
    """The action's form is incomplete or unreadable; the message says what to fix."""


def _asked(action: str, form: FormData | None) -> dict[str, Any]:
    """What the operator asked for, read from the form: reason and months, reason, nothing, or the slice."""
    if form is None:
        return {}
    reason = str(form.get("reason") or "").strip()
    if action in ("extend", "hold") and not reason:
        raise BadAction("Give a reason: it is recorded in the receipt" +
                        (" and told to the data subject." if action == "extend" else "."))
    if action == "extend":
        months = str(form.get("months") or "2").strip()
        if months not in ("1", "2"):
            raise BadAction("An extension adds 1 or 2 further months.")
        return {"reason": reason, "months": int(months)}
    if action == "hold":
        return {"reason": reason}
    if action == "retry":
        wanted = str(form.get("slice") or "").strip()
        if wanted and wanted not in SLICE_SERVICES:
            raise BadAction(f"No slice {wanted!r}; the slices are {', '.join(SLICE_SERVICES)}.")
        return {"slice": wanted or None}
    return {}


def _act(console: Console, action: str, state: Any, asked: dict[str, Any]) -> str:
    """Carry out the action through the ledger's own functions (those `erasure` runs); the line to show."""
    now = _now()

    def write(change: Callable[[DbSession], Any]) -> Any:
        with console.ledger.begin() as session:
            return change(session)

    if action == "extend":
        told = notice.extend_and_tell(write, state.request_id, asked["months"], asked["reason"], now=now,
                                      settings=LedgerSettings(), account=console.account)
        assert told is not None
        done = told.extended
        return (f"Request extended by {done.months} month(s); due {done.due_at:%Y-%m-%d %H:%M} UTC. "
                f"{told.line[0].upper()}{told.line[1:]}.")
    if action in ("hold", "release"):
        if action == "hold":
            number, chained = write(lambda s: legal.hold(s, state.user_id, asked["reason"], now, console.runtime))
            what = "placed on"
        else:
            number, chained = write(lambda s: legal.release(s, state.user_id, now, console.runtime))
            what = "released for"
        return (f"Legal hold {number} {what} user {state.user_id}; recorded in the receipt of {len(chained)} open "
                "request(s).")
    with console.ledger() as session:
        event, slices = plan_retry(session, state.request_id, asked["slice"])
    sent = send_retry(event, slices, console.runtime)
    return f"Re-sent to {', '.join(slices)} ({sent} message(s)); their reports appear here as they arrive."


def _request_action(action: str) -> Handler:
    """Extend, hold, release or retry: GET (or an unconfirmed POST) shows what will happen; the confirmed POST
    records the action in the audit log, then does it."""

    async def handler(request: Request) -> Response:
        console: Console = request.app.state.console
        request_id = request.path_params["request_id"]
        state = await run_in_threadpool(_status, request, request_id)
        if state is None:
            return error_page(request, 404, "No such request", "The ledger has no erasure request with that id.")
        try:
            asked = _asked(action, _form(request) if request.method == "POST" else None)
        except BadAction as exc:
            return error_page(request, 400, f"Cannot {action}", str(exc))
        if request.method == "GET" or _form(request).get("confirm") != "yes":
            return render(request, "confirm_request.html", r=state, action=action, asked=asked,
                          slices=SLICE_SERVICES)
        login = request.state.login
        await run_in_threadpool(lambda: audit.record(
            console.ledger, who=login.user, role=login.role, action=f"request_{action}", target=state.request_id,
            detail={"user_id": state.user_id, **asked}))
        try:
            message = await run_in_threadpool(_act, console, action, state, asked)
        except legal.Refused as exc:
            return error_page(request, 409, f"{action.capitalize()} refused", f"{str(exc)[0].upper()}{str(exc)[1:]}.")
        except PublishError as exc:
            return error_page(request, 503, "Retry not sent",
                              f"{exc}. Nothing changed in the ledger; do it again (a second run is harmless).")
        log.info("console request action", action=action, who=login.user, what=state.request_id)
        return render(request, "done.html", message=message, back=(f"/requests/{state.request_id}", "the request"))

    return handler


# --- dead letters -----------------------------------------------------------------------------------------


@page()
async def dead_letter_list(request: Request) -> Response:
    console: Console = request.app.state.console
    try:
        summaries, letters = await run_in_threadpool(broker.survey, console.runtime)
    except broker.DeadLetterError as exc:
        return error_page(request, 503, "Broker unreachable", str(exc))
    return render(request, "dead_letters.html", summaries=summaries, letters=letters[:500], total=len(letters))


async def _one_letter(request: Request) -> broker.DeadLetter | Response:
    console: Console = request.app.state.console
    service, event_id = request.path_params["service"], request.path_params["event_id"]
    if service not in broker.catalog_services():
        return error_page(request, 404, "No such service", "That service has no dead-letter queue.")
    try:
        found = await run_in_threadpool(broker.find, console.runtime, service, event_id)
    except broker.DeadLetterError as exc:
        return error_page(request, 503, "Broker unreachable", str(exc))
    wanted = str(_form(request).get("failed_at") or "") if request.method == "POST" else ""
    if wanted:
        found = [letter for letter in found if letter.key[2] == wanted]
    if not found:
        return error_page(request, 404, "No such dead letter",
                          "It is not in the queue (any more): replayed, purged or expired meanwhile.")
    return found[0]


@page()
async def dead_letter_detail(request: Request) -> Response:
    letter = await _one_letter(request)
    if isinstance(letter, Response):
        return letter
    return render(request, "dead_letter.html", letter=letter, detail=letter.detail(reveal=False))


@page("operator")
async def dead_letter_reveal(request: Request) -> Response:
    console: Console = request.app.state.console
    letter = await _one_letter(request)
    if isinstance(letter, Response):
        return letter
    login = request.state.login
    await run_in_threadpool(lambda: audit.record(console.ledger, who=login.user, role=login.role,
                                                 action="dead_letter_reveal", target=letter.id,
                                                 detail={"service": letter.service}))
    log.warning("dead letter revealed", audit=True, who=login.user, what=letter.id, service=letter.service)
    return render(request, "dead_letter.html", letter=letter, detail=letter.detail(reveal=True))


def _confirm_or_act(action: str) -> Handler:
    async def handler(request: Request) -> Response:
        console: Console = request.app.state.console
        letter = await _one_letter(request)
        if isinstance(letter, Response):
            return letter
        if request.method == "GET" or _form(request).get("confirm") != "yes":
            return render(request, "confirm.html", letter=letter, action=action)
        login = request.state.login
        await run_in_threadpool(lambda: audit.record(
            console.ledger, who=login.user, role=login.role, action=f"dead_letter_{action}", target=letter.id,
            detail={"service": letter.service, "kind": letter.kind, "failed_at": letter.key[2]}))
        try:
            if action == "replay":
                report = await run_in_threadpool(broker.replay, console.runtime, letter)
                done = report.total_moved + report.acked_only
                message = (f"Replayed: the dead letter is back on the {letter.service} queue with its attempts "
                           "reset." if done else "Nothing moved: it had gone from the queue meanwhile.")
            else:
                removed = await run_in_threadpool(broker.purge, console.runtime, letter)
                message = "Deleted for good." if removed else "Nothing deleted: it had gone from the queue meanwhile."
        except broker.DeadLetterError as exc:
            return error_page(request, 503, "Broker unreachable", str(exc))
        except Exception as exc:  # a failed publish: nothing is lost, the dead letter stays
            log.error("console dead-letter action failed", action=action, error=type(exc).__name__)
            return error_page(request, 503, f"{action.capitalize()} stopped",
                              "Nothing is lost: the dead letter is still in its queue unless it was confirmed on "
                              "its service queue. Try again.")
        log.info("console dead-letter action", action=action, who=login.user, what=letter.id,
                 service=letter.service)
        return render(request, "done.html", message=message, letter=letter)

    return handler


# --- intake, health, audit --------------------------------------------------------------------------------


@page()
async def intake(request: Request) -> Response:
    from services.account.models import IntakeRequest

    console: Console = request.app.state.console
    if console.account is None:
        return error_page(request, 503, "No account database", "Set ERASURE_CONSOLE_ACCOUNT_DATABASE_URL.")
    account = console.account

    def load() -> list[Any]:
        with account() as session:
            return list(session.scalars(select(IntakeRequest).where(IntakeRequest.confirmed_at.is_(None))
                                        .order_by(IntakeRequest.expires_at).limit(500)))

    try:
        pending = await run_in_threadpool(load)
    except (OperationalError, ProgrammingError):
        return error_page(request, 503, "Account database unavailable",
                          "The account database does not answer or has no intake table yet.")
    now = _now()
    rows = [{"request_id": p.request_id, "received_at": _aware(p.received_at), "expires_at": _aware(p.expires_at),
             "expired": _aware(p.expires_at) <= now} for p in pending]
    return render(request, "intake.html", rows=rows)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _health_rows(console: Console) -> list[dict[str, Any]]:
    try:
        depths = broker.queue_depths(console.runtime, SERVICES)
        dead = broker.dead_counts(console.runtime)
        broker_ok = True
    except broker.DeadLetterError:
        depths, dead, broker_ok = {}, {}, False
    rows = []
    for service in SERVICES:
        history = console.sampler.history(service) if console.sampler else []
        last = history[-1] if history else None
        throughput = health.rate(history, "handled")
        dead_rate = health.rate(history, "dead")
        rows.append({
            "service": service, "up": bool(last and last.up), "links": last.links if last else {},
            "outbox": last.outbox_backlog if last else None, "backlog": depths.get(service),
            "dead": dead.get(service), "throughput": throughput[-1] if throughput else None,
            "dead_rate": dead_rate[-1] if dead_rate else None, "broker_ok": broker_ok,
            "throughput_chart": health.sparkline(throughput[-60:], label=f"{service} events per second"),
            "dead_chart": health.sparkline(dead_rate[-60:], label=f"{service} dead letters per second"),
        })
    return rows


@page()
async def health_page(request: Request) -> Response:
    rows = await run_in_threadpool(_health_rows, request.app.state.console)
    template = "_health_panel.html" if request.headers.get("hx-request") else "health.html"
    return render(request, template, rows=rows)


@page()
async def audit_page(request: Request) -> Response:
    def load() -> list[audit.Action]:
        with _ledger(request)() as session:
            return audit.recent(session)

    return render(request, "audit.html", actions=await run_in_threadpool(load))


async def home(request: Request) -> Response:
    return RedirectResponse("/requests" if _login(request) else "/login", status_code=303)


async def healthz(_request: Request) -> Response:
    return JSONResponse({"ok": True})


async def not_found(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 404
    if status == 405:
        return error_page(request, 405, "Wrong method", "That address does not take this kind of request.")
    return error_page(request, status, "Not found", "There is no such page.")


async def server_error(request: Request, exc: Exception) -> Response:
    log.error("console page failed", path=request.url.path, error=type(exc).__name__)
    return HTMLResponse("<!doctype html><title>Error</title><h1>Something went wrong</h1>"
                        "<p>The error is logged. Try again, or check the console's log.</p>", status_code=500)


def create_app(settings: ConsoleSettings, runtime: RuntimeSettings, *, ledger_url: str, account_url: str | None,
               sample: bool = True) -> Starlette:
    """The console application, bound to the ledger (and account) database and the broker of `runtime`."""
    ledger_engine = make_engine(ledger_url)
    prepare_ledger(ledger_engine)
    account = session_factory(make_engine(account_url)) if account_url else None
    sampler = health.Sampler(settings.metrics_urls, settings.sample_every_s) if sample else None
    console = Console(settings, runtime, session_factory(ledger_engine), account, Authenticator(settings), sampler,
                      LedgerSettings().stuck_after)
    secret = settings.session_secret.get_secret_value()
    if not secret:
        secret = secrets.token_urlsafe(32)
        log.warning("ERASURE_CONSOLE_SESSION_SECRET is not set: sessions end when the console restarts")
    replay_or_purge = ["GET", "POST"]
    routes = [
        Route("/", home),
        Route("/healthz", healthz),
        Route("/login", login_form, methods=["GET"]),
        Route("/login", login_submit, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/requests", request_list, methods=["GET"]),
        Route("/requests/find", request_find, methods=["POST"]),
        Route("/requests/{request_id}", request_detail, methods=["GET"]),
        Route("/requests/{request_id}/verify", request_verify, methods=["POST"]),
        Route("/requests/{request_id}/dead-letters", request_dead_letters, methods=["GET"]),
        *(Route(f"/requests/{{request_id}}/{action}", page("operator")(_request_action(action)),
                methods=replay_or_purge) for action in ("extend", "hold", "release", "retry")),
        Route("/dead-letters", dead_letter_list, methods=["GET"]),
        Route("/dead-letters/{service}/{event_id}", dead_letter_detail, methods=["GET"]),
        Route("/dead-letters/{service}/{event_id}/reveal", dead_letter_reveal, methods=["POST"]),
        Route("/dead-letters/{service}/{event_id}/replay", page("operator")(_confirm_or_act("replay")),
              methods=replay_or_purge),
        Route("/dead-letters/{service}/{event_id}/purge", page("operator")(_confirm_or_act("purge")),
              methods=replay_or_purge),
        Route("/intake", intake, methods=["GET"]),
        Route("/health", health_page, methods=["GET"]),
        Route("/audit", audit_page, methods=["GET"]),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        if sampler is not None:
            sampler.start()
        yield
        if sampler is not None:
            sampler.stop()
        ledger_engine.dispose()

    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(ResponseHeaders),
            Middleware(SessionMiddleware, secret_key=secret, session_cookie=COOKIE,
                       max_age=int(settings.session_hours * 3600), same_site="strict", https_only=settings.secure),
        ],
        exception_handlers={404: not_found, 405: not_found, 500: server_error, Exception: server_error},
        lifespan=lifespan,
    )
    app.state.console = console
    return app
