"""Drive a sandbox running in another process through its `/_sandbox/` API, as the Sandbox object does in-process."""

from __future__ import annotations

from types import TracebackType
from typing import Any, Self

import httpx


class SandboxControl:
    """The Sandbox object's inspection and fault-injection methods, over HTTP."""

    def __init__(self, base_url: str, *, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(base_url=f"{self.base_url}/_sandbox", timeout=timeout)

    def _get(self, path: str, **params: str) -> Any:
        resp = self._http.get(path, params=params)
        resp.raise_for_status()
        return resp.json()

    def _post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        resp = self._http.post(path, json=body or {})
        resp.raise_for_status()
        return resp.json()

    def healthy(self) -> bool:
        """True once the sandbox answers."""
        try:
            return bool(self._get("/health").get("ok"))
        except httpx.HTTPError:
            return False

    def state(self) -> dict[str, Any]:
        """All vendor state, mails, effects and outages."""
        return dict(self._get("/state"))

    def requests(self, vendor: str | None = None) -> list[dict[str, Any]]:
        """Every request received, optionally for one vendor."""
        return list(self._get("/requests", **({"vendor": vendor} if vendor else {})))

    def effects(self, vendor: str | None = None) -> list[dict[str, Any]]:
        """Deduplicated outside effects, optionally for one vendor."""
        return list(self._get("/effects", **({"vendor": vendor} if vendor else {})))

    def mails(self) -> list[dict[str, Any]]:
        """Mails received by the SMTP sink."""
        return list(self._get("/mails"))

    def set_outage(
        self,
        vendor: str,
        mode: str,
        seconds: float | None = None,
        retry_after: float = 1,
        count: int | None = None,
    ) -> None:
        """Make a vendor (or "all") answer 503, 429 with Retry-After, or drop connections; "off" restores."""
        body = {"vendor": vendor, "mode": mode, "seconds": seconds, "retry_after": retry_after, "count": count}
        self._post("/outage", body)

    def set_round_trip(self, vendor: str, seconds: float) -> None:
        """Hold back every answer of a vendor (or "all") by `seconds`, as a vendor over the internet is; 0 restores."""
        self._post("/round-trip", {"vendor": vendor, "seconds": seconds})

    def reset(self) -> None:
        """Forget all data, requests, effects, mails and outages."""
        self._post("/reset")

    def seed(self, data: dict[str, Any]) -> dict[str, Any]:
        """Pre-create vendor data; returns the ids created."""
        return dict(self._post("/seed", data))

    def expire_tokens(self, vendor: str | None = None) -> None:
        """Invalidate the access tokens PayPal and/or Visma handed out."""
        self._post("/expire-tokens", {"vendor": vendor} if vendor else {})

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
