"""The benchmark at its tiny scale: every section runs end to end and reports positive numbers (not speed)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("psutil", reason="bench extras not installed (pip install -e '.[bench]')")

from bench.pipeline import BROKER_PROCESS
from bench.run import SECTIONS, run_bench
from bench.scales import SCALES

pytestmark = [pytest.mark.bench, pytest.mark.slow, pytest.mark.timeout(600)]


def _positive(value: Any) -> bool:
    return isinstance(value, int | float) and value > 0


@pytest.fixture(scope="module")
def results(amqp_url: str, postgres_admin_url: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One tiny bench run for the whole module; its latest.json as written to disk."""
    out = tmp_path_factory.mktemp("bench")
    run_bench(SCALES["tiny"], out, amqp_url=amqp_url, postgres_admin_url=postgres_admin_url)
    return {"json": json.loads((out / "latest.json").read_text()), "out": out}


def test_every_section_is_reported_without_error(results: dict[str, Any]) -> None:
    sections = results["json"]["sections"]
    assert set(SECTIONS) <= set(sections)
    failed = {name: s["error"] for name, s in sections.items() if "error" in s}
    assert not failed


def test_consumer_drains_report_positive_rates(results: dict[str, Any]) -> None:
    sections = results["json"]["sections"]
    assert _positive(sections["raw_floor"]["deliveries_per_s"])
    for backend in SCALES["tiny"].backends:
        entry = sections["runtime"][backend]
        assert _positive(entry["deliveries_per_s"])
        assert _positive(entry["ratio_to_floor"])
        assert all(_positive(run["deliveries_per_s"]) and not run["capped"] for run in entry["sweep"])
        assert _positive(entry["appended"]["deliveries_per_s"]) and entry["appended"]["kind"] == "runtime-append"


def test_confirmed_publishing_reports_rates_and_ratio(results: dict[str, Any]) -> None:
    publishing = results["json"]["sections"]["publishing"]
    assert _positive(publishing["events_per_s"])
    assert _positive(publishing["unconfirmed_pika"]["events_per_s"])
    assert _positive(publishing["ratio_to_unconfirmed"])


def test_pipeline_completes_every_erasure_and_measures_latency(results: dict[str, Any]) -> None:
    for backend in SCALES["tiny"].pipeline_backends:
        entry = results["json"]["sections"]["pipeline"][backend]
        assert entry["purchases"]["complete"]
        assert entry["latency"]["complete"] and _positive(entry["latency"]["p99_ms"])
        assert entry["throughput"]["complete"] and _positive(entry["throughput"]["erasures_per_s"])
        assert entry["sandbox_requests"] > 0
        assert [p["rate"] for p in entry["latency_curve"]] == list(SCALES["tiny"].curve_rates)
        assert all(p["complete"] and _positive(p["p99_ms"]) for p in entry["latency_curve"])
        assert entry["replicas"]["complete"] and _positive(entry["replicas"]["erasures_per_s"])
        bound = entry["broker_bound"]
        assert bound["deliveries_per_erasure"] == 13 and _positive(bound["fraction"])


def test_the_broker_headroom_is_recorded_before_and_after(results: dict[str, Any]) -> None:
    meta = results["json"]["meta"]
    for when in ("broker_before", "broker_after"):
        assert "error" in meta[when] or _positive(meta[when]["fd_limit"])


def test_scale_reports_backlog_memory_and_account_cost(results: dict[str, Any]) -> None:
    scale = results["json"]["sections"]["scale"]
    for backend in SCALES["tiny"].pipeline_backends:
        backlog = scale["backlog"][backend]
        assert backlog["complete"] and _positive(backlog["erasures_per_s"])
        assert all(_positive(m["peak_mb"]) for m in backlog["memory"].values())
        services = {name.split("#")[0] for name in backlog["memory"]} - {BROKER_PROCESS}
        assert len(services) == 6  # and the replica of the hottest
        assert _positive(backlog["memory"][BROKER_PROCESS]["peak_mb"]), "the broker's memory, sampled alongside"
    for backend in SCALES["tiny"].backends:
        entry = scale["account"][backend]
        assert _positive(entry["small"]["ms_per_erasure"]) and _positive(entry["large"]["ms_per_erasure"])
        assert _positive(entry["cost_ratio"])
        sweeps = entry["sweep"]  # after the erasures above: what they left of each table's inactive tenth
        assert all(s["deregistered"] == s["selected"] and _positive(s["memory"]["peak_mb"]) for s in sweeps.values())
        assert _positive(sweeps[str(max(SCALES["tiny"].account_sizes))]["deregistered"])
        ledger = scale["ledger"][backend]
        assert ledger["small"]["last_erasure_handled"] and ledger["large"]["last_erasure_handled"]
        assert _positive(ledger["cpu_cost_ratio"])
        bookkeeping = scale["bookkeeping"][backend]
        for size in ("small", "large"):
            measured = bookkeeping[size]
            assert measured["last_erasure_handled"] and measured["all_anonymised"] and measured["all_sales_kept"]
            assert measured["visma_customers_anonymised"] == measured["erasures"]
            assert _positive(measured["ms_per_erasure"]) and _positive(measured["cpu_ms_per_erasure"])
        assert _positive(bookkeeping["cost_ratio"]) and _positive(bookkeeping["cpu_cost_ratio"])


def test_peers_run_or_say_why_not(results: dict[str, Any]) -> None:
    peers = results["json"]["sections"]["peers"]
    for kind in ("faststream", "celery"):
        if "skipped" in peers[kind]:
            continue
        for backend in SCALES["tiny"].backends:
            assert _positive(peers[kind][backend]["deliveries_per_s"])
            assert _positive(peers[kind][backend]["our_ratio"])


def test_masking_reports_mask_text_and_dlq_show_at_each_size(results: dict[str, Any]) -> None:
    masking = results["json"]["sections"]["masking"]
    assert set(masking["dlq_show_ms"]) == {"40 KiB", "256 KiB", "1 MiB"}
    assert all(_positive(ms) for ms in masking["dlq_show_ms"].values())
    assert all(_positive(ms) for sizes in masking["mask_text_ms"].values() for ms in sizes.values())
    assert any(t["target"].startswith("erasure dlq show") for t in results["json"]["targets"])


def test_report_and_targets_are_written(results: dict[str, Any]) -> None:
    out: Path = results["out"]
    assert (out / "latest.md").read_text().startswith("# Benchmark results")
    assert {t["target"].split(" (")[0] for t in results["json"]["targets"]} >= {
        "runtime/floor ratio", "confirmed publishing events/s", "complete erasures/s", "p99 latency at 50/s"}
    pytest.importorskip("matplotlib")
    assert (out / "latency.png").stat().st_size > 0
    assert (out / "throughput.png").stat().st_size > 0
    assert (out / "latency_curve.png").stat().st_size > 0
