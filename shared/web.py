"""A small HTTP server for each service: /metrics, /healthz, /readyz, plus routes a service adds."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from shared.logging import get_logger

log = get_logger(__name__)
MAX_REQUEST_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: str
    headers: Mapping[str, str]
    body: bytes


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"

    @classmethod
    def text(cls, status: int, text: str) -> Response:
        return cls(status, (text + "\n").encode())

    @classmethod
    def json(cls, status: int, data: Any) -> Response:
        import json

        return cls(status, json.dumps(data, default=str).encode(), "application/json")


Route = Callable[[Request], Response]


def metrics_route(_request: Request) -> Response:
    """Prometheus exposition of every metric in this process."""
    return Response(200, generate_latest(), CONTENT_TYPE_LATEST)


class WebServer:
    """Serves routes keyed by (method, path) on a background thread."""

    def __init__(self, host: str, port: int, routes: Mapping[tuple[str, str], Route]) -> None:
        table = dict(routes)

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                path, _, query = self.path.partition("?")
                route = table.get((self.command, path))
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_REQUEST_BYTES:
                    response = Response.text(413, "request too large")
                elif route is None:
                    known = any(p == path for _, p in table)
                    response = Response.text(405, "wrong method") if known else Response.text(404, "not found")
                else:
                    request = Request(self.command, path, query, dict(self.headers.items()),
                                      self.rfile.read(length) if length else b"")
                    try:
                        response = route(request)
                    except Exception:  # a route's bug must not take the server down
                        log.exception("web route failed", path=path)
                        response = Response.text(500, "internal error")
                self.send_response(response.status)
                self.send_header("Content-Type", response.content_type)
                self.send_header("Content-Length", str(len(response.body)))
                self.end_headers()
                self.wfile.write(response.body)

            do_GET = do_POST = _serve

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="web", daemon=True)

    def start(self) -> WebServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
