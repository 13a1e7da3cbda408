"""The sandbox's HTTP face: vendor prefixes on one port, injected outages, and the `/_sandbox/` control API.

It runs on the project's one web stack (an ASGI app on uvicorn, served by `shared.web.ThreadedServer`). The
vendor fakes stay framework-free behind `wire.Request`/`wire.Reply`; this module only translates. The "refuse"
outage answers nothing and resets the TCP connection, which ASGI has no message for: `ResettingH11Protocol`, a
small subclass of uvicorn's h11 protocol, offers each request the `RESET` scope extension that does it.
"""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import anyio
import anyio.to_thread
from starlette.requests import ClientDisconnect
from starlette.requests import Request as StarletteRequest
from starlette.responses import Response as StarletteResponse
from starlette.types import Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from services.sandbox import installers, mailchimp, paypal, visma
from services.sandbox.state import SandboxState
from services.sandbox.wire import Reply, Request
from shared.web import ThreadedServer

METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})
RESET = "loggamera.connection.reset"  # scope["extensions"] key: a callable that resets this request's connection
WORKERS = 256  # requests answered at once; the fakes block (state lock), so more than anyio's default 40
KEEP_ALIVE_S = 30  # idle keep-alive connections are closed after this long

FAKES: dict[str, ModuleType] = {
    "mailchimp": mailchimp,
    "paypal": paypal,
    "visma": visma,
    "installers": installers,
}


def vendor_error(vendor: str, status: int, message: str) -> Reply:
    """An error in the shape the vendor itself uses."""
    if vendor == "mailchimp":
        return mailchimp.error(status, "Service Unavailable" if status >= 500 else "Too Many Requests", message)
    if vendor == "paypal":
        return paypal.error(status, "SERVICE_UNAVAILABLE" if status >= 500 else "RATE_LIMIT_REACHED", message)
    if vendor == "visma":
        return visma.error(status, 5000 if status >= 500 else 4029, message)
    return installers.error(status, "unavailable" if status >= 500 else "rate_limited", message)


def _body(req: Request) -> dict[str, Any]:
    body = req.json()
    if not isinstance(body, dict):
        raise ValueError("the body must be a JSON object")
    return body


def _set_outage(state: SandboxState, req: Request) -> Any:
    body = _body(req)
    state.set_outage(
        str(body.get("vendor", "all")),
        str(body.get("mode", "503")),
        seconds=body.get("seconds"),
        retry_after=body.get("retry_after", 1),
        count=body.get("count"),
    )
    return state.snapshot()["outages"]


def _set_round_trip(state: SandboxState, req: Request) -> Any:
    body = _body(req)
    state.set_round_trip(str(body.get("vendor", "all")), float(body.get("seconds", 0)))
    return state.snapshot()["round_trips"]


def _done(action: Callable[[], object]) -> dict[str, bool]:
    action()
    return {"ok": True}


CONTROL: dict[tuple[str, str], Callable[[SandboxState, Request], Any]] = {
    ("GET", "/health"): lambda state, req: {"ok": True},
    ("GET", "/state"): lambda state, req: state.snapshot(),
    ("GET", "/requests"): lambda state, req: state.requests(req.query.get("vendor") or None),
    ("GET", "/effects"): lambda state, req: state.effects(req.query.get("vendor") or None),
    ("GET", "/mails"): lambda state, req: state.mails(),
    ("POST", "/reset"): lambda state, req: _done(state.reset),
    ("POST", "/outage"): _set_outage,
    ("POST", "/round-trip"): _set_round_trip,
    ("POST", "/seed"): lambda state, req: state.seed(_body(req)),
    ("POST", "/expire-tokens"): lambda state, req: _done(lambda: state.expire_tokens((req.json() or {}).get("vendor"))),
}


def control(state: SandboxState, req: Request) -> Reply:
    """The `/_sandbox/` API: inspect, reset, seed, inject outages, expire tokens."""
    action = CONTROL.get((req.method, req.path))
    if action is None:
        return Reply(404, {"error": "not_found", "message": f"no control route {req.method} {req.path}"})
    return Reply(200, action(state, req))


class ResettingH11Protocol(H11Protocol):
    """uvicorn's h11 protocol that offers every request `scope["extensions"][RESET]`: drop this connection with a
    TCP reset and no answer. A closed port cannot be faked per vendor on a shared one; a reset is the nearest
    thing a client can see (linger 0 turns the close into a RST instead of a FIN)."""

    def handle_events(self) -> None:
        super().handle_events()
        # A request's task is created above but runs only once this returns, so its scope has the key in time.
        if self.scope is not None:
            self.scope.setdefault("extensions", {})[RESET] = self.reset  # type: ignore[typeddict-unknown-key]

    def reset(self) -> None:
        with contextlib.suppress(OSError, AttributeError):
            self.transport.get_extra_info("socket").setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.transport.abort()


class SandboxApp:
    """ASGI app routing `/<vendor>/…` to that vendor's fake and `/_sandbox/…` to the control API. The fakes are
    synchronous and answer under the state lock, so each request is served on a worker thread."""

    def __init__(self, state: SandboxState) -> None:
        self.state = state
        self._workers: anyio.CapacityLimiter | None = None  # made on the server's event loop, at first use

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        request = StarletteRequest(scope, receive)
        if request.method not in METHODS:
            await _send(Reply(501, {"error": "not_implemented", "message": f"unsupported method {request.method}"}),
                        scope, receive, send)
            return
        try:
            body = await request.body()
        except ClientDisconnect:
            return  # nobody left to answer
        # The raw request target, as the vendors' paths are matched (percent-escapes kept).
        url = urlsplit(scope["raw_path"].decode("latin-1"))
        prefix, _, rest = url.path.lstrip("/").partition("/")
        query = dict(parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True))
        req = Request(request.method, "/" + rest, query, dict(request.headers.items()), body)
        if self._workers is None:
            self._workers = anyio.CapacityLimiter(WORKERS)
        reply = await anyio.to_thread.run_sync(self.serve, prefix, req, limiter=self._workers)
        if reply is None:
            await _reset(scope, receive)
        else:
            await _send(reply, scope, receive, send)

    def serve(self, prefix: str, req: Request) -> Reply | None:
        """The answer to one request; None: drop the connection without one."""
        state = self.state
        if prefix == "_sandbox":
            try:
                return control(state, req)
            except (ValueError, TypeError, KeyError, StopIteration) as exc:
                return Reply(400, {"error": "bad_request", "message": str(exc)})
        fake = FAKES.get(prefix)
        if fake is None:
            return Reply(404, {"error": "not_found", "message": f"no vendor {prefix!r}; try {list(FAKES)}"})
        # In flight from arrival until answered, whatever happens: Mailchimp's connection limit counts it. Answered
        # and finished under one hold of the state lock, so the next request never counts this one as still open.
        record = state.record_request(prefix, req)
        if (round_trip := state.round_trip_for(prefix)) > 0:
            time.sleep(round_trip)  # in flight, on this request's worker thread, not holding the state lock
        reply: Reply | None = None
        with state.lock:
            try:
                reply = self._answer(prefix, fake, req)
            finally:
                state.finish_request(record, reply)
        return reply

    def _answer(self, vendor: str, fake: ModuleType, req: Request) -> Reply | None:
        state = self.state
        outage = state.outage_for(vendor)
        if outage is not None:
            if outage.mode == "refuse":
                return None
            if outage.mode == "429":
                reply = vendor_error(vendor, 429, "Too many requests (sandbox outage).")
                reply.headers["Retry-After"] = str(outage.retry_after)
                return reply
            return vendor_error(vendor, 503, "Service unavailable (sandbox outage).")
        with state.lock:
            try:
                return fake.handle(state, req)
            except Exception as exc:  # the fake's own bug: answer like a server would, keep serving
                return vendor_error(vendor, 500, f"sandbox error: {type(exc).__name__}: {exc}")


async def _send(reply: Reply, scope: Scope, receive: Receive, send: Send) -> None:
    payload = b"" if reply.body is None else json.dumps(reply.body).encode()
    headers = {"server": "loggamera-sandbox", "content-length": str(len(payload))}
    if payload:
        headers["content-type"] = reply.content_type
    headers.update({name.lower(): value for name, value in reply.headers.items()})
    await StarletteResponse(payload, status_code=reply.status, headers=headers)(scope, receive, send)


async def _reset(scope: Scope, receive: Receive) -> None:
    reset = scope.get("extensions", {}).get(RESET)
    if reset is None:
        raise RuntimeError("the sandbox must be served with ResettingH11Protocol to drop connections")
    reset()
    while (await receive())["type"] != "http.disconnect":  # uvicorn notices the reset; then we are done
        pass


def sandbox_server(state: SandboxState, host: str, port: int) -> ThreadedServer:
    """The sandbox's HTTP server (not yet started); port 0 picks a free port."""
    return ThreadedServer(SandboxApp(state), host, port, http=ResettingH11Protocol, timeout_keep_alive=KEEP_ALIVE_S)
