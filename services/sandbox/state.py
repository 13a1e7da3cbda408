"""Everything the sandbox holds: credentials, each fake vendor's data, the request log, effects, outages."""

from __future__ import annotations

import copy
import hashlib
import math
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from services.sandbox.installers import InstallerState
from services.sandbox.mailchimp import MailchimpState
from services.sandbox.paypal import PayPalState
from services.sandbox.visma import VismaState
from services.sandbox.wire import Reply, Request

VENDORS = ("mailchimp", "paypal", "visma", "installers")
OUTAGE_MODES = ("503", "429", "refuse", "off")
DEFAULT_INSTALLERS = {
    "inst-1": "sandbox-inst-1-token",
    "inst-2": "sandbox-inst-2-token",
    "inst-3": "sandbox-inst-3-token",
}


@dataclass(frozen=True)
class SandboxConfig:
    """Credentials the fakes accept; the defaults are the development settings."""

    mailchimp_api_key: str = "sandbox-us1"
    mailchimp_list_id: str = "loggamera"
    paypal_client_id: str = "sandbox-client"
    paypal_client_secret: str = "sandbox-secret"  # noqa: S105 - sandbox development credential
    paypal_token_ttl: int = 32400
    visma_access_token: str = "sandbox-visma-token"  # noqa: S105 - sandbox development credential
    visma_refresh_token: str = "sandbox-visma-refresh"  # noqa: S105 - sandbox development credential
    visma_client_id: str = "sandbox-visma-client"
    visma_client_secret: str = "sandbox-visma-secret"  # noqa: S105 - sandbox development credential
    visma_refresh_token_reuse: bool = False
    # The company's ids our customers and invoice rows refer to (GET /v2/termsofpayment, /v2/articles).
    visma_terms_of_payment_id: str = "8f9a8f7b-5ea9-44c6-9725-9b8a1c7e2b01"
    visma_article_id: str = "1c3a36c4-2b8e-4a44-a7f5-3d0d8d6a9e02"
    installers: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_INSTALLERS))


@dataclass
class Outage:
    """An injected failure of one vendor, until a deadline, for a number of requests, or until lifted."""

    mode: str
    until: float | None = None
    retry_after: int = 1
    remaining: int | None = None

    def describe(self) -> dict[str, Any]:
        """JSON-ready view."""
        left = None if self.until is None else max(0.0, self.until - time.monotonic())
        return {
            "mode": self.mode,
            "seconds_left": left,
            "retry_after": self.retry_after,
            "requests_left": self.remaining,
        }


def _now() -> str:
    return datetime.now(UTC).isoformat()


class SandboxState:
    """All sandbox state behind one lock: the fakes are small, so one request at a time is plenty."""

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self.lock = threading.RLock()
        self._flight_lock = threading.Lock()
        self._in_flight: dict[str, int] = dict.fromkeys(VENDORS, 0)
        self.reset()

    def reset(self) -> None:
        """Forget all data, requests, effects, mails and outages; credentials stay."""
        with self.lock:
            self.mailchimp = MailchimpState()
            self.paypal = PayPalState()
            self.visma = VismaState({self.config.visma_access_token}, {self.config.visma_refresh_token})
            self.installers = InstallerState()
            self.mail_log: list[dict[str, Any]] = []
            self.request_log: list[dict[str, Any]] = []
            self.effect_log: list[dict[str, Any]] = []
            self.outages: dict[str, Outage] = {}
            self.round_trips: dict[str, float] = {}

    def record_request(self, vendor: str, req: Request) -> dict[str, Any]:
        """Log a received request as it arrived, whoever sent it (credentials left out); `finish_request`
        completes it. The raw record (method, path, idempotency key, body hash, status) is what the effect
        count of the fault suite is judged from, independently of what our clients believe they did."""
        record = {
            "seq": len(self.request_log) + 1,
            "time": _now(),
            "vendor": vendor,
            "method": req.method,
            "path": req.path,
            "query": dict(req.query),
            "headers": req.loggable_headers(),
            "body": req.loggable_body(),
            "idempotency_key": req.headers.get("idempotency-key"),
            "body_sha256": hashlib.sha256(req.body).hexdigest(),
            "status": None,
            "replayed": False,
        }
        with self._flight_lock:  # counted on arrival, before waiting for the state lock
            self._in_flight[vendor] = self._in_flight.get(vendor, 0) + 1
        with self.lock:
            self.request_log.append(record)
        return record

    def finish_request(self, record: dict[str, Any], reply: Reply | None) -> None:
        """Note how a logged request was answered (None: the connection was dropped without an answer)."""
        with self.lock:
            record["status"] = reply.status if reply else None
            record["replayed"] = bool(reply and reply.headers.get("Idempotent-Replayed") == "true")
        with self._flight_lock:
            self._in_flight[record["vendor"]] -= 1

    def in_flight(self, vendor: str) -> int:
        """Requests to the vendor received and not yet answered (this one included): open connections."""
        with self._flight_lock:
            return self._in_flight.get(vendor, 0)

    def effect(self, vendor: str, kind: str, **refs: Any) -> None:
        """Record one outside effect (a change in a vendor's state), at most once per change."""
        with self.lock:
            self.effect_log.append(
                {"seq": len(self.effect_log) + 1, "time": _now(), "vendor": vendor, "effect": kind, **refs}
            )

    def record_mail(self, mail: dict[str, Any]) -> None:
        """Keep a mail the SMTP sink accepted."""
        with self.lock:
            self.mail_log.append({**mail, "received_at": _now()})
            self.effect("smtp", "mail_received", to=list(mail["to"]), subject=mail["subject"])

    def set_outage(
        self,
        vendor: str,
        mode: str,
        seconds: float | None = None,
        retry_after: float = 1,
        count: int | None = None,
    ) -> None:
        """Make a vendor (or "all") fail with 503, 429 + Retry-After, or refused connections; "off" lifts it."""
        if vendor not in (*VENDORS, "all"):
            raise ValueError(f"unknown vendor {vendor!r}; expected one of {[*VENDORS, 'all']}")
        if mode not in OUTAGE_MODES:
            raise ValueError(f"unknown outage mode {mode!r}; expected one of {list(OUTAGE_MODES)}")
        until = None if seconds is None else time.monotonic() + float(seconds)
        with self.lock:
            for name in VENDORS if vendor == "all" else (vendor,):
                if mode == "off":
                    self.outages.pop(name, None)
                else:
                    self.outages[name] = Outage(mode, until, math.ceil(retry_after), count)

    def set_round_trip(self, vendor: str, seconds: float) -> None:
        """Make every answer of a vendor (or "all") take at least `seconds`, as one over the internet does; 0
        restores. The wait is not under the state lock: requests in flight wait side by side."""
        if vendor not in (*VENDORS, "all"):
            raise ValueError(f"unknown vendor {vendor!r}; expected one of {[*VENDORS, 'all']}")
        if not 0 <= seconds <= 10:
            raise ValueError(f"a round trip of {seconds!r} s; expected 0 to 10")
        with self.lock:
            for name in VENDORS if vendor == "all" else (vendor,):
                self.round_trips[name] = float(seconds)

    def round_trip_for(self, vendor: str) -> float:
        """Seconds each answer of the vendor is held back (0: none)."""
        with self.lock:
            return self.round_trips.get(vendor, 0.0)

    def outage_for(self, vendor: str) -> Outage | None:
        """The outage this request runs into, if any (counting it against a limited outage)."""
        with self.lock:
            outage = self.outages.get(vendor)
            if outage is None:
                return None
            expired = outage.until is not None and time.monotonic() >= outage.until
            if expired or outage.remaining == 0:
                del self.outages[vendor]
                return None
            if outage.remaining is not None:
                outage.remaining -= 1
            return outage

    def expire_tokens(self, vendor: str | None = None) -> None:
        """Invalidate the access tokens handed out by PayPal and/or Visma, as an expiry would."""
        with self.lock:
            if vendor in (None, "paypal"):
                self.paypal.expire_tokens()
            if vendor in (None, "visma"):
                self.visma.expire_tokens()

    def seed(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """Pre-create vendor data; returns the ids created, per vendor."""
        unknown = set(data) - {"mailchimp", "paypal", "visma"}
        if unknown:
            raise ValueError(f"cannot seed {sorted(unknown)}; seedable: mailchimp, paypal, visma")
        with self.lock:
            created: dict[str, Any] = {}
            if "mailchimp" in data:
                created["mailchimp"] = self.mailchimp.seed(data["mailchimp"], self.config.mailchimp_list_id)
            if "paypal" in data:
                created["paypal"] = self.paypal.seed(data["paypal"])
            if "visma" in data:
                created["visma"] = self.visma.seed(data["visma"], self.config.visma_terms_of_payment_id)
            return created

    def snapshot(self) -> dict[str, Any]:
        """All vendor state, mails, effects and outages as one JSON-ready document."""
        with self.lock:
            return copy.deepcopy(
                {
                    "mailchimp": self.mailchimp.snapshot(),
                    "paypal": self.paypal.snapshot(),
                    "visma": self.visma.snapshot(),
                    "installers": self.installers.snapshot(),
                    "smtp": {"mails": self.mail_log},
                    "effects": self.effect_log,
                    "outages": {name: o.describe() for name, o in self.outages.items()},
                    "round_trips": dict(self.round_trips),
                }
            )

    def requests(self, vendor: str | None = None) -> list[dict[str, Any]]:
        """The request log, oldest first, optionally for one vendor."""
        with self.lock:
            return copy.deepcopy([r for r in self.request_log if vendor in (None, r["vendor"])])

    def effects(self, vendor: str | None = None) -> list[dict[str, Any]]:
        """Deduplicated outside effects, oldest first, optionally for one vendor."""
        with self.lock:
            return copy.deepcopy([e for e in self.effect_log if vendor in (None, e["vendor"])])

    def mails(self) -> list[dict[str, Any]]:
        """Mails the SMTP sink accepted."""
        with self.lock:
            return copy.deepcopy(self.mail_log)
