"""An HTTP gateway in front of the sandbox that loses answers on demand: the request reaches the vendor and
takes effect there, but the caller's connection is reset before the answer comes back."""

from __future__ import annotations

import socket
import struct
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx


class LossyGateway:
    """An HTTP gateway in front of the sandbox that can lose answers: the request reaches the vendor and takes
    effect there, but the caller's connection is reset before the answer comes back (a timeout after the fact)."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self._http = httpx.Client(timeout=30)
        self._lock = threading.Lock()
        self._rules: list[list[Any]] = []  # [method, path fragment, answers still to lose]
        self.lost: list[str] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()

    def lose_answers(self, method: str, path_fragment: str, count: int) -> None:
        """Lose the answers to the next `count` requests of `method` whose path contains `path_fragment`."""
        with self._lock:
            self._rules.append([method, path_fragment, count])

    def pending(self) -> int:
        """Answers still to be lost."""
        with self._lock:
            return sum(rule[2] for rule in self._rules)

    def _lose(self, method: str, path: str) -> bool:
        with self._lock:
            for rule in self._rules:
                if rule[0] == method and rule[1] in path and rule[2] > 0:
                    rule[2] -= 1
                    self.lost.append(f"{method} {path}")
                    return True
        return False

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        gateway = self

        class Relay(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def _relay(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in ("host", "content-length", "connection")}
                answer = gateway._http.request(self.command, gateway.upstream + self.path, headers=headers,
                                               content=body)
                if gateway._lose(self.command, self.path):
                    self.close_connection = True
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    return
                self.send_response(answer.status_code)
                for name, value in answer.headers.items():
                    if name.lower() not in ("content-length", "transfer-encoding", "connection", "content-encoding"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _relay

        return Relay

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._http.close()
