"""The broker restarts in the middle of 2,000 erasures: every one completes, none twice at any vendor."""

from __future__ import annotations

import time

import pytest

from tests.chaos.harness import RabbitNode, record_results
from tests.chaos.load import people
from tests.chaos.stack import BUYERS_EVERY, assert_clean

ERASURES = 2000
FAULT_AT_S = 25.0
DOWN_FOR_S = 5.0
RECOVERY_LIMIT_S = 15.0


@pytest.mark.chaos
@pytest.mark.timeout(420)
def test_broker_restart_mid_run_loses_nothing_and_duplicates_no_outside_effect(make_stack, rabbit: RabbitNode) -> None:
    stack = make_stack()
    run = stack.start_load(people("brk", ERASURES, buyers_every=BUYERS_EVERY))
    at_fault = stack.at(run, FAULT_AT_S)
    stopped = time.monotonic()
    rabbit.stop_app()
    time.sleep(DOWN_FOR_S)
    committed_while_down, _ = stack.sample(run)
    rabbit.start_app()
    back = time.monotonic()
    recovered = stack.recovery(run, back, committed_while_down)

    figures = stack.settle(run, timeout=300)
    figures.update({"fault": at_fault, "broker_down_s": round(back - stopped, 1), **recovered})
    record_results("broker_restart", figures)
    assert_clean(figures)
    assert max(recovered.values()) < RECOVERY_LIMIT_S, recovered
