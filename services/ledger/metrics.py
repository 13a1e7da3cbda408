"""The ledger's gauges of requests per state (open, due_soon, overdue, stuck, held, completed): erasures, and
access and correction requests by kind; read at each scrape."""

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
from services.ledger.rights import rights_counts
from services.ledger.settings import LedgerSettings

log = structlog.get_logger(__name__)

NAME = "erasure_requests"
RIGHTS_NAME = "erasure_rights_requests"
RIGHTS_HELP = ("Access and correction requests per kind and state, each in one: completed, else overdue (past the "
               "legal deadline), stuck, due_soon (past the internal due date), open.")
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
        yield GaugeMetricFamily(RIGHTS_NAME, RIGHTS_HELP, labels=["kind", "state"])

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(NAME, HELP, labels=["state"])
        rights = GaugeMetricFamily(RIGHTS_NAME, RIGHTS_HELP, labels=["kind", "state"])
        found = self.all_counts()
        if found is not None:
            counts, by_kind = found
            for state in STATES:
                family.add_metric([state], counts[state])
            for kind, states in by_kind.items():
                for state, n in states.items():
                    rights.add_metric([kind, state], n)
        yield family
        yield rights

    def counts(self) -> dict[str, int] | None:
        """The erasure counts now, or None while the ledger database is unknown or does not answer."""
        found = self.all_counts()
        return found[0] if found is not None else None

    def all_counts(self) -> tuple[dict[str, int], dict[str, dict[str, int]]] | None:
        """Erasure counts and access/correction counts by kind, or None while the ledger database is unknown or
        does not answer."""
        if self.engine is None:
            return None
        now, settings = datetime.now(UTC), self.settings
        try:
            with Session(self.engine) as session:
                return (state_counts(session, now, settings.stuck_after, settings.internal_due),
                        rights_counts(session, now, settings.stuck_after, settings.internal_due))
        except SQLAlchemyError as exc:
            log.warning("requests per state not counted: the ledger database did not answer", error=str(exc))
            return None


REQUEST_STATES = RequestStates()
REGISTRY.register(REQUEST_STATES)
