"""The ledger's gauge of requests per state (open, due_soon, overdue, stuck, held, completed), read at each scrape."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import structlog
from prometheus_client import REGISTRY
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from services.ledger.queries import STATES, state_counts
from services.ledger.settings import LedgerSettings

log = structlog.get_logger(__name__)

NAME = "erasure_requests"
HELP = ("Erasure requests per state, each in one: completed, else held, overdue (past the legal deadline), stuck, "
        "due_soon (past the internal due date), open.")


class RequestStates(Collector):
    """Counts the ledger's requests by state when Prometheus scrapes, so the gauge is never stale."""

    def __init__(self) -> None:
        self.engine: Engine | None = None
        self.settings = LedgerSettings()

    def watch(self, engine: Engine, settings: LedgerSettings) -> None:
        """Count the requests of this ledger database from now on."""
        self.engine, self.settings = engine, settings

    def describe(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(NAME, HELP, labels=["state"])

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(NAME, HELP, labels=["state"])
        counts = self.counts()
        if counts is not None:
            for state in STATES:
                family.add_metric([state], counts[state])
        yield family

    def counts(self) -> dict[str, int] | None:
        """The counts now, or None while the ledger database is unknown or does not answer."""
        if self.engine is None:
            return None
        try:
            with Session(self.engine) as session:
                return state_counts(session, datetime.now(UTC), self.settings.stuck_after,
                                    self.settings.internal_due)
        except SQLAlchemyError as exc:
            log.warning("requests per state not counted: the ledger database did not answer", error=str(exc))
            return None


REQUEST_STATES = RequestStates()
REGISTRY.register(REQUEST_STATES)
