"""The sandbox's HTTP face: vendor prefixes on one port, injected outages, and the `/_sandbox/` control API."""

from __future__ import annotations

import contextlib
import json
import socket
import struct
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import ModuleType
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from services.sandbox import installers, mailchimp, paypal, visma
from services.sandbox.state import SandboxState
from services.sandbox.wire import Reply, Request

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
    ("POST", "/seed"): lambda state, req: state.seed(_body(req)),
    ("POST", "/expire-tokens"): lambda state, req: _done(lambda: state.expire_tokens((req.json() or {}).get("vendor"))),
}


def control(state: SandboxState, req: Request) -> Reply:
    """The `/_sandbox/` API: inspect, reset, seed, inject outages, expire tokens."""
    action = CONTROL.get((req.method, req.path))
    if action is None:
        return Reply(404, {"error": "not_found", "message": f"no control route {req.method} {req.path}"})
    return Reply(200, action(state, req))


class SandboxHandler(BaseHTTPRequestHandler):
    """Routes `/<vendor>/…` to that vendor's fake and `/_sandbox/…` to the control API."""

    protocol_version = "HTTP/1.1"
    server_version = "loggamera-sandbox"
    timeout = 30
    server: SandboxHTTPServer

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes; without this, Nagle and delayed ACKs add ~40 ms.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the request log is the record."""

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_PATCH(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def _read_request(self) -> tuple[str, Request]:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        prefix, _, rest = url.path.lstrip("/").partition("/")
        headers = {k.lower(): v for k, v in self.headers.items()}
        query = dict(parse_qsl(url.query, keep_blank_values=True))
        return prefix, Request(self.command, "/" + rest, query, headers, body)

    def _serve(self) -> None:
        prefix, req = self._read_request()
        state = self.server.state
        if prefix == "_sandbox":
            try:
                reply = control(state, req)
            except (ValueError, TypeError, KeyError, StopIteration) as exc:
                reply = Reply(400, {"error": "bad_request", "message": str(exc)})
            self._send(reply)
            return
        fake = FAKES.get(prefix)
        if fake is None:
            self._send(Reply(404, {"error": "not_found", "message": f"no vendor {prefix!r}; try {list(FAKES)}"}))
            return
        record = state.record_request(prefix, req)
        reply = self._answer(prefix, fake, req)
        state.finish_request(record, reply)
        if reply is None:
            self._refuse()
        else:
            self._send(reply)

    def _answer(self, vendor: str, fake: ModuleType, req: Request) -> Reply | None:
        state = self.server.state
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

    def _send(self, reply: Reply) -> None:
        payload = b"" if reply.body is None else json.dumps(reply.body).encode()
        self.send_response(reply.status)
        if payload:
            self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(payload)))
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def _refuse(self) -> None:
        # A closed port cannot be faked per vendor on a shared one; the nearest thing a client can see
        # is a connection reset with no answer (linger 0 turns the close into a RST).
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


class SandboxHTTPServer(ThreadingHTTPServer):
    """A threading HTTP server that carries the sandbox state to its handlers."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], state: SandboxState) -> None:
        self.state = state
        super().__init__(address, SandboxHandler)
