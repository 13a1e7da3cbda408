"""Stage 3, handle: run a handler with its Context, between the middleware's hooks; classify what it raised."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy.orm import Session

from shared.errors import BadInput, OutsideOutdated, PermanentError, TransientError
from shared.logging import get_logger
from shared.runtime.decode import Ready
from shared.runtime.delivery import Delivery
from shared.runtime.middleware import Middleware
from shared.runtime.outcome import Outcome
from shared.service import Context

log = get_logger(__name__)

OUTDATED = "outdated"  # the kind of a retry whose outside step was outdated (pipeline.py runs it again at once)


def context_for(session: Session, delivery: Delivery, ready: Ready, deps: Any) -> Context[Any]:
    """What the handler gets besides its event."""
    return Context(session=session, envelope=ready.inbound.envelope, deps=deps, attempts=delivery.attempts,
                   redelivered=delivery.redelivered, log=log, outside=ready.outside)


def run_handler(ready: Ready, ctx: Context[Any], session: Session, middlewares: Sequence[Middleware], *,
                flush: bool = True) -> float:
    """Call the handler and flush its writes (before the next handler of the batch, unless `flush` is False:
    then the batch's writes go together after its last handler); return its seconds.

    Raises what the handler (or its flush) raised; `after_handler` runs either way.
    """
    inbound = ready.inbound
    for middleware in middlewares:
        middleware.before_handler(inbound)
    started = time.perf_counter()
    try:
        ready.handler(inbound.data, ctx)
        if flush:
            session.flush()
    finally:
        seconds = time.perf_counter() - started
        for middleware in reversed(middlewares):
            middleware.after_handler(inbound, seconds)
    return seconds


def failure_outcome(exc: Exception, event_id: str) -> Outcome:
    """How a handler's failure is settled: TransientError and the unforeseen retry, the rest is dead at once."""
    if isinstance(exc, OutsideOutdated):
        return Outcome.retry(OUTDATED, str(exc))
    if isinstance(exc, TransientError):
        return Outcome.retry("transient", str(exc), exc.retry_after)
    if isinstance(exc, BadInput):
        return Outcome.dead(exc.kind, f"event {event_id}: {exc}")
    if isinstance(exc, PermanentError):
        return Outcome.dead("permanent", f"event {event_id}: {exc}")
    log.error("handler failed unexpectedly", exc_info=exc)  # a bug or a blip: retry, then dead-letter
    return Outcome.retry("error", f"{type(exc).__name__}: {exc}")
