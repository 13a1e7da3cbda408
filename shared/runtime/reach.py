"""Between decode and claim, reach out: a batch's outside calls (a vendor's API), made concurrently before its
transaction.

A handler that calls a vendor one delivery at a time waits a round trip per call with the batch's database
transaction open: a batch of a hundred erasures waits a hundred times in a row. A service can instead give an
event type an outside step (`Service.outside`): the runtime runs the steps of a batch's new deliveries on a
small thread pool, at most `RuntimeSettings.outside_concurrency` at once, then hands each result to its handler
as `ctx.outside` (Ready.outside), and the handler writes what the step did. The steps run once per attempt at
the batch: when the fast path gives up and the batch runs again on the savepoint path, their results are
reused, not fetched again, which is what lets a service with outside calls be `database_only`.

Replicas: two processes of a service may take the same event (a redelivery after a lost connection) and run its
step at the same time; the inbox then lets only one handler commit, but both steps reached the vendor, and a
vendor call that is idempotent only by looking first (Visma: find the invoice by its reference, else create it)
would run twice. On PostgreSQL each step therefore holds a transaction-level advisory lock on its event id while
it runs (its reads go through that same connection), so the second replica's step runs after the first and finds
what it did. SQLite has no such lock: replicas that share a SQLite file may repeat such a call.

What a step may do: read its service's database (a short read-only session, `out.read()`) and call outside
systems with idempotent requests (an attempt that fails after a step succeeded calls again next time). Its
failure is the delivery's failure, classified like a handler's (TransientError retries, PermanentError and BadInput
dead-letter); a lost database holds the batch like any other. A handler that finds its step's result outdated by
an earlier delivery of the batch raises OutsideOutdated, and pipeline.py runs step and handler again at once, after
the rest has committed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager
from typing import Any

from sqlalchemy import Connection, text
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

CONNECTIONS_KEPT = 2  # of the database pool, never taken by steps (the outbox relay, the health check)
# One step per event at a time across replicas; released with the step's transaction (PostgreSQL).
LOCK_EVENT = text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))")


class Reacher:
    """Runs the outside steps of a batch's new deliveries on a bounded thread pool."""

    def __init__(self, name: str, sessions: sessionmaker[Session], inbox: Inbox, concurrency: int) -> None:
        self.sessions = sessions
        self.inbox = inbox
        self._engine = sessions.kw["bind"]
        self._lock_events = self._engine.dialect.name == "postgresql"
        if self._lock_events:  # each step holds a connection: leave the relay and the health check theirs
            pool = self._engine.pool
            room = pool.size() + max(0, getattr(pool, "_max_overflow", 0)) - CONNECTIONS_KEPT
            concurrency = min(concurrency, room)
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
            (i, item, self._pool.submit(self._call, step, batch[i], item, deps))
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

    def _call(self, step: Any, delivery: Delivery, item: Ready, deps: Any) -> Any:
        """Run one step (on PostgreSQL under its event's advisory lock, reading through the locked connection)."""
        if not self._lock_events:
            return step(item.inbound.data, self._outside(delivery, item, deps, self._reading))
        with self._engine.connect() as conn, conn.begin():
            conn.execute(LOCK_EVENT, {"key": f"outside:{item.inbound.event_id}"})
            return step(item.inbound.data, self._outside(delivery, item, deps, lambda: self._reading_on(conn)))

    def _outside(self, delivery: Delivery, item: Ready, deps: Any,
                 reader: Callable[[], AbstractContextManager[Session]]) -> Outside[Any]:
        return Outside(envelope=item.inbound.envelope, deps=deps, attempts=delivery.attempts,
                       redelivered=delivery.redelivered, reader=reader, log=log)

    @contextlib.contextmanager
    def _reading_on(self, conn: Connection) -> Iterator[Session]:
        """A session on `conn` (a step's locked one, or a fresh one); it leaves the connection's transaction alone."""
        with self.sessions(bind=conn) as session:
            yield session

    @contextlib.contextmanager
    def _reading(self) -> Iterator[Session]:
        """A read-only session on its own connection (SQLite: a deferred transaction, never the write lock)."""
        with self._engine.connect().execution_options(sqlite_begin="DEFERRED") as conn, \
                self._reading_on(conn) as session:
            yield session
