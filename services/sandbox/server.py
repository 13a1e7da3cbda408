"""One local process that stands in for Mailchimp, PayPal, Visma, the installers and the SMTP relay."""

from __future__ import annotations

import argparse
import contextlib
import signal
import threading
from collections.abc import Iterator
from types import TracebackType
from typing import Any, Self

from services.sandbox.defaults import DEFAULT_HTTP_PORT, DEFAULT_SMTP_PORT
from services.sandbox.smtp import SinkController, start_sink
from services.sandbox.state import SandboxConfig, SandboxState
from services.sandbox.web import sandbox_server
from shared.web import ThreadedServer


class Sandbox:
    """The fake outside world on localhost; port 0 picks a free port. Credentials: SandboxConfig fields."""

    def __init__(self, host: str = "127.0.0.1", http_port: int = 0, smtp_port: int = 0, **config: Any) -> None:
        self.host = host
        self._http_port = http_port
        self._smtp_port = smtp_port
        self.config = SandboxConfig(**config)
        self._state = SandboxState(self.config)
        self._http: ThreadedServer | None = None
        self._smtp: SinkController | None = None

    def start(self) -> Self:
        """Start the HTTP server and the SMTP sink in background threads."""
        self._http = sandbox_server(self._state, self.host, self._http_port)
        try:
            self._http.start()
            self._smtp = start_sink(self._state, self.host, self._smtp_port)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop both servers and free their ports."""
        if self._smtp is not None:
            self._smtp.stop()
            self._smtp = None
        if self._http is not None:
            self._http.stop()
            self._http = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def http_url(self) -> str:
        """Root URL of the HTTP side, e.g. http://127.0.0.1:8480 (vendors live under /mailchimp/3.0 …)."""
        if self._http is None:
            raise RuntimeError("the sandbox is not running")
        return f"http://{self.host}:{self._http.port}"

    @property
    def smtp_port(self) -> int:
        """Port of the SMTP sink."""
        if self._smtp is None:
            raise RuntimeError("the sandbox is not running")
        return int(self._smtp.port)

    def installer_endpoint(self, installer_id: str) -> str:
        """Endpoint URL of one fake installer, as the installer directory would list it."""
        return f"{self.http_url}/installers/{installer_id}"

    def state(self) -> dict[str, Any]:
        """All vendor state, mails, effects and outages."""
        return self._state.snapshot()

    def requests(self, vendor: str | None = None) -> list[dict[str, Any]]:
        """Every request received (credentials left out), optionally for one vendor."""
        return self._state.requests(vendor)

    def effects(self, vendor: str | None = None) -> list[dict[str, Any]]:
        """Deduplicated outside effects: what actually changed at the vendors, once per change."""
        return self._state.effects(vendor)

    def mails(self) -> list[dict[str, Any]]:
        """Mails received by the SMTP sink: from, to, subject, body."""
        return self._state.mails()

    def set_outage(
        self,
        vendor: str,
        mode: str,
        seconds: float | None = None,
        retry_after: float = 1,
        count: int | None = None,
    ) -> None:
        """Make a vendor (or "all") answer 503, 429 with Retry-After, or drop connections; "off" restores."""
        self._state.set_outage(vendor, mode, seconds=seconds, retry_after=retry_after, count=count)

    def set_round_trip(self, vendor: str, seconds: float) -> None:
        """Hold back every answer of a vendor (or "all") by `seconds`, as a vendor over the internet is; 0 restores."""
        self._state.set_round_trip(vendor, seconds)

    def reset(self) -> None:
        """Forget all data, requests, effects, mails and outages."""
        self._state.reset()

    def seed(self, data: dict[str, Any]) -> dict[str, Any]:
        """Pre-create vendor data (see SandboxState.seed); returns the ids created."""
        return self._state.seed(data)

    @contextlib.contextmanager
    def state_lock(self) -> Iterator[None]:
        """Hold every vendor's answers until the block ends: requests arriving meanwhile stay in flight."""
        with self._state.lock:
            yield

    def in_flight(self, vendor: str) -> int:
        """Requests to the vendor received and not yet answered."""
        return self._state.in_flight(vendor)

    def expire_tokens(self, vendor: str | None = None) -> None:
        """Invalidate the access tokens PayPal and/or Visma handed out."""
        self._state.expire_tokens(vendor)


def main(argv: list[str] | None = None) -> None:
    """Run the sandbox in the foreground until SIGINT or SIGTERM."""
    parser = argparse.ArgumentParser(prog="sandbox", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--http-port", type=int, default=DEFAULT_HTTP_PORT)
    parser.add_argument("--smtp-port", type=int, default=DEFAULT_SMTP_PORT)
    args = parser.parse_args(argv)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    with Sandbox(args.host, args.http_port, args.smtp_port) as sandbox:
        print(f"sandbox http={sandbox.http_url} smtp={sandbox.host}:{sandbox.smtp_port}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            done.wait()


if __name__ == "__main__":
    main()
