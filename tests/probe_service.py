"""A service made for runtime tests: what it does with an event is an `Act`, configured per user id.

A test in whose process the probe runs says it explicitly: `Probe({"u-1": Act(fail="transient"), "u-2":
Act(emit=True)})`; a user id it names no act for gets the default act (one effect row), whatever the id looks
like. Only the probe run as its own process (`python -m tests.probe_service`, by the runtime's crash and
shutdown tests) reads an act from a user id's prefix (`act_named_by`, `Probe(by_prefix=True)`), because such a
process can be told nothing else. Attempt times are kept in memory so tests can read the back-off.
"""

from __future__ import annotations

import sys
import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

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


@dataclass(frozen=True)
class Act:
    """What the probe does with an event: by default, write one effect row."""

    fail: Literal["transient", "permanent"] | None = None  # fail this way on every attempt
    retry_after: float | None = None  # with fail="transient": the Retry-After the outside system asks for
    fail_first: int = 0  # fail transiently this many times, then succeed
    sleep: float = 0.0  # seconds before writing
    emit: bool = False  # also emit a slice report (deregistrations)
    append: bool = False  # write the effect through ctx.append
    append_invalid: bool = False  # append one that violates NOT NULL


def act_named_by(user_id: str) -> Act:
    """The act a user id's prefix names: `ok-` the default; `transient-`, `ratelimited-` (Retry-After 0.5 s),
    `permanent-`, `flaky<N>-`, `emit-`, `append-`, `appendbad-`, `slow-` (0.3 s) and `hold-` (4 s)."""
    prefix = user_id.split("-", maxsplit=1)[0]
    if prefix == "transient":
        return Act(fail="transient")
    if prefix == "permanent":
        return Act(fail="permanent")
    if prefix == "ratelimited":  # as a vendor's 429 does
        return Act(fail="transient", retry_after=0.5)
    if prefix.startswith("flaky") and prefix[5:].isdigit():
        return Act(fail_first=int(prefix[5:]))
    return {"emit": Act(emit=True), "append": Act(append=True), "appendbad": Act(append=True, append_invalid=True),
            "slow": Act(sleep=0.3), "hold": Act(sleep=4.0)}.get(prefix, Act())


class Probe:
    """The probe's configuration (an act per user id) and what it saw (attempt times per event id)."""

    def __init__(self, acts: Mapping[str, Act] | None = None, *, by_prefix: bool = False) -> None:
        self.acts = dict(acts or {})
        self.by_prefix = by_prefix  # only for the probe run as its own process
        self.attempts: dict[str, list[float]] = defaultdict(list)

    def act_for(self, user_id: str) -> Act:
        if user_id in self.acts:
            return self.acts[user_id]
        return act_named_by(user_id) if self.by_prefix else Act()


def _act(user_id: str, event_id: str, ctx: Context[Probe]) -> Act:
    probe = ctx.deps
    act = probe.act_for(user_id)
    probe.attempts[event_id].append(time.monotonic())
    if act.fail == "transient" and act.retry_after is not None:
        raise TransientError(f"outside system rate-limits {user_id}", retry_after=act.retry_after)
    if act.fail == "transient":
        raise TransientError(f"outside system unavailable for {user_id}")
    if act.fail == "permanent":
        raise PermanentError(f"outside system refused {user_id} (400)")
    if len(probe.attempts[event_id]) <= act.fail_first:
        raise TransientError("flaky")
    if act.sleep:
        time.sleep(act.sleep)
    if act.append:
        ctx.append(effects, event_id=event_id, user_id=None if act.append_invalid else user_id)
    else:
        ctx.session.execute(insert(effects).values(event_id=event_id, user_id=user_id))
    return act


def erase(event: UserDeregistered, ctx: Context[Probe]) -> None:
    if _act(event.user_id, ctx.event_id, ctx).emit:
        ctx.emit(ErasureSliceReported(
            request_id=event.request_id, user_id=event.user_id, service="account", outcome="erased",
            erased=["probe"], reported_at=datetime.now(UTC)))


def consent(event: NewsletterConsentChanged, ctx: Context[Probe]) -> None:
    _act(event.user_id, ctx.event_id, ctx)


def make_service(name: str = "probe", probe: Probe | None = None, *, database_only: bool = False) -> Service[Probe]:
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
    # the test's broker, not necessarily this machine's
    broker: dict[str, Any] = {"amqp_url": argv[3]} if len(argv) > 3 else {}
    configure("INFO", service="probe")
    settings = RuntimeSettings(namespace=namespace, retry_delays=(0.2, 0.4, 0.8), delivery_limit=5, **broker)
    ServiceRunner(make_service(probe=Probe(by_prefix=True)), settings, url).run()


if __name__ == "__main__":
    main(sys.argv)
