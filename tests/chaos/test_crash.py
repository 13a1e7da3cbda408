"""Every service is killed with SIGKILL at a random moment under load and started again: no erasure is
lost and no outside effect happens twice (inbox, outbox and idempotent vendor calls at work)."""

from __future__ import annotations

import random
import time

import pytest

from services.registry import SERVICES
from tests.chaos.harness import record_results
from tests.chaos.load import people
from tests.chaos.stack import BUYERS_EVERY, assert_clean

ERASURES = 2000
ROUNDS = 2
LAST_KILL_BY = 0.8  # of the run's events committed: the last kill always has work left to hit


@pytest.mark.chaos
@pytest.mark.timeout(420)
def test_each_service_killed_at_random_and_restarted_loses_and_duplicates_nothing(make_stack) -> None:
    seed = random.randrange(1_000_000)
    rng = random.Random(seed)
    stack = make_stack()
    run = stack.start_load(people("crash", ERASURES, buyers_every=BUYERS_EVERY))
    kills = []
    # Every service twice, in a random order, at random points of the work: through the purchases and the
    # erasures. The points are fractions of the events the run commits, not seconds, so a fast machine cannot
    # finish the load before the last kill (seconds did: on a quiet machine 2,000 erasures outran 12 kills).
    order = [name for _ in range(ROUNDS) for name in rng.sample(SERVICES, len(SERVICES))]
    points = sorted(rng.uniform(0.02, LAST_KILL_BY) for _ in order)
    for name, point in zip(order, points, strict=True):
        while stack.observer.committed() < point * run.events_expected and time.monotonic() < run.started + 240:
            time.sleep(0.25)
        committed, completed = stack.sample(run)
        down_for = rng.uniform(0.2, 2.0)
        stack.fleet.crash_and_restart(name, down_for=down_for)
        kills.append({"service": name, "at_s": round(time.monotonic() - run.started, 1),
                      "at_fraction": round(point, 3), "down_for_s": round(down_for, 1),
                      "events_committed": committed, "erasures_completed": completed})
    assert kills[-1]["erasures_completed"] < ERASURES, "the load finished before the last kill"
    figures = stack.settle(run, timeout=300)
    figures.update({"seed": seed, "kills": kills, "kills_total": len(kills), "of_events": run.events_expected})
    record_results("crash", figures)
    assert_clean(figures)
