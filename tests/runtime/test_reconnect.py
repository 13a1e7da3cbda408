"""Consumers and the outbox producer reconnect by themselves after the network to the broker is cut."""

from __future__ import annotations

import time
from urllib.parse import urlsplit

import pytest

from schemas import ErasureSliceReported
from schemas.examples import example_deregistration
from shared.backoff import Backoff
from shared.testing import Pipeline, wait_until
from shared.testing.proxy import CuttableProxy
from tests.probe_service import Act, Probe, make_service


@pytest.mark.slow
def test_service_recovers_after_a_network_cut(amqp_url, tmp_path) -> None:
    target = urlsplit(amqp_url)
    proxy = CuttableProxy(target.hostname or "127.0.0.1", target.port or 5672)
    direct = Pipeline(amqp_url, workdir=tmp_path, retry_delays=(0.2, 0.4, 0.8))
    through_proxy = Pipeline(proxy.url_for(amqp_url), workdir=tmp_path, namespace=direct.namespace,
                             retry_delays=(0.2, 0.4, 0.8), heartbeat=2)
    try:
        emitting = Probe(dict.fromkeys(["emit-before", "emit-during"], Act(emit=True)))
        running = through_proxy.start(make_service(probe=emitting))
        [first] = direct.publish(example_deregistration("emit-before"))
        running.wait_handled(first.event_id)
        proxy.cut()
        wait_until(lambda: not running.runner.ready.is_set(), timeout=15, what="the cut to be noticed")
        [during] = direct.publish(example_deregistration("emit-during"))
        time.sleep(3)
        proxy.heal()
        healed_at = time.monotonic()
        running.wait_handled(during.event_id, timeout=20)
        recovered_in = time.monotonic() - healed_at
        assert recovered_in < 10, f"took {recovered_in:.1f}s to recover after the link healed"
        # At-least-once: a report whose confirm was lost in the cut is published again (consumers dedupe it).
        for user in ("emit-before", "emit-during"):
            direct.wait_events(ErasureSliceReported, where=lambda r, u=user: r.user_id == u, timeout=20)
    finally:
        through_proxy.services.clear()
        running.stop()
        direct.close()
        proxy.close()


def test_back_off_doubles_to_its_cap_with_jitter_and_starts_over_after_reset() -> None:
    backoff = Backoff(first=0.2, cap=2.0)
    delays = [backoff.next() for _ in range(8)]
    ceilings = [0.2, 0.4, 0.8, 1.6, 2.0, 2.0, 2.0, 2.0]
    assert all(c / 2 <= d <= c for d, c in zip(delays, ceilings, strict=True)), delays
    backoff.reset()
    assert 0.1 <= backoff.next() <= 0.2
    spread = {round(Backoff().next(), 4) for _ in range(20)}
    assert len(spread) > 1, "clients that lost the broker together must not come back in step"
