"""Each service's small HTTP server: /metrics, /healthz, /readyz plus routes a service adds (Starlette on uvicorn).

Routes are plain functions of a `Request` returning a `Response`, keyed by (method, path); they run in a worker
thread (they touch the database). The server binds its socket before it starts, so `port` is known at once
(port 0: any free port), and runs uvicorn on a background thread until `stop()`.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect
from starlette.requests import Request as StarletteRequest
from starlette.responses import Response as StarletteResponse
from starlette.routing import Route as StarletteRoute
from starlette.types import ASGIApp

from shared.logging import get_logger

log = get_logger(__name__)
MAX_REQUEST_BYTES = 1024 * 1024
START_TIMEOUT_S = 30.0


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
        return cls(status, json.dumps(data, default=str).encode(), "application/json")


Route = Callable[[Request], Response]


def metrics_route(_request: Request) -> Response:
    """Prometheus exposition of every metric in this process."""
    return Response(200, generate_latest(), CONTENT_TYPE_LATEST)


def _send(response: Response) -> StarletteResponse:
    return StarletteResponse(response.body, status_code=response.status, media_type=response.content_type)


class TooLarge(Exception):
    """The request body is over MAX_REQUEST_BYTES."""


async def _body(request: StarletteRequest) -> bytes:
    """The body, refused past the limit whether or not the client announced its length."""
    if int(request.headers.get("content-length") or 0) > MAX_REQUEST_BYTES:
        raise TooLarge
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_REQUEST_BYTES:
            raise TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _endpoint(by_method: Mapping[str, Route]) -> Callable[[StarletteRequest], Any]:
    async def endpoint(request: StarletteRequest) -> StarletteResponse:
        route = by_method.get(request.method)
        if route is None:
            return _send(Response.text(405, "wrong method"))
        try:
            body = await _body(request)
        except TooLarge:
            return _send(Response.text(413, "request too large"))
        except ClientDisconnect:
            return _send(Response.text(400, "request incomplete"))
        ours = Request(request.method, request.url.path, request.url.query, dict(request.headers.items()), body)
        try:
            response = await run_in_threadpool(route, ours)
        except Exception:  # a route's bug must not take the server down
            log.exception("web route failed", path=request.url.path)
            response = Response.text(500, "internal error")
        return _send(response)

    return endpoint


def routes_app(routes: Mapping[tuple[str, str], Route]) -> Starlette:
    """A Starlette app serving these (method, path) routes; unknown paths 404, known paths with another method 405."""
    by_path: dict[str, dict[str, Route]] = {}
    for (method, path), route in routes.items():
        by_path.setdefault(path, {})[method] = route
    methods = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
    table = [StarletteRoute(path, _endpoint(by_method), methods=methods) for path, by_method in by_path.items()]

    async def not_found(_request: StarletteRequest, _exc: Exception) -> StarletteResponse:
        return _send(Response.text(404, "not found"))

    return Starlette(routes=table, exception_handlers={404: not_found})


class ThreadedServer:
    """uvicorn serving an ASGI app on a background thread, on a socket bound up front; `settings` adds
    uvicorn.Config settings (e.g. `http=` a protocol class, `timeout_keep_alive=`)."""

    def __init__(self, app: ASGIApp, host: str, port: int, *, lifespan: str = "off", **settings: Any) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        # IPPROTO_TCP spelled out: asyncio sets TCP_NODELAY only on sockets that say so (headers and body go out
        # in separate writes; with Nagle and delayed ACKs each answer would wait ~40 ms).
        self._socket = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((host, port))
        self._socket.listen(128)
        self.host = host
        self.port = self._socket.getsockname()[1]
        config = uvicorn.Config(app, access_log=False, log_config=None, lifespan=lifespan,  # type: ignore[arg-type]
                                server_header=False, timeout_graceful_shutdown=5, **settings)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._socket]}, name="web",
                                        daemon=True)

    def start(self) -> ThreadedServer:
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the web server on port {self.port} did not start")
            time.sleep(0.01)
        return self

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._socket.close()


class WebServer(ThreadedServer):
    """Serves routes keyed by (method, path) on a background thread."""

    def __init__(self, host: str, port: int, routes: Mapping[tuple[str, str], Route]) -> None:
        super().__init__(routes_app(routes), host, port)

    def start(self) -> WebServer:
        super().start()
        return self
