"""One bench run: every section in order, each bounded and isolated, then the results file and the report."""

from __future__ import annotations

import json
import signal
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import events as ev
from bench import sections
from bench.drain import Drain
from bench.env import BenchEnv, machine
from bench.masking import masking
from bench.pipeline import BROKER_PROCESS
from bench.scales import Scale
from bench.stats import LoadMonitor

SECTIONS = ("raw_floor", "runtime", "publishing", "peers", "pipeline", "scale", "masking", "console", "sealing")


def _timed(results: dict[str, Any], name: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run one section; keep its numbers, its duration, how loaded the machine was, or its error."""
    monitor = LoadMonitor().start()
    started = time.monotonic()
    print(f"[bench] {name} ...", flush=True)
    try:
        outcome = fn()
    except Exception as exc:  # a failed section is reported, and the others still run
        outcome = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc(limit=6)}
    outcome["section_seconds"] = round(time.monotonic() - started, 1)
    outcome["machine_load"] = monitor.stop()
    results["sections"][name] = outcome
    print(f"[bench] {name} done in {outcome['section_seconds']}s", flush=True)
    return outcome


def bench_keys(workdir: Path) -> None:
    """Keys of the bench's own (its services seal under them), unless the environment names some."""
    import os

    from shared.keys import new_material, write_key_file

    if os.environ.get("ERASURE_KEYS_KEK") or os.environ.get("ERASURE_KEYS_FILE"):
        return
    write_key_file(workdir / "keys.json", new_material())
    os.environ["ERASURE_KEYS_FILE"] = str(workdir / "keys.json")
    os.environ.setdefault("ERASURE_KEYS_DATABASE_URL", f"sqlite:///{workdir / 'keys.db'}")


def run_bench(scale: Scale, out_dir: Path, *, only: tuple[str, ...] = SECTIONS, profile: bool = True,
              log_dir: Path | None = None, amqp_url: str | None = None,
              postgres_admin_url: str | None = None) -> dict[str, Any]:
    """Run the chosen sections at this scale; write latest.json, latest.md and the plots to out_dir."""
    env = BenchEnv()
    bench_keys(env.workdir)
    env.amqp_url = amqp_url or env.amqp_url
    env.postgres_admin_url = postgres_admin_url or env.postgres_admin_url
    out_dir.mkdir(parents=True, exist_ok=True)
    logs = log_dir or env.workdir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    profile_dir = env.workdir / "profiles" if profile else None
    if profile_dir is not None:
        profile_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    results: dict[str, Any] = {
        "meta": {"scale": scale.name, "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
                 "machine": machine(env), "sizes": scale.__dict__, "broker_before": broker_headroom(env.amqp_url)},
        "sections": {},
    }
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)  # so `finally` deletes the namespaces
    try:
        drain = Drain(env, env.namespace("m"), scale.queues, logs)
        drain.declare()
        run = sections.Run(env=env, scale=scale, drain=drain, log_dir=logs, profile_dir=profile_dir,
                           events=ev.deregistrations(drain.settings, scale.drain_events))
        floor = 0.0
        if "raw_floor" in only:
            floor = _timed(results, "raw_floor", lambda: sections.raw_floor(run)).get("deliveries_per_s", 0.0)
        ours: dict[str, Any] = {}
        if "runtime" in only:
            ours = _timed(results, "runtime", lambda: sections.runtime(run, floor))
        if "publishing" in only:
            _timed(results, "publishing", lambda: sections.confirmed_publishing(run))
        if "peers" in only:
            _timed(results, "peers", lambda: sections.peers(run, ours))
        if "pipeline" in only or "scale" in only:
            _pipeline_and_scale(results, run, only)
        if "masking" in only:
            _timed(results, "masking", lambda: masking(env))
        if "sealing" in only:
            _timed(results, "sealing", lambda: sections.sealing(run))
        if "console" in only:
            from bench import console

            _timed(results, "console", lambda: console.section(env, scale))
    finally:
        env.close()
        signal.signal(signal.SIGTERM, previous)
    results["meta"]["broker_after"] = broker_headroom(env.amqp_url)
    results["meta"]["total_seconds"] = round(time.monotonic() - started, 1)
    results["targets"] = evaluate(results)
    from bench.report import write_all

    write_all(results, out_dir)
    return results


def deliveries_per_erasure() -> int:
    """Broker deliveries one complete erasure costs, from the subscriptions: the deregistration to every queue
    bound to it, each slice's report to the queues bound to reports, the completion to its queues and the
    bench's observer."""
    from schemas import SLICE_SERVICES, SUBSCRIPTIONS, ErasureCompleted, ErasureSliceReported, UserDeregistered

    def bound(model: type) -> int:
        return sum(model in models for models in SUBSCRIPTIONS.values())

    return bound(UserDeregistered) + len(SLICE_SERVICES) * bound(ErasureSliceReported) + bound(ErasureCompleted) + 1


def _broker_bound(results: dict[str, Any]) -> None:
    """Each pipeline rate as a fraction of the limit the broker sets in this run: floor / deliveries per erasure."""
    floor = results["sections"].get("raw_floor", {}).get("deliveries_per_s")
    if not floor:
        return
    per = deliveries_per_erasure()
    for _backend, entry in _backends(results["sections"].get("pipeline")):
        rate = entry.get("throughput", {}).get("erasures_per_s")
        if isinstance(rate, int | float):
            limit = floor / per
            entry["broker_bound"] = {"floor_deliveries_per_s": floor, "deliveries_per_erasure": per,
                                     "limit_erasures_per_s": round(limit, 1), "fraction": round(rate / limit, 3)}


def broker_headroom(amqp_url: str) -> dict[str, Any]:
    """The broker's descriptors, memory and queue count, said aloud with a warning when low (before and after)."""
    from ops import headroom

    try:
        found = headroom.read(amqp_url)
    except headroom.HeadroomUnknown as exc:
        print(f"[bench] broker headroom not read: {exc}", flush=True)
        return {"error": str(exc)}
    print(f"[bench] broker {found.summary()}", flush=True)
    for warning in found.warnings():
        print(f"[bench] WARNING: {warning}", flush=True)
    return {**found.as_dict(), "warnings": found.warnings()}


def _exit_on_sigterm(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)


def _pipeline_and_scale(results: dict[str, Any], run: sections.Run, only: tuple[str, ...]) -> None:
    def whole() -> dict[str, Any]:
        backends = run.scale.pipeline_backends
        return {b: sections.pipeline(run, b, with_backlog=b == backends[0]) for b in backends}

    both = _timed(results, "pipeline", whole)
    _broker_bound(results)
    scale: dict[str, Any] = {"backlog": {}}
    for backend, outcome in both.items():
        if isinstance(outcome, dict) and "backlog" in outcome:
            scale["backlog"][backend] = outcome.pop("backlog")
    if "scale" in only:
        accounts = _timed(results, "scale", lambda: {"account": sections.account_scaling(run),
                                                     "ledger": sections.ledger_scaling(run),
                                                     "bookkeeping": sections.bookkeeping_scaling(run),
                                                     "vendor_calls": sections.vendor_calls_at_once(run)})
        accounts.update(scale)
    else:
        results["sections"]["scale"] = scale


def evaluate(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target of the benchmark issue with what was measured and whether it is met."""
    s = results["sections"]
    targets: list[dict[str, Any]] = []

    def add(name: str, goal: str, value: Any, met: bool | None) -> None:
        targets.append({"target": name, "goal": goal, "measured": value, "met": met})

    for backend, entry in _backends(s.get("runtime")):
        add(f"runtime/floor ratio ({backend})", ">= 0.6", entry.get("ratio_to_floor"),
            _ge(entry.get("ratio_to_floor"), 0.6))
        appended = (entry.get("appended") or {}).get("ratio_to_floor")
        if appended is not None:
            add(f"runtime/floor ratio, row via Context.append ({backend})", ">= 0.6", appended, _ge(appended, 0.6))
    pub = s.get("publishing", {})
    if "events_per_s" in pub:
        add("confirmed publishing events/s", ">= 10000", pub["events_per_s"], pub["events_per_s"] >= 10_000)
        add("confirmed / unconfirmed ratio", ">= 0.7", pub["ratio_to_unconfirmed"], pub["ratio_to_unconfirmed"] >= 0.7)
    for backend, entry in _backends(s.get("pipeline")):
        rate = entry.get("throughput", {}).get("erasures_per_s")
        add(f"complete erasures/s ({backend})", ">= 250", rate, _ge(rate, 250))
        p99 = entry.get("latency", {}).get("p99_ms")
        add(f"p99 latency at 50/s ({backend})", "<= 250 ms", p99, None if p99 is None else p99 <= 250)
    scale = s.get("scale", {})
    for backend, entry in (scale.get("backlog") or {}).items():
        # The broker's memory is sampled beside the services' (its own column); the targets are per service.
        memory = {name: m for name, m in (entry.get("memory") or {}).items() if name != BROKER_PROCESS}
        peak = max((m["peak_mb"] for m in memory.values()), default=None)
        add(f"peak RSS per service ({backend})", "<= 200 MB", peak, None if peak is None else peak <= 200)
        growth = max((m["late_mb"] - m["early_mb"] for m in memory.values()), default=None)
        add(f"RSS growth over the backlog ({backend})", "flat (< 20 MB)", None if growth is None else round(growth, 1),
            None if growth is None else growth < 20)
    for backend, entry in (scale.get("account") or {}).items():
        ratio = entry.get("cost_ratio")
        add(f"account cost large/small table ({backend})", "<= 1.2", ratio, _le(ratio, 1.2))
    for backend, entry in (scale.get("ledger") or {}).items():
        ratio = entry.get("cpu_cost_ratio")
        add(f"ledger CPU cost large/small ledger ({backend})", "<= 1.2", ratio, _le(ratio, 1.2))
    for backend, entry in (scale.get("bookkeeping") or {}).items():
        for measure, said in (("cost_ratio", "ms"), ("cpu_cost_ratio", "CPU ms")):
            ratio = entry.get(measure)
            add(f"bookkeeping {said} per erasure large/small database ({backend})", "<= 1.25", ratio,
                _le(ratio, 1.25))
    shown = (s.get("masking", {}).get("dlq_show_ms") or {}).get("1 MiB")
    if shown is not None:
        add("erasure dlq show of a 1 MiB dead letter", "< 1000 ms", shown, shown < 1000)
    for backend, entry in _backends(s.get("console")):
        for page in ("list_first", "list_next", "request"):
            p95 = (entry.get(page) or {}).get("server", {}).get("p95_ms")
            add(f"console {page.replace('_', ' ')} server p95 ({backend})", "< 200 ms", p95,
                None if p95 is None else p95 < 200)
    sealing = s.get("sealing") or {}
    for measure in ("throughput_overhead_pct", "cpu_overhead_pct"):
        if measure in sealing:
            value = sealing[measure]
            add(f"sealing {measure.removesuffix('_pct').replace('_', ' ')} ({sealing['backend']})", "<= 10 %",
                value, value <= 10)
    return targets


def _backends(section: Any) -> list[tuple[str, dict[str, Any]]]:
    if not isinstance(section, dict):
        return []
    return [(k, v) for k, v in section.items() if isinstance(v, dict) and k in ("sqlite", "postgresql")]


def _ge(value: Any, bound: float) -> bool | None:
    return None if not isinstance(value, int | float) else value >= bound


def _le(value: Any, bound: float) -> bool | None:
    return None if not isinstance(value, int | float) or value <= 0 else value <= bound


def load(path: Path) -> dict[str, Any]:
    """A results file written by run_bench."""
    return json.loads(path.read_text())
