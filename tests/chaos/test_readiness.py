"""/readyz is what an orchestrator asks before routing work or finishing a rollout; it must answer within its
probe timeout (1 s by default in Kubernetes) while the service is busy, or a healthy service reads as broken."""

from __future__ import annotations

import contextlib
import threading
import time

import httpx
import pytest

from tests.chaos.harness import record_results
from tests.chaos.load import people
from tests.chaos.stack import BUYERS_EVERY, Stack

PROBE_TIMEOUT_S = 1.0
WATCH_S = 15.0


@pytest.mark.chaos
@pytest.mark.timeout(180)
def test_readiness_answers_within_a_probe_timeout_while_services_are_busy(make_stack) -> None:
    """On SQLite every transaction begins IMMEDIATE (shared/db.py), the readiness `select 1` included: the probe
    queues behind the worker's batch transaction for as long as the batch takes (up to the 30 s busy timeout).
    /healthz, which touches no database, is probed alongside: what /readyz takes beyond it is the waiting."""
    stack: Stack = make_stack()
    stack.start_load(people("ready", 2000, buyers_every=BUYERS_EVERY))
    slowest = {(name, path): 0.0 for name in stack.fleet.ports for path in ("/readyz", "/healthz")}
    until = time.monotonic() + WATCH_S

    def probe(name: str, port: int) -> None:
        while time.monotonic() < until:
            for path in ("/readyz", "/healthz"):
                started = time.monotonic()
                # No answer within three probe timeouts counts as three probe timeouts.
                with contextlib.suppress(httpx.HTTPError):
                    httpx.get(f"http://127.0.0.1:{port}{path}", timeout=3 * PROBE_TIMEOUT_S)
                slowest[name, path] = max(slowest[name, path], time.monotonic() - started)
            time.sleep(0.2)

    probes = [threading.Thread(target=probe, args=item) for item in stack.fleet.ports.items()]
    for thread in probes:
        thread.start()
    for thread in probes:
        thread.join()
    waited = {name: round(slowest[name, "/readyz"] - slowest[name, "/healthz"], 2) for name in stack.fleet.ports}
    record_results("readiness_under_load", {
        "probe_timeout_s": PROBE_TIMEOUT_S, "watched_s": WATCH_S,
        "slowest_readyz_s": {name: round(slowest[name, "/readyz"], 2) for name in stack.fleet.ports},
        "slowest_healthz_s": {name: round(slowest[name, "/healthz"], 2) for name in stack.fleet.ports},
        "readyz_beyond_healthz_s": waited})
    assert max(waited.values()) < PROBE_TIMEOUT_S, f"/readyz waits this long beyond /healthz: {waited}"
