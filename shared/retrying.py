"""A slice's failed erasures told to the ledger: `ErasureSliceRetrying` from the runtime's retry path.

When a slice's `UserDeregistered` fails and the settler has published it to a delay tier (or the dead-letter
queue), this middleware writes an `ErasureSliceRetrying` to the slice's outbox in a transaction of its own:
the slice, the outside system the error names, the masked error, the attempt and when the next try is due.
The handler's own transaction was rolled back, so this is the only trace of the failure the ledger gets. The
settle hooks run on the connection's thread, which must never wait for the database (heartbeats), so the write
goes to a writer thread of its own; a failure to write it is logged and never disturbs settling (the next
failure reports again).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Table
from sqlalchemy.orm import Session

from schemas import SLICE_SERVICES, ErasureSliceRetrying, UserDeregistered
from shared.logging import get_logger, mask_text
from shared.outbox import stage
from shared.runtime.middleware import Middleware
from shared.settings import RuntimeSettings

if TYPE_CHECKING:
    from shared.runtime.delivery import Delivery
    from shared.runtime.outcome import Outcome

log = get_logger(__name__)

# The outside systems as their clients name them in errors (services/vendors: `vendor`), and as people know them.
SYSTEMS = {"mailchimp": "Mailchimp", "paypal": "PayPal", "visma": "Visma eAccounting", "installer": "installer",
           "smtp": "SMTP relay"}
# The system a slice calls, for an error that names none (a connection that failed before any answer).
SLICE_SYSTEMS = {"installer_sharing": "installer", "payment": "PayPal", "bookkeeping": "Visma eAccounting",
                 "newsletter": "Mailchimp", "account": "SMTP relay"}
_TRANSPORT = re.compile(r"\b(Connect|Read|Write|Pool|Remote|Network|Proxy)\w*(Error|Timeout)\b|\bTimeout\b")
# Dead-letter kinds of a delivery that was decoded and verified, then failed in its handler.
_HANDLER_FAILURES = frozenset({"permanent", "retries_exhausted"})


def failing_system(service: str, error: str) -> str | None:
    """The outside system an error names, else the slice's own one for a failed connection, else None."""
    lowered = error.lower()
    for word, system in SYSTEMS.items():
        if re.search(rf"\b{word}", lowered):
            if system == "installer":
                found = re.search(r"/(inst-[\w-]+)/", error)
                return f"installer {found.group(1)}" if found else "installer"
            return system
    return SLICE_SYSTEMS.get(service) if _TRANSPORT.search(error) else None


class SliceRetryReports(Middleware):
    """After a slice's deregistration went to a delay tier or the dead letters: tell the ledger (outbox)."""

    def __init__(self, service: str, sessions: Callable[[], Session], outbox: Table, settings: RuntimeSettings,
                 notify: Callable[[], None] = lambda: None) -> None:
        self.service = service
        self.sessions = sessions
        self.outbox = outbox
        self.settings = settings
        self.notify = notify
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{service}-failure-reports")

    def after_retry(self, service: str, delivery: Delivery, outcome: Outcome, tier: int, delay: float) -> None:
        self._report(delivery, outcome.error, tier + 1, delay)

    def after_dead(self, service: str, delivery: Delivery, kind: str, error: str) -> None:
        if kind in _HANDLER_FAILURES:
            self._report(delivery, error, delivery.attempts + 1, None)

    def _report(self, delivery: Delivery, error: str, attempts: int, delay: float | None) -> None:
        if delivery.message.properties.get("type") != UserDeregistered.event_type:
            return
        try:
            data: Any = json.loads(delivery.message.body)["data"]
            masked = mask_text(error)[:500] or "no error text"
            event = ErasureSliceRetrying(
                request_id=data["request_id"], user_id=data["user_id"], service=self.service,  # type: ignore[arg-type]
                system=failing_system(self.service, error), error=masked, attempts=attempts,
                failed_at=datetime.now(UTC), retry_in_seconds=delay)
            with self.sessions() as session, session.begin():
                stage(session, self.outbox, event, source=self.settings.source, keyring=self.settings.keyring,
                      key_id=self.settings.signing_key_id)
        except Exception as exc:
            log.warning("failed erasure not told to the ledger", event_id=delivery.event_id,
                        error=f"{type(exc).__name__}: {exc}")
            return
        self.notify()


def slice_retry_reports(service: str, sessions: Callable[[], Session], outbox: Table, settings: RuntimeSettings,
                        notify: Callable[[], None] = lambda: None) -> list[Middleware]:
    """The middleware for a slice service (one that erases on UserDeregistered); none for any other."""
    if service not in SLICE_SERVICES:
        return []
    return [SliceRetryReports(service, sessions, outbox, settings, notify)]
