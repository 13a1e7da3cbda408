"""A vendor's Retry-After longer than the next delay tier moves the message to a tier at least that long."""

from __future__ import annotations

import itertools

from schemas.examples import example_deregistration
from shared.testing import wait_until
from tests.probe_service import Act, Probe, make_service


def test_retry_after_longer_than_a_tier_skips_to_a_tier_that_long(erasure_pipeline) -> None:
    # The pipeline's tiers are 0.2, 0.4 and 0.8 s; the probe's vendor asks for 0.5 s each time.
    assert erasure_pipeline.settings.retry_delays == (0.2, 0.4, 0.8)
    probe = Probe({"ratelimited-1": Act(fail="transient", retry_after=0.5)})  # as a vendor's 429 does
    erasure_pipeline.start(make_service(probe=probe))
    [sent] = erasure_pipeline.publish(example_deregistration("ratelimited-1"))
    dead_queue = f"{erasure_pipeline.namespace}.probe.dead"
    wait_until(lambda: erasure_pipeline.depth(dead_queue) == 1, timeout=30, what="dead letter")
    times = probe.attempts[sent.event_id]
    # First try, then straight to the 0.8 s tier (0.2 and 0.4 are shorter than asked), then no tier is left.
    assert len(times) == 2
    [gap] = [b - a for a, b in itertools.pairwise(times)]
    assert gap >= 0.8
    [dead] = erasure_pipeline.take(dead_queue)
    assert dead.headers["x-error-kind"] == "retries_exhausted"
    assert "rate-limits" in dead.headers["x-error"]
