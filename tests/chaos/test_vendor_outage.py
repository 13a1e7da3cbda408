"""Every outside system is down for two minutes under load — first answering 503, then dropping connections.
With delay tiers whose total exceeds the outage, the work waits in the delay queues, nothing is dead-lettered,
and everything completes once the vendors are back."""

from __future__ import annotations

import time

import pytest

from tests.chaos.harness import record_results
from tests.chaos.load import people
from tests.chaos.stack import BUYERS_EVERY, Run, Stack, assert_clean

ERASURES = 2000
# 10 + 20 + 30 + 40 + 45 = 145 s of back-off before a message is given up: longer than the 120 s outage, so
# a message that fails at the very start of the outage still has its last try after the vendors are back;
# the last tier (45 s) bounds how long the tail of the work waits once they are.
TIERS = (10.0, 20.0, 30.0, 40.0, 45.0)
OUTAGE_AT_S = 4.0
PHASES = (("503", 60.0), ("refuse", 60.0))


def _watch(stack: Stack, run: Run, seconds: float, seen: dict[str, int]) -> None:
    """Sample the delay and dead-letter queues while an outage phase lasts."""
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        queues = stack.queues()
        waiting = sum(int(q["messages"]) for name, q in queues.items() if ".retry." in name)
        dead = sum(int(q["messages"]) for name, q in queues.items() if name.endswith(".dead"))
        seen["peak_in_delay_queues"] = max(seen["peak_in_delay_queues"], waiting)
        seen["dead_letters_during_outage"] = max(seen["dead_letters_during_outage"], dead)
        stack.sample(run)
        time.sleep(min(5.0, max(0.0, until - time.monotonic())))


@pytest.mark.chaos
@pytest.mark.timeout(600)
def test_two_minute_vendor_outage_waits_in_delay_queues_and_completes_after(make_stack) -> None:
    stack = make_stack(retry_delays=TIERS)
    run = stack.start_load(people("out", ERASURES, buyers_every=BUYERS_EVERY))
    at_fault = stack.at(run, OUTAGE_AT_S)
    control = stack.sandbox.control
    seen = {"peak_in_delay_queues": 0, "dead_letters_during_outage": 0}
    began = time.monotonic()
    for mode, seconds in PHASES:
        control.set_outage("all", mode, seconds=seconds)
        _watch(stack, run, seconds, seen)
    control.set_outage("all", "off")
    ended = time.monotonic()
    _, completed_at_end = stack.sample(run)
    failed_calls = sum(1 for r in control.requests() if r["status"] is None or r["status"] == 503)

    figures = stack.settle(run, timeout=360)
    figures.update({
        **seen,
        "outage_s": round(ended - began, 1),
        "outage_phases": [f"{mode} for {seconds:.0f}s" for mode, seconds in PHASES],
        "retry_tiers_s": list(TIERS),
        "fault": at_fault,
        "completed_during_outage": completed_at_end - at_fault["erasures_completed"],
        "vendor_calls_failed_by_the_outage": failed_calls,
        "seconds_from_outage_end_to_all_complete": round(run.started + figures["seconds_to_complete_all"] - ended, 1),
    })
    record_results("vendor_outage", figures)
    assert seen["dead_letters_during_outage"] == 0, "dead-lettered within the retry window"
    assert seen["peak_in_delay_queues"] > 0, "the outage never sent work to the delay queues"
    assert failed_calls > 0, "the outage was never felt"
    assert_clean(figures)
