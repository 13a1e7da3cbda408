"""The health page's numbers come from the services' own /metrics and the broker, sampled over time."""

from __future__ import annotations

import re

import httpx

from schemas.examples import example_consent_change
from services.console import health
from services.registry import load
from shared.testing import Pipeline, wait_until


def test_samples_read_a_running_services_links_and_counters(erasure_pipeline: Pipeline) -> None:
    running = erasure_pipeline.start(load("newsletter"), http_port=0)
    url = f"http://127.0.0.1:{running.runner.http_port}/metrics"
    sampler = health.Sampler({"newsletter": url, "payment": "http://127.0.0.1:9/metrics"}, every_s=60)
    sampler.sample_once()
    [first] = sampler.history("newsletter")  # counters are per process: earlier tests may have counted already
    # No Mailchimp answers here: the withdrawal goes to a delay queue, which the counter counts as settled.
    erasure_pipeline.publish(example_consent_change("u-health", consented=False))
    wait_until(lambda: health.parse("newsletter", httpx.get(url).text, 0).handled > first.handled,
               what="the counter to grow")
    sampler.sample_once()
    second = sampler.history("newsletter")[-1]
    assert first.up and first.links == {"consumer": 1.0, "outbox": 1.0}
    assert second.handled - first.handled >= 1
    assert health.rate([first, second], "handled")[0] > 0
    down = sampler.history("payment")
    assert [s.up for s in down] == [False, False] and health.rate(down, "handled") == [0.0]
    sampler.stop()


def test_a_counter_reset_by_a_restart_counts_as_no_growth() -> None:
    before, after = health.Sample(0, True, handled=50), health.Sample(5, True, handled=3)
    assert health.rate([before, after], "handled") == [0.0]
    assert health.rate([before, health.Sample(10, True, handled=70)], "handled") == [2.0]


def test_sparklines_are_labelled_svg_with_one_point_per_value() -> None:
    svg = health.sparkline([0, 1, 4, 2], label="newsletter events per second")
    assert svg.startswith("<svg") and 'role="img"' in svg and 'aria-label="newsletter events per second"' in svg
    assert len(re.search(r'points="([^"]+)"', svg).group(1).split()) == 4
    assert "script" not in svg and "style=" not in svg, "nothing the CSP would block"


def test_the_health_page_shows_which_services_answer(erasure_pipeline: Pipeline, serve, ledger_url) -> None:
    running = erasure_pipeline.start(load("newsletter"), http_port=0)
    metrics = {"newsletter": f"http://127.0.0.1:{running.runner.http_port}/metrics",
               "payment": "http://127.0.0.1:9/metrics"}
    console = serve(ledger_url, runtime=erasure_pipeline.settings, metrics_urls=metrics, sample_every_s=0.2)
    client = console.login("vera")

    def rows() -> dict[str, str]:
        text = client.get("/health", headers={"HX-Request": "true"}).text
        return {m.group(1): m.group(2) for m in re.finditer(r"<tr>\s*<td>(\w+)</td>(.*?)</tr>", text, re.S)}

    found = wait_until(lambda: (r := rows()) and "consumer" in r.get("newsletter", "") and r, what="a sample")
    assert "up" in found["newsletter"] and "unreachable" in found["payment"]
    assert "<svg" in found["newsletter"]
    full = client.get("/health").text
    assert 'hx-trigger="every 5s"' in full and "<html" in full
