"""The network between the services and the broker is cut three times for 10 s under load: consumers and
outbox producers reconnect by themselves within seconds of each heal, and nothing is lost or doubled."""

from __future__ import annotations

import time

import pytest

from shared.testing.proxy import CuttableProxy
from tests.chaos.harness import RabbitNode, record_results
from tests.chaos.load import people
from tests.chaos.stack import BUYERS_EVERY, assert_clean

ERASURES = 2000
CUTS_AT_S = (5.0, 30.0, 55.0)  # each cut pauses the run ~15 s: all three land while work is in flight
CUT_FOR_S = 10.0
RECOVERY_LIMIT_S = 15.0


@pytest.mark.chaos
@pytest.mark.timeout(480)
def test_services_reconnect_within_seconds_of_each_heal_and_lose_nothing(make_stack, rabbit: RabbitNode) -> None:
    proxy = CuttableProxy("127.0.0.1", rabbit.port)
    try:
        stack = make_stack(amqp_url=proxy.url_for(rabbit.url))
        run = stack.start_load(people("cut", ERASURES, buyers_every=BUYERS_EVERY))
        cuts = []
        for number, at_s in enumerate(CUTS_AT_S, start=1):
            at_fault = stack.at(run, at_s)
            proxy.cut()
            time.sleep(CUT_FOR_S)
            committed_at_heal, _ = stack.sample(run)
            proxy.heal()
            recovered = stack.recovery(run, time.monotonic(), committed_at_heal)
            cuts.append({"cut": number, **at_fault, **recovered})
        figures = stack.settle(run, timeout=300)
    finally:
        proxy.close()
    worst = max(value for cut in cuts for key, value in cut.items() if key.endswith("_after_s"))
    figures.update({"cuts": cuts, "cut_length_s": CUT_FOR_S, "worst_time_to_recover_s": worst})
    record_results("network_cut", figures)
    assert_clean(figures)
    assert worst < RECOVERY_LIMIT_S, cuts
