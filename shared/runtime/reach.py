"""Between decode and claim, reach out: a batch's outside calls (a vendor's API), made concurrently before its
transaction.

A handler that calls a vendor one delivery at a time waits a round trip per call with the batch's database
transaction open: a batch of a hundred erasures waits a hundred times in a row. A service can instead give an
event type an outside step (`Service.outside`): the runtime runs the steps of a batch's new deliveries on a
small thread pool, at most `RuntimeSettings.outside_concurrency` at once, then hands each result to its handler
as `ctx.outside` (Ready.outside), and the handler writes what the step did. The steps run once per attempt at
the batch: when the fast path gives up and the batch runs again on the savepoint path, their results are
reused, not fetched again, which is what lets a service with outside calls be `database_only`.

What a step may do: read its service's database (a short read-only session, `out.read()`) and call outside
systems with idempotent requests (an attempt that fails after a step succeeded calls again next time). Its
failure is the delivery's failure, classified like a handler's (TransientError retries, PermanentError and
BadInput dead-letter); a lost database holds the batch like any other.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from shared.logging import get_logger
from shared.runtime.decode import Ready
from shared.runtime.delivery import Delivery
from shared.runtime.handle import failure_outcome
from shared.runtime.inbox import Inbox
from shared.runtime.outcome import Outcome
from shared.service import Outside

log = get_logger("shared.consumer")


class Reacher:
    """Runs the outside steps of a batch's new deliveries on a bounded thread pool."""

    def __init__(self, name: str, sessions: sessionmaker[Session], inbox: Inbox, concurrency: int) -> None:
        self.sessions = sessions
        self.inbox = inbox
        self._pool = ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix=f"{name}-outside")

    def reach(self, batch: Sequence[Delivery], decoded: list[Ready | Outcome], deps: Any) -> list[Ready | Outcome]:
        """`decoded` with each step's result in its Ready, or the failed step's outcome in its place.

        Deliveries already in the inbox are left alone: their handler will not run, so neither does their step.
        A lost database (OperationalError) propagates once every step has finished.
        """
        waiting = [(i, item, item.step) for i, item in enumerate(decoded)
                   if isinstance(item, Ready) and item.step is not None]
        if not waiting:
            return decoded
        with self._reading() as session:
            handled = self.inbox.handled(session.connection(), [item.inbound.event_id for _, item, _ in waiting])
        futures: list[tuple[int, Ready, Future[Any]]] = [
            (i, item, self._pool.submit(step, item.inbound.data, self._outside(batch[i], item, deps)))
            for i, item, step in waiting if item.inbound.event_id not in handled]
        result = list(decoded)
        lost_database: OperationalError | None = None
        for i, item, future in futures:
            try:
                result[i] = item._replace(outside=future.result())
            except OperationalError as exc:
                lost_database = exc
            except Exception as exc:
                result[i] = failure_outcome(exc, item.inbound.event_id)
        if lost_database is not None:
            raise lost_database
        return result

    def close(self) -> None:
        """Let running steps finish; start no more."""
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _outside(self, delivery: Delivery, item: Ready, deps: Any) -> Outside[Any]:
        return Outside(envelope=item.inbound.envelope, deps=deps, attempts=delivery.attempts,
                       redelivered=delivery.redelivered, reader=self._reading, log=log)

    @contextlib.contextmanager
    def _reading(self) -> Iterator[Session]:
        """A read-only session on its own connection (SQLite: a deferred transaction, never the write lock)."""
        with self.sessions.kw["bind"].connect().execution_options(sqlite_begin="DEFERRED") as conn, \
                self.sessions(bind=conn) as session:
            yield session
