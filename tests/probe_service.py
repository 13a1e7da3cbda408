"""A service made for runtime tests: its behaviour is chosen by the user id of the event it receives.

`ok-*` writes one effect row; `transient-*` always fails transiently; `flaky<N>-*` fails N times then
succeeds; `permanent-*` fails permanently; `emit-*` writes an effect and emits a slice report; `append-*`
writes its effect through `ctx.append` and `appendbad-*` appends one that violates NOT NULL; `slow-*`
sleeps 0.3 s before writing; `hold-*` sleeps 4 s. Attempt times are kept in memory so tests can read the back-off.
"""

from __future__ import annotations

import sys
import time
from collections import defaultdict
from datetime import UTC, datetime

from sqlalchemy import Column, Integer, String, Table, insert

from schemas import ErasureSliceReported, NewsletterConsentChanged, UserDeregistered
from shared.db import runtime_metadata
from shared.errors import PermanentError, TransientError
from shared.service import Context, Service

metadata = runtime_metadata()
effects = Table(
    "effects", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("event_id", String(36), nullable=False),
    Column("user_id", String(64), nullable=False),
)


class Probe:
    def __init__(self) -> None:
        self.attempts: dict[str, list[float]] = defaultdict(list)


def _act(user_id: str, event_id: str, ctx: Context) -> None:
    probe: Probe = ctx.deps
    probe.attempts[event_id].append(time.monotonic())
    if user_id.startswith("transient-"):
        raise TransientError(f"outside system unavailable for {user_id}")
    if user_id.startswith("permanent-"):
        raise PermanentError(f"outside system refused {user_id} (400)")
    if user_id.startswith("flaky"):
        failures = int(user_id[5:].split("-", maxsplit=1)[0])
        if len(probe.attempts[event_id]) <= failures:
            raise TransientError("flaky")
    if user_id.startswith("slow-"):
        time.sleep(0.3)
    if user_id.startswith("hold-"):
        time.sleep(4)
    if user_id.startswith("append"):
        ctx.append(effects, event_id=event_id, user_id=None if user_id.startswith("appendbad-") else user_id)
    else:
        ctx.session.execute(insert(effects).values(event_id=event_id, user_id=user_id))


def erase(event: UserDeregistered, ctx: Context) -> None:
    _act(event.user_id, ctx.event_id, ctx)
    if event.user_id.startswith("emit-"):
        ctx.emit(ErasureSliceReported(
            request_id=event.request_id, user_id=event.user_id, service="account", outcome="erased",
            erased=["probe"], reported_at=datetime.now(UTC)))


def consent(event: NewsletterConsentChanged, ctx: Context) -> None:
    _act(event.user_id, ctx.event_id, ctx)


def make_service(name: str = "probe", probe: Probe | None = None, *, database_only: bool = False) -> Service:
    shared_probe = probe or Probe()
    return Service(
        name=name,
        handlers={UserDeregistered: erase, NewsletterConsentChanged: consent},
        metadata=metadata,
        build_deps=lambda _engine: shared_probe,
        database_only=database_only,
    )


def main(argv: list[str]) -> None:
    """Run the probe as its own process: python -m tests.probe_service NAMESPACE DATABASE_URL [AMQP_URL]."""
    from shared.consumer import ServiceRunner
    from shared.logging import configure
    from shared.settings import RuntimeSettings

    namespace, url = argv[1], argv[2]
    broker = {"amqp_url": argv[3]} if len(argv) > 3 else {}  # the test's broker, not necessarily this machine's
    configure("INFO", service="probe")
    settings = RuntimeSettings(namespace=namespace, retry_delays=(0.2, 0.4, 0.8), delivery_limit=5, **broker)
    ServiceRunner(make_service(), settings, url).run()


if __name__ == "__main__":
    main(sys.argv)
