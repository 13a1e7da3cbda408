"""PostgreSQL is stopped for 30 s under load (immediate shutdown, as a crash): no message is acknowledged
without its committed effects — every service's inbox holds every event, every erasure completes, the
queues drain, and nothing is dead-lettered."""

from __future__ import annotations

import time

import pytest

from tests.chaos.harness import PostgresCluster, record_results
from tests.chaos.load import people
from tests.chaos.stack import BUYERS_EVERY, assert_clean

ERASURES = 2000
FAULT_AT_S = 25.0
DOWN_FOR_S = 30.0


@pytest.mark.chaos
@pytest.mark.timeout(480)
def test_database_down_for_30s_acks_nothing_uncommitted(make_stack, postgres: PostgresCluster) -> None:
    stack = make_stack(postgres=postgres)
    run = stack.start_load(people("db", ERASURES, buyers_every=BUYERS_EVERY))
    at_fault = stack.at(run, FAULT_AT_S)
    stopped = time.monotonic()
    postgres.stop("immediate")
    time.sleep(DOWN_FOR_S)
    committed_before_down, _ = stack.sample(run)  # the database is down: the last figures read before
    postgres.start()
    back = time.monotonic()
    recovered = stack.recovery(run, back, committed_before_down)

    figures = stack.settle(run, timeout=300)
    figures.update({
        "fault": at_fault,
        "database_down_s": round(back - stopped, 1),
        **recovered,
        "database": "PostgreSQL 15 (own cluster)",
    })
    record_results("database_outage", figures)
    assert_clean(figures)
