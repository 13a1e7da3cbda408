"""One batch through the stages: decode → reach out → (one transaction:) claim → handle → stage, then commit.

Outside steps (reach.py) run for the batch's new deliveries concurrently before the transaction.

A service whose handlers touch only the database and the outbox (`Service.database_only`) takes the fast
path: the batch's inbox is claimed with one read and one write and its handlers run without a savepoint
apiece. If any of them fails, the whole transaction is rolled back and the batch runs again on the savepoint
path, which settles each delivery on its own; either way the outcomes come back in batch order and are
settled (stage 5, settle.py) only after the commit. A lost database holds the batch and retries it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import Table
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from schemas import EventData
from shared.logging import get_logger
from shared.runtime.decode import Ready, decode_delivery
from shared.runtime.delivery import Delivery
from shared.runtime.handle import OUTDATED, context_for, failure_outcome, run_handler
from shared.runtime.inbox import Inbox
from shared.runtime.middleware import BatchReport, Handled, Middleware
from shared.runtime.outcome import ACK, RELEASE, Action, Outcome
from shared.runtime.reach import Reacher
from shared.runtime.stage import Stager
from shared.service import Service
from shared.settings import RuntimeSettings

log = get_logger("shared.consumer")

RUN_AGAIN = 2  # times a delivery whose outside step an earlier one of its batch outdated runs again at once


class _RunAgain(Exception):
    """The fast path gave up on a batch: roll it back and run it with a savepoint per delivery."""


@contextlib.contextmanager
def _run_again_on_failure(step: str) -> Iterator[None]:
    """On the fast path, any failure but a lost database (left to the hold-and-retry loop) is a _RunAgain."""
    try:
        yield
    except OperationalError:
        raise
    except Exception as exc:
        log.debug(f"{step} failed; running the batch again with a savepoint per delivery",
                  error=f"{type(exc).__name__}: {exc}")
        raise _RunAgain from exc


class BatchPipeline:
    """Runs batches of one service's deliveries through the stages; the consumer's worker thread calls it."""

    def __init__(self, service: Service, settings: RuntimeSettings, sessions: sessionmaker[Session],
                 middlewares: Sequence[Middleware], *, stopping: threading.Event | None = None) -> None:
        self.service = service
        self.settings = settings
        self.sessions = sessions
        self.middlewares = middlewares
        self.inbox = Inbox(service.metadata.tables["inbox"])
        self.stager = Stager(service.metadata.tables["outbox"], settings)
        self.reacher = (Reacher(service.name, sessions, self.inbox, settings.outside_concurrency)
                        if service.outside else None)
        self.deps: Any = None  # the service's outside gateways, built once the database answers
        self._stopping = stopping or threading.Event()

    def process(self, batch: Sequence[Delivery]) -> list[Outcome]:
        """The outcome of every delivery, in order; never raises (the worker must outlive any batch)."""
        try:
            return self._hold_while_database_is_down(batch)
        except Exception as exc:
            log.exception("batch failed unexpectedly; its deliveries go to the delay tiers")
            return [Outcome.retry("error", f"{type(exc).__name__}: {exc}")] * len(batch)

    def _hold_while_database_is_down(self, batch: Sequence[Delivery]) -> list[Outcome]:
        delay = 0.2
        while True:
            try:
                return self.run_once(batch)
            except (OperationalError, DBAPIError) as exc:
                if self._stopping.is_set() and delay >= 5:
                    log.error("database unreachable at shutdown; returning batch to the queue")
                    return [RELEASE] * len(batch)
                log.warning("database unavailable; holding batch and retrying", error=str(exc.orig),
                            size=len(batch), in_s=delay)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    def run_once(self, batch: Sequence[Delivery]) -> list[Outcome]:
        """One attempt at the batch, in one transaction per part (parts: `_parts`); a lost database raises.

        Parts committed before the database was lost are duplicates when the batch runs again: the inbox acks
        them without running their handlers again.
        """
        decoded: list[Ready | Outcome] = [decode_delivery(delivery, self.service, self.settings)
                                          for delivery in batch]
        outcomes: list[Outcome] = []
        for start, end in self._parts(decoded):
            outcomes.extend(self._part(batch[start:end], decoded[start:end]))
        return outcomes

    def _part(self, part: Sequence[Delivery], decoded: Sequence[Ready | Outcome]) -> list[Outcome]:
        """One part in one transaction; then, up to RUN_AGAIN times, the deliveries whose outside step was
        outdated by an earlier one of the part (OutsideOutdated), step and handler again on the committed state."""
        outcomes = self._commit(part, decoded)
        for _ in range(RUN_AGAIN if self.reacher is not None else 0):
            again = [i for i, outcome in enumerate(outcomes)
                     if outcome.action is Action.RETRY and outcome.kind == OUTDATED]
            if not again:
                break
            log.debug("outside steps outdated within the batch; running them again", deliveries=len(again))
            rerun = [dataclasses.replace(part[i], again=True) for i in again]
            for i, outcome in zip(again, self._commit(rerun, [decoded[i] for i in again]), strict=True):
                outcomes[i] = outcome
        return outcomes

    def _commit(self, part: Sequence[Delivery], decoded: Sequence[Ready | Outcome]) -> list[Outcome]:
        ready = list(decoded)
        if self.reacher is not None:
            ready = self.reacher.reach(part, ready, self.deps)
        result = self._fast(part, ready) if self.service.database_only else None
        if result is None:
            result = self._with_savepoints(part, ready)
        for middleware in self.middlewares:
            middleware.after_commit(result[1])
        return result[0]

    def _parts(self, decoded: Sequence[Ready | Outcome]) -> list[tuple[int, int]]:
        """The batch cut after each event whose effects the outside steps after it must see
        (`Service.outside_sees`, e.g. a legal hold placed): the steps read the database before their part's
        transaction, so that event must be committed first. Without outside steps, the whole batch."""
        if self.reacher is None:
            return [(0, len(decoded))]
        sees = {model.event_type for model in self.service.outside_sees}
        cuts = [i + 1 for i, item in enumerate(decoded[:-1])
                if isinstance(item, Ready) and item.inbound.envelope.type in sees]
        bounds = [0, *cuts, len(decoded)]
        return list(itertools.pairwise(bounds))

    def close(self) -> None:
        """Let the outside steps in flight finish."""
        if self.reacher is not None:
            self.reacher.close()

    # ---- the fast path: the batch's inbox in one statement each way, no savepoint per delivery -----------
    def _fast(self, batch: Sequence[Delivery], decoded: list[Ready | Outcome]
              ) -> tuple[list[Outcome], BatchReport] | None:
        """Handle the batch in one transaction without savepoints; None (rolled back) if anything failed.

        A handler's failure, or a concurrent replica's inbox row, rolls everything back and nothing is
        reported: the caller runs the batch again with a savepoint per delivery. A lost database propagates.
        """
        outcomes: list[Outcome] = [d if isinstance(d, Outcome) else ACK for d in decoded]
        report = BatchReport(self.service.name, len(batch))
        emitted: list[EventData] = []
        appended: list[tuple[Table, dict[str, Any]]] = []
        ready = [(i, d.inbound) for i, d in enumerate(decoded) if isinstance(d, Ready)]
        try:
            with self.sessions() as session, session.begin():
                try:
                    claim = self.inbox.claim(session.connection(), ready)
                except IntegrityError as exc:  # a replica handled one of them concurrently and committed first
                    raise _RunAgain from exc
                for i, outcome in claim.settled.items():
                    outcomes[i] = outcome
                report.handled.extend(Handled(t, "duplicate") for t in claim.duplicates)
                fresh = [item for i in claim.fresh if isinstance(item := decoded[i], Ready)]
                if self.service.prepare_batch is not None and fresh:
                    with _run_again_on_failure("preparing the batch"):
                        self.service.prepare_batch(session, [item.inbound.data for item in fresh])
                flush = self.service.flush_per_handler
                for i, item in zip(claim.fresh, fresh, strict=True):
                    ctx = context_for(session, batch[i], item, self.deps)
                    with _run_again_on_failure("handler"):
                        seconds = run_handler(item, ctx, session, self.middlewares, flush=flush)
                    emitted.extend(ctx.emitted)
                    appended.extend(ctx.appended)
                    report.handled.append(Handled(item.inbound.envelope.type, "ok", seconds))
                with _run_again_on_failure("writing the batch, its appended rows and the outbox"):
                    session.flush()
                    self.stager.write(session, appended, emitted)
        except _RunAgain:
            return None
        report.emitted = len(emitted)
        return outcomes, report

    # ---- the savepoint path: each delivery on its own, so one failure costs only itself ------------------
    def _with_savepoints(self, batch: Sequence[Delivery], decoded: list[Ready | Outcome]
                         ) -> tuple[list[Outcome], BatchReport]:
        outcomes: list[Outcome] = []
        report = BatchReport(self.service.name, len(batch))
        with self.sessions() as session, session.begin():
            for delivery, item in zip(batch, decoded, strict=True):
                if isinstance(item, Outcome):
                    outcomes.append(item)
                    continue
                outcome, handled, emitted = self._one(session, delivery, item)
                outcomes.append(outcome)
                if handled is not None:
                    report.handled.append(handled)
                report.emitted += emitted
        return outcomes, report

    def _one(self, session: Session, delivery: Delivery, item: Ready) -> tuple[Outcome, Handled | None, int]:
        """One delivery in its own savepoint: its outcome, what the report says of it, how many it emitted."""
        event_type = item.inbound.envelope.type
        savepoint = session.begin_nested()
        try:
            claim = self.inbox.claim(session.connection(), [(0, item.inbound)])
        except IntegrityError:
            savepoint.rollback()  # a replica handled it concurrently and committed first
            return ACK, Handled(event_type, "raced"), 0
        if not claim.fresh:
            savepoint.commit()
            outcome = claim.settled[0]
            return outcome, (Handled(event_type, "duplicate") if claim.duplicates else None), 0
        ctx = context_for(session, delivery, item, self.deps)
        started = time.perf_counter()
        try:
            run_handler(item, ctx, session, self.middlewares)
            self.stager.write(session, ctx.appended, ctx.emitted)
            session.flush()
        except OperationalError:
            savepoint.rollback()
            raise
        except Exception as exc:
            savepoint.rollback()
            outcome = failure_outcome(exc, item.inbound.event_id)
            result = "retry" if outcome.action is Action.RETRY else "failed"
            return outcome, Handled(event_type, result, time.perf_counter() - started), 0
        savepoint.commit()
        return ACK, Handled(event_type, "ok", time.perf_counter() - started), len(ctx.emitted)
