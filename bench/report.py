"""The bench's outputs: latest.json, a Markdown report, PNG plots, and the table printed at the end."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

PLOTS = ("latency.png", "throughput.png", "memory.png", "consumers.png")


def write_all(results: dict[str, Any], out_dir: Path) -> None:
    """Write every output into out_dir and print the summary table."""
    (out_dir / "latest.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    plotted = plots(results, out_dir)
    (out_dir / "latest.md").write_text(markdown(results, plotted))
    print(table(results), flush=True)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if value == 0:
            return "0"
        return f"{value:.3f}" if abs(value) < 1 else f"{value:.2f}" if abs(value) < 10 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _md_table(header: Iterable[str], rows: Iterable[Iterable[Any]]) -> str:
    head = list(header)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _rows(results: dict[str, Any]) -> list[tuple[str, str, Any]]:
    """(section, measure, value) for the summary table."""
    s = results["sections"]
    rows: list[tuple[str, str, Any]] = []
    raw = s.get("raw_floor", {})
    rows.append(("1 raw floor", "bare pika deliveries/s", raw.get("deliveries_per_s", raw.get("error"))))
    for backend, entry in _by_backend(s.get("runtime")):
        best = entry.get("best", {})
        rows.append((f"2 runtime {backend}", "deliveries/s (ratio to floor)",
                     f"{_fmt(entry.get('deliveries_per_s'))} ({_fmt(entry.get('ratio_to_floor'))}) "
                     f"at batch {best.get('batch_size')}, prefetch {best.get('prefetch')}"))
        appended = entry.get("appended")
        if appended:
            rows.append((f"2 runtime {backend}", "same, row via Context.append (ratio)",
                         f"{_fmt(appended.get('deliveries_per_s'))} ({_fmt(appended.get('ratio_to_floor'))})"))
    pub = s.get("publishing", {})
    if "events_per_s" in pub:
        rows.append(("3 publishing", "confirmed signed events/s (ratio)",
                     f"{_fmt(pub['events_per_s'])} ({_fmt(pub['ratio_to_unconfirmed'])}); "
                     f"unconfirmed pika {_fmt(pub['unconfirmed_pika']['events_per_s'])}, bare confirmed pika "
                     f"{_fmt(pub.get('bare_confirmed_pika', {}).get('events_per_s'))}"))
    elif "error" in pub:
        rows.append(("3 publishing", "error", pub["error"]))
    for backend, entry in _by_backend(s.get("pipeline")):
        thr = entry.get("throughput", {})
        rows.append((f"4 pipeline {backend}", "complete erasures/s", thr.get("erasures_per_s", entry.get("error"))))
        bound = entry.get("broker_bound")
        if bound:
            rows.append((f"4 pipeline {backend}", "fraction of the broker-bound limit (floor ÷ deliveries/erasure)",
                         f"{_fmt(bound['fraction'])} of {_fmt(bound['limit_erasures_per_s'])}/s "
                         f"({_fmt(bound['floor_deliveries_per_s'])} ÷ {bound['deliveries_per_erasure']})"))
        replicas = entry.get("replicas") or {}
        if "service" in replicas:
            rows.append((f"4 pipeline {backend}", f"complete erasures/s with 2 processes of {replicas['service']}",
                         f"{_fmt(replicas.get('erasures_per_s'))} "
                         f"(one: {_fmt(replicas.get('one_process_erasures_per_s'))})"))
        curve = entry.get("latency_curve") or []
        if curve:
            rows.append((f"4 pipeline {backend}", "latency curve: offered/s → p50 / p99 ms",
                         "; ".join(f"{_fmt(p['rate'])} → {_fmt(p['p50_ms'])} / {_fmt(p['p99_ms'])}" for p in curve)))
        for key in ("light_latency", "latency"):
            lat = entry.get(key, {})
            rows.append((f"4 pipeline {backend}", f"latency at {_fmt(lat.get('rate'))}/s p50/p95/p99 ms",
                         f"{_fmt(lat.get('p50_ms'))} / {_fmt(lat.get('p95_ms'))} / {_fmt(lat.get('p99_ms'))}"))
    scale = s.get("scale", {})
    for backend, entry in (scale.get("backlog") or {}).items():
        memory = dict(entry.get("memory") or {})
        broker = memory.pop("broker", {}).get("peak_mb")  # the RabbitMQ node, sampled alongside the services
        peak = max((m["peak_mb"] for m in memory.values()), default=None)
        rows.append((f"5 backlog {backend}", f"{entry.get('erasures')} erasures: s, /s, peak RSS MB per service"
                     + (", broker" if broker is not None else ""),
                     f"{_fmt(entry.get('seconds'))} s, {_fmt(entry.get('erasures_per_s'))}/s, {_fmt(peak)}"
                     + (f", {_fmt(broker)}" if broker is not None else "")))
    for backend, entry in (scale.get("account") or {}).items():
        small, large = entry.get("small", {}), entry.get("large", {})
        rows.append((f"5 account {backend}", f"ms/erasure at {_fmt(small.get('users'))} vs {_fmt(large.get('users'))}",
                     f"{_fmt(small.get('ms_per_erasure'))} vs {_fmt(large.get('ms_per_erasure'))} "
                     f"(x{_fmt(entry.get('cost_ratio'))}; CPU x{_fmt(entry.get('cpu_cost_ratio'))})"))
        for users, sweep in (entry.get("sweep") or {}).items():
            memory = sweep.get("memory") or {}
            said = (f"{_fmt(sweep.get('seconds'))} s, {_fmt(sweep.get('deregistered'))}, {_fmt(memory.get('peak_mb'))}"
                    f" (first fifth {_fmt(memory.get('early_mb'))})")
            rows.append((f"5 sweep {backend}", f"sweep inactive over {_fmt(users)} accounts: s, swept, peak RSS MB",
                         sweep.get("error") or said))
    for backend, entry in (scale.get("ledger") or {}).items():
        small, large = entry.get("small", {}), entry.get("large", {})
        rows.append((f"5 ledger {backend}", f"CPU ms/erasure at {_fmt(small.get('requests'))} vs "
                                            f"{_fmt(large.get('requests'))} requests",
                     f"{_fmt(small.get('cpu_ms_per_erasure'))} vs {_fmt(large.get('cpu_ms_per_erasure'))} "
                     f"(x{_fmt(entry.get('cpu_cost_ratio'))})"))
    for service, entry in (scale.get("vendor_calls") or {}).items():
        one = entry.get("one_at_a_time", {})
        many = next((v for k, v in entry.items() if k.endswith("_at_once")), {})
        rows.append((f"5 vendor calls {service}", f"erasures/s, vendor {_fmt(one.get('round_trip_ms'))} ms away: "
                                                  "one call at a time vs a batch's at once",
                     f"{_fmt(one.get('erasures_per_s'))} vs {_fmt(many.get('erasures_per_s'))} "
                     f"(x{_fmt(entry.get('ratio'))}); CPU ms/erasure {_fmt(one.get('cpu_ms_per_erasure'))} vs "
                     f"{_fmt(many.get('cpu_ms_per_erasure'))}"))
    for backend, entry in (scale.get("bookkeeping") or {}).items():
        small, large = entry.get("small", {}), entry.get("large", {})
        rows.append((f"5 bookkeeping {backend}", f"ms (CPU ms) per erasure at {_fmt(small.get('users'))} vs "
                                                 f"{_fmt(large.get('users'))} users; seed s",
                     f"{_fmt(small.get('ms_per_erasure'))} ({_fmt(small.get('cpu_ms_per_erasure'))}) vs "
                     f"{_fmt(large.get('ms_per_erasure'))} ({_fmt(large.get('cpu_ms_per_erasure'))}) "
                     f"(x{_fmt(entry.get('cost_ratio'))}; CPU x{_fmt(entry.get('cpu_cost_ratio'))}); "
                     f"{_fmt(small.get('fill_seconds'))} / {_fmt(large.get('fill_seconds'))}"
                     + (f"; server blocks read/erasure {_fmt(small['server_blocks_read_per_erasure'])} vs "
                        f"{_fmt(large.get('server_blocks_read_per_erasure'))}"
                        if "server_blocks_read_per_erasure" in small else "")))
    for kind in ("faststream", "celery"):
        entry = s.get("peers", {}).get(kind, {})
        if "skipped" in entry:
            rows.append((f"6 {kind}", "skipped", entry["skipped"]))
        for backend, peer in _by_backend(entry):
            rows.append((f"6 {kind} {backend}", "deliveries/s (ours ÷ theirs)",
                         f"{_fmt(peer.get('deliveries_per_s'))} (x{_fmt(peer.get('our_ratio'))})"))
    masking = s.get("masking", {})
    for size, ms in (masking.get("dlq_show_ms") or {}).items():
        worst = max((masking.get("mask_text_ms") or {}).get(size, {}).values(), default=None)
        rows.append((f"7 masking {size}", "dlq show ms (worst mask_text ms)", f"{_fmt(ms)} ({_fmt(worst)})"))
    for backend, entry in _by_backend(s.get("console")):
        for page in ("list_first", "list_next", "list_overdue", "request"):
            server = (entry.get(page) or {}).get("server", {})
            rows.append((f"8 console {backend}", f"{page.replace('_', ' ')} server ms p50/p95 "
                         f"({_fmt(s['console'].get('requests'))} requests)",
                         f"{_fmt(server.get('p50_ms'))} / {_fmt(server.get('p95_ms'))}"))
    for name, section in s.items():
        if isinstance(section, dict) and "error" in section:
            rows.append((name, "ERROR", section["error"][:100]))
    return rows


def _by_backend(section: Any) -> list[tuple[str, dict[str, Any]]]:
    if not isinstance(section, dict):
        return []
    return [(k, v) for k, v in section.items() if k in ("sqlite", "postgresql") and isinstance(v, dict)]


def table(results: dict[str, Any]) -> str:
    """The summary as a plain-text table."""
    rows = _rows(results)
    width = [max(len(str(r[i])) for r in rows) for i in range(2)] if rows else [0, 0]
    lines = [f"{'section':<{width[0]}}  {'measure':<{width[1]}}  value"]
    lines += [f"{a:<{width[0]}}  {b:<{width[1]}}  {_fmt(c)}" for a, b, c in rows]
    lines.append("")
    for target in results.get("targets", []):
        verdict = {True: "met", False: "MISSED", None: "n/a"}[target["met"]]
        lines.append(f"target {target['target']}: {target['goal']} -> {_fmt(target['measured'])} [{verdict}]")
    return "\n".join(lines)


def markdown(results: dict[str, Any], plotted: list[str]) -> str:
    """The report as Markdown: machine, summary, targets, per-section detail, plots."""
    meta = results["meta"]
    m = meta["machine"]
    s = results["sections"]
    parts = [
        f"# Benchmark results ({meta['scale']} scale, {meta['started_at']})",
        "",
        f"Machine: {m['nproc']} CPUs ({m['cpu_model']}), {m['memory_gb']} GB RAM, Linux {m['kernel']}, "
        f"Python {m['python']}, RabbitMQ {m['rabbitmq']}, PostgreSQL {m['postgresql']}, SQLite {m['sqlite']}. "
        f"Total run time {meta.get('total_seconds')} s.",
        "",
        "## Summary",
        "",
        _md_table(["section", "measure", "value"], _rows(results)),
        "",
        "## Targets",
        "",
        _md_table(["target", "goal", "measured", "status"],
                  [(t["target"], t["goal"], t["measured"], {True: "met", False: "missed", None: "n/a"}[t["met"]])
                   for t in results.get("targets", [])]),
        "",
        "## Machine load during each section",
        "",
        "Other processes' CPU (100 = one core) while the section ran; the broker and PostgreSQL are shared and "
        "not counted.",
        "",
        _md_table(["section", "seconds", "load avg start", "others' CPU % (mean / max)"],
                  [(name, sec.get("section_seconds"), sec.get("machine_load", {}).get("loadavg_start"),
                    f"{sec.get('machine_load', {}).get('foreign_cpu_percent')} / "
                    f"{sec.get('machine_load', {}).get('foreign_cpu_percent_max')}")
                   for name, sec in s.items() if isinstance(sec, dict)]),
        "",
    ]
    parts += _detail(s)
    if plotted:
        parts += ["## Plots", ""] + [f"![{name}]({name})" for name in plotted] + [""]
    return "\n".join(parts)


def _drain_rows(runs: Iterable[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [(r.get("kind"), r.get("backend") or "-", r.get("batch_size"), r.get("prefetch"), r.get("deliveries"),
             r.get("seconds"), r.get("deliveries_per_s"), r.get("cpu_us_per_delivery"), r.get("peak_rss_mb"),
             r.get("capped")) for r in runs]


DRAIN_HEADER = ["consumer", "db", "batch", "prefetch", "deliveries", "s", "deliveries/s", "CPU µs/delivery",
                "peak RSS MB", "capped"]


def _detail(s: dict[str, Any]) -> list[str]:
    out = ["## Consumers (sections 1, 2, 6)", ""]
    runs: list[dict[str, Any]] = []
    if "deliveries_per_s" in s.get("raw_floor", {}):
        runs.append(s["raw_floor"])
    for _backend, entry in _by_backend(s.get("runtime")):
        runs += entry.get("sweep", []) + ([entry["appended"]] if entry.get("appended") else [])
    for kind in ("faststream", "celery"):
        runs += [peer for _b, peer in _by_backend(s.get("peers", {}).get(kind))]
    out += [_md_table(DRAIN_HEADER, _drain_rows(runs)), ""]
    pub = s.get("publishing", {})
    if "runs" in pub:
        out += ["## Confirmed publishing (section 3)", "",
                f"Unconfirmed pika: {_fmt(pub['unconfirmed_pika']['events_per_s'])} events/s as the client "
                f"wrote them, {_fmt(pub['unconfirmed_pika'].get('events_per_s_until_stored'))} events/s until "
                f"every copy was in its queue. Bare pika with "
                f"pipelined confirms (SelectConnection, window 2000, pre-signed bodies): "
                f"{_fmt(pub.get('bare_confirmed_pika', {}).get('events_per_s'))} events/s.", "",
                _md_table(["window", "events per call", "encode µs/event", "publish-only events/s",
                           "events/s incl. encode", "CPU µs/event publish only / incl. encode", "max in flight"],
                          [(r["window"], r["chunk"], r["encode_us_per_event"], r["events_per_s_publish_only"],
                            r["events_per_s"], f"{_fmt(r.get('cpu_us_per_event_publish_only'))} / "
                            f"{_fmt(r.get('cpu_us_per_event'))}", r["max_in_flight"]) for r in pub["runs"]]), ""]
    for backend, entry in _by_backend(s.get("pipeline")):
        thr, purchases = entry.get("throughput", {}), entry.get("purchases") or {}
        out += [f"## Pipeline on {backend} (section 4)", "",
                f"Before erasing, {purchases.get('purchases')} of the users bought something (PayPal, newsletter "
                f"consent, an installer), handled in {purchases.get('seconds')} s. The sandbox answered "
                f"{entry.get('sandbox_requests')} requests in all.", ""]
        for key in ("light_latency", "latency"):
            lat = entry.get(key, {})
            out += [f"Latency at {lat.get('rate')}/s (achieved {lat.get('achieved_rate')}/s), "
                    f"{lat.get('completed')}/{lat.get('erasures')} completed: p50 {lat.get('p50_ms')} ms, "
                    f"p95 {lat.get('p95_ms')} ms, p99 {lat.get('p99_ms')} ms, max {lat.get('max_ms')} ms.", ""]
        out += [f"Backlog of {thr.get('erasures')}: {thr.get('completed')} completed in {thr.get('seconds')} s = "
                f"{thr.get('erasures_per_s')} erasures/s.", "", _cpu_line(thr), ""]
        profiles = thr.get("profiles") or {}
        if profiles:
            out += [f"Where each service's threads spent their sampled time while draining a second backlog of the "
                    f"same size under py-spy ({thr.get('profiled_run_erasures_per_s')} erasures/s with the samplers "
                    f"attached; {backend}):", "",
                    _category_table(profiles), ""]
    scale = s.get("scale", {})
    for backend, entry in (scale.get("backlog") or {}).items():
        out += [f"## Backlog of {entry.get('erasures')} on {backend} (section 5)", "",
                f"{entry.get('completed')} completed in {entry.get('seconds')} s = {entry.get('erasures_per_s')}/s.",
                "", _cpu_line(entry), "", _md_table(["service", "peak RSS MB", "first fifth MB", "last fifth MB"],
                              [(n, m["peak_mb"], m["early_mb"], m["late_mb"])
                               for n, m in (entry.get("memory") or {}).items()]), ""]
    for backend, entry in (scale.get("account") or {}).items():
        out += [f"## Account erasure cost by table size on {backend} (section 5)", "",
                _md_table(["users", "seed s", "erasures", "s", "erasures/s", "ms/erasure", "CPU ms/erasure",
                           "all attempts ms/erasure"],
                          [(e.get("users"), e.get("seed_seconds"), e.get("handled"), e.get("seconds"),
                            e.get("erasures_per_s"), e.get("ms_per_erasure"), e.get("cpu_ms_per_erasure"),
                            ", ".join(_fmt(v) for v in (entry.get("attempts_ms_per_erasure") or {}).get(
                                str(e.get("users")), (entry.get("attempts_ms_per_erasure") or {}).get(
                                    e.get("users"), []))))
                           for e in (entry.get("small", {}), entry.get("large", {}))]), ""]
    runtime_profiles = {f"one-row runtime on {b}": e["profile"] for b, e in _by_backend(s.get("runtime"))
                        if e.get("profile")}
    if runtime_profiles:
        out += ["## Profile of one runtime consumer process (section 2, py-spy)", "",
                _category_table(runtime_profiles), ""]
        for name, profile in runtime_profiles.items():
            out += [f"Top functions by own time, {name}:", "",
                    _md_table(["function", "%"], [(p["function"], p["percent"]) for p in profile["own"][:10]]), ""]
    return out


def _category_table(profiles: dict[str, dict[str, Any]]) -> str:
    names = list(profiles)
    categories: list[str] = []
    for profile in profiles.values():
        for cat in profile.get("categories", {}):
            if cat not in categories:
                categories.append(cat)
    rows = [[cat, *(profiles[n].get("categories", {}).get(cat, 0.0) for n in names)] for cat in categories]
    rows.sort(key=lambda r: -sum(v for v in r[1:] if isinstance(v, float | int)))
    return _md_table(["% of samples", *names], rows)


def _cpu_line(phase: dict[str, Any]) -> str:
    """CPU milliseconds per complete erasure, by process, and the ceiling that puts on two cores."""
    per = phase.get("cpu_ms_per_erasure") or {}
    if not per:
        return ""
    total = sum(per.values())
    shown = ", ".join(f"{name} {ms:.1f}" for name, ms in sorted(per.items(), key=lambda kv: -kv[1]))
    return (f"CPU ms per erasure: {shown}; total {total:.1f} ms, so two cores cannot exceed "
            f"~{2000 / total:.0f} erasures/s (broker and PostgreSQL CPU include other users' load).")


def plots(results: dict[str, Any], out_dir: Path) -> list[str]:
    """Draw whatever the results hold; return the file names written."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import numpy
    except ImportError:
        return []
    s = results["sections"]
    written = []
    pipelines = _by_backend(s.get("pipeline"))
    if any(e.get("latency", {}).get("latencies_ms") for _b, e in pipelines):
        fig, (hist, cdf) = plt.subplots(1, 2, figsize=(11, 4))
        for backend, entry in pipelines:
            for key in ("light_latency", "latency"):
                values = entry.get(key, {}).get("latencies_ms") or []
                if not values:
                    continue
                label = f"{backend} at {entry[key].get('rate')}/s"
                hist.hist(values, bins=numpy.geomspace(max(1.0, min(values)), max(values) + 1, 40), alpha=0.6,
                          label=label)
                cdf.plot(sorted(values), [i / len(values) for i in range(1, len(values) + 1)], label=label)
        hist.set_xscale("log")
        cdf.set_xscale("log")
        hist.set(title="End-to-end latency at a fixed rate", xlabel="ms", ylabel="erasures")
        cdf.set(title="Latency CDF", xlabel="ms", ylabel="fraction completed")
        cdf.axvline(250, color="grey", linestyle="--", linewidth=1)
        hist.legend()
        cdf.legend()
        fig.tight_layout()
        fig.savefig(out_dir / "latency.png", dpi=110)
        plt.close(fig)
        written.append("latency.png")
    curves = [(b, e["latency_curve"]) for b, e in pipelines if e.get("latency_curve")]
    if curves:
        fig, axis = plt.subplots(figsize=(7, 4))
        for backend, points in curves:
            rates = [p["rate"] for p in points]
            for key, style in (("p50_ms", "-o"), ("p99_ms", "--o")):
                axis.plot(rates, [max(p[key], 0.1) for p in points], style, label=f"{backend} {key[:3]}")
        axis.axhline(250, color="grey", linestyle="--", linewidth=1)
        axis.set_yscale("log")
        axis.set(title="Latency from publish to ErasureCompleted against offered rate", xlabel="offered erasures/s",
                 ylabel="ms")
        axis.legend()
        fig.tight_layout()
        fig.savefig(out_dir / "latency_curve.png", dpi=110)
        plt.close(fig)
        written.append("latency_curve.png")
    series = [(f"{b} backlog {e['throughput'].get('erasures')}", e["throughput"].get("completion_times_s"))
              for b, e in pipelines if e.get("throughput")]
    series += [(f"{b} backlog {e.get('erasures')}", e.get("completion_times_s"))
               for b, e in (s.get("scale", {}).get("backlog") or {}).items()]
    series = [(label, times) for label, times in series if times]
    if series:
        fig, (done, rate) = plt.subplots(1, 2, figsize=(12, 4))
        for label, times in series:
            ordered = sorted(times)
            done.plot(ordered, [i / len(ordered) for i in range(1, len(ordered) + 1)], label=label)
            end = int(ordered[-1]) + 1
            window = 5
            counts = [0] * (end // window + 1)
            for t in ordered:
                counts[int(t) // window] += 1
            rate.plot([window * i for i in range(len(counts))], [c / window for c in counts], label=label)
        rate.axhline(250, color="grey", linestyle="--", linewidth=1)
        done.set(title="Share of the backlog completed", xlabel="s since publish", ylabel="fraction complete")
        rate.set(title="Complete erasures per second (5 s bins)", xlabel="s since publish", ylabel="erasures/s")
        done.legend()
        rate.legend()
        fig.tight_layout()
        fig.savefig(out_dir / "throughput.png", dpi=110)
        plt.close(fig)
        written.append("throughput.png")
    backlogs = [(b, e) for b, e in (s.get("scale", {}).get("backlog") or {}).items() if e.get("memory_series")]
    if backlogs:
        fig, axes = plt.subplots(1, len(backlogs), figsize=(6 * len(backlogs), 4), squeeze=False)
        for ax, (backend, entry) in zip(axes[0], backlogs, strict=True):
            for name, samples in entry["memory_series"].items():
                ax.plot([t for t, _ in samples], [mb for _, mb in samples], label=name)
            ax.axhline(200, color="grey", linestyle="--", linewidth=1)
            ax.set(title=f"RSS per service and of the broker, backlog on {backend}", xlabel="s", ylabel="MiB")
            ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out_dir / "memory.png", dpi=110)
        plt.close(fig)
        written.append("memory.png")
    bars = _consumer_bars(s)
    if bars:
        fig, ax = plt.subplots(figsize=(9, 4))
        ax.barh([label for label, _ in bars], [value for _, value in bars])
        ax.set(title="Drain rate, 5 quorum queues, one consumer process each", xlabel="deliveries/s")
        fig.tight_layout()
        fig.savefig(out_dir / "consumers.png", dpi=110)
        plt.close(fig)
        written.append("consumers.png")
    return written


def _consumer_bars(s: dict[str, Any]) -> list[tuple[str, float]]:
    bars = []
    if "deliveries_per_s" in s.get("raw_floor", {}):
        bars.append(("bare pika (no db)", s["raw_floor"]["deliveries_per_s"]))
    for backend, entry in _by_backend(s.get("runtime")):
        bars.append((f"runtime {backend}", entry.get("deliveries_per_s", 0.0)))
    for kind in ("faststream", "celery"):
        for backend, peer in _by_backend(s.get("peers", {}).get(kind)):
            bars.append((f"{kind} {backend}", peer.get("deliveries_per_s", 0.0)))
    return bars
