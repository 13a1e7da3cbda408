"""Each service serves /metrics, /healthz and /readyz; counters move and readiness follows the broker."""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx
import pytest

from schemas.examples import example_deregistration
from shared.testing import Pipeline, wait_until
from shared.testing.proxy import CuttableProxy
from tests.probe_service import Act, Probe, make_service


def _metric(base: str, name: str, **labels: str) -> float:
    text = httpx.get(f"{base}/metrics").text
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith(name + "{"):
            got = ",".join(sorted(line[line.index("{") + 1:line.index("}")].split(",")))
            if got == want:
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_count_handled_events_and_dead_letters(erasure_pipeline) -> None:
    probe = Probe({"permanent-m3": Act(fail="permanent")})
    running = erasure_pipeline.start(make_service(probe=probe), http_port=0)
    base = f"http://127.0.0.1:{running.runner.http_port}"
    assert httpx.get(f"{base}/healthz").status_code == 200
    assert httpx.get(f"{base}/readyz").status_code == 200
    labels = {"service": "probe", "event_type": "se.loggamera.user.deregistered.v1"}
    ok_before = _metric(base, "erasure_events_handled_total", outcome="ok", **labels)
    dead_before = _metric(base, "erasure_dead_letters_total", service="probe", kind="permanent")
    sent = erasure_pipeline.publish(example_deregistration("ok-m1"), example_deregistration("ok-m2"),
                                    example_deregistration("permanent-m3"))
    for message in sent[:2]:
        running.wait_handled(message.event_id)
    wait_until(lambda: _metric(base, "erasure_dead_letters_total", service="probe", kind="permanent")
               == dead_before + 1, what="dead-letter counter")
    assert _metric(base, "erasure_events_handled_total", outcome="ok", **labels) == ok_before + 2
    assert "erasure_handler_seconds_bucket" in httpx.get(f"{base}/metrics").text


def _links(base: str) -> dict[str, float]:
    return {link: _metric(base, "erasure_broker_connected", service="probe", link=link)
            for link in ("consumer", "outbox")}


@pytest.mark.slow
def test_readyz_and_the_link_gauges_follow_the_broker(amqp_url, tmp_path) -> None:
    target = urlsplit(amqp_url)
    proxy = CuttableProxy(target.hostname or "127.0.0.1", target.port or 5672)
    pipeline = Pipeline(proxy.url_for(amqp_url), workdir=tmp_path, heartbeat=2)
    try:
        running = pipeline.start(make_service(), http_port=0)
        base = f"http://127.0.0.1:{running.runner.http_port}"
        assert httpx.get(f"{base}/readyz").status_code == 200
        wait_until(lambda: _links(base) == {"consumer": 1.0, "outbox": 1.0}, timeout=15, what="both links up")
        proxy.cut()
        wait_until(lambda: httpx.get(f"{base}/readyz").status_code == 503, timeout=15, what="unready")
        assert "broker" in httpx.get(f"{base}/readyz").text
        assert httpx.get(f"{base}/healthz").status_code == 200, "alive even while the broker is away"
        wait_until(lambda: _links(base) == {"consumer": 0.0, "outbox": 0.0}, timeout=15, what="both links down")
        proxy.heal()
        wait_until(lambda: httpx.get(f"{base}/readyz").status_code == 200, timeout=15, what="ready again")
        wait_until(lambda: _links(base) == {"consumer": 1.0, "outbox": 1.0}, timeout=15, what="both links up again")
    finally:
        pipeline.close()
        proxy.close()
