"""The figures in docs/RELIABILITY.md and BENCHMARKS.md, generated from the results files the suites write.

Each generated block sits between `<!-- figures:NAME ... -->` and `<!-- /figures:NAME -->`; everything else in
the documents is prose. `python -m tests.docs_figures` rewrites the blocks from
tests/chaos/results/latest.json and bench/results/latest.json; `--check` exits 1 if a document is stale
(tests/test_docs_figures.py runs that check).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from bench.report import _md_table, _rows

ROOT = Path(__file__).resolve().parent.parent
CHAOS_RESULTS = ROOT / "tests/chaos/results/latest.json"
BENCH_RESULTS = ROOT / "bench/results/latest.json"
RELIABILITY = ROOT / "docs/RELIABILITY.md"
BENCHMARKS = ROOT / "BENCHMARKS.md"
DASH, TIMES = "\u2013", "\u00d7"  # the typography of the prose around the blocks
BLOCK = re.compile(r"(<!-- figures:(?P<name>[\w-]+) [^>]*-->\n)(?P<body>.*?)(<!-- /figures:(?P=name) -->)", re.S)


def _s(value: float) -> str:
    return f"{value:.1f}"


def _n(value: int) -> str:
    return f"{value:,}"


def _span(values: list[float]) -> str:
    low, high = min(values), max(values)
    return _s(low) if low == high else f"{_s(low)}{DASH}{_s(high)}"


def _row(name: str, r: Mapping[str, Any], dead: str, recovered: str) -> list[str]:
    return [name, _n(r["erasures_sent"]), _n(r["completed"]), _n(r["lost"]), _n(r["duplicated_outside_effects"]),
            _n(r["events_acked_without_inbox_row"]), dead, recovered, f"{r['seconds_to_complete_all']:.0f} s"]


def _recovery(r: Mapping[str, Any]) -> str:
    return (f"consumers {_s(r['consumers_back_after_s'])} s, outbox {_s(r['outbox_producers_back_after_s'])} s, "
            f"work {_s(r['work_resumed_after_s'])} s")


def fault_table(c: Mapping[str, Any]) -> str:
    """The table of the five fault tests."""
    b, n, k, v, d = (c["broker_restart"], c["network_cut"], c["crash"], c["vendor_outage"], c["database_outage"])
    cuts = n["cuts"]
    rows = [
        _row(f"broker restart ({_s(b['broker_down_s'])} s down)", b, _n(b["dead_lettered"]), _recovery(b)),
        _row(f"network cut ({len(cuts)} {TIMES} {n['cut_length_s']:.0f} s)", n, _n(n["dead_lettered"]),
             f"worst: consumers {_s(max(x['consumers_back_after_s'] for x in cuts))} s, "
             f"outbox {_s(max(x['outbox_producers_back_after_s'] for x in cuts))} s, "
             f"work {_s(max(x['work_resumed_after_s'] for x in cuts))} s"),
        _row(f"crash ({k['kills_total']} {TIMES} SIGKILL)", k, _n(k["dead_lettered"]),
             f"— (each service down {_span([x['down_for_s'] for x in k['kills']])} s)"),
        _row(f"outside outage ({v['outage_s']:.0f} s)", v, f"{_n(v['dead_letters_during_outage'])} during the outage",
             f"{_s(v['seconds_from_outage_end_to_all_complete'])} s from outage end to all complete"),
        _row(f"database outage ({_s(d['database_down_s'])} s)", d, _n(d["dead_lettered"]), _recovery(d)),
    ]
    header = ["fault", "erasures", "completed", "lost", "duplicated effects", "acked without inbox row",
              "dead letters", "recovered in", "all done after"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join([*lines, *("| " + " | ".join(row) + " |" for row in rows)])


def _done(r: Mapping[str, Any]) -> str:
    # Results written before the raw request log was counted carry no `duplicates_seen_by_fakes`.
    judged = "the sandbox's raw request log" if "duplicates_seen_by_fakes" in r else "the fakes' effect log"
    return (f"{_n(r['completed'])} of {_n(r['erasures_sent'])} erasures complete, "
            f"{_n(r['duplicated_outside_effects'])} outside effects twice (counted from {judged}), "
            f"{_n(r['events_acked_without_inbox_row'])} events acked without their inbox row")


def last_runs(c: Mapping[str, Any]) -> dict[str, str]:
    """One "Last run" paragraph per fault test."""
    b, n, k, v, d = (c["broker_restart"], c["network_cut"], c["crash"], c["vendor_outage"], c["database_outage"])
    cuts = n["cuts"]
    notices = v.get("outside_effects", {}).get("installers.notice_for_an_attempt_that_may_have_reached_them", 0)
    return {
        "broker-restart": f"Last run: broker down {_s(b['broker_down_s'])} s; consumers back "
        f"{_s(b['consumers_back_after_s'])} s and outbox producers {_s(b['outbox_producers_back_after_s'])} s after "
        f"`start_app` returned, committed work growing again after {_s(b['work_resumed_after_s'])} s; {_done(b)}.",
        "network-cut": "Last run: after each heal, consumers were back within "
        f"{_span([x['consumers_back_after_s'] for x in cuts])} s, outbox producers within "
        f"{_span([x['outbox_producers_back_after_s'] for x in cuts])} s, and committed work grew again within "
        f"{_span([x['work_resumed_after_s'] for x in cuts])} s; {_done(n)}.",
        "crash": f"Last run: {k['kills_total']} kills in all (seed {k['seed']}); {_done(k)}.",
        "vendor-outage": f"Last run: {_n(v['vendor_calls_failed_by_the_outage'])} vendor calls failed during the "
        f"{v['outage_s']:.0f} s outage; up to {_n(v['peak_in_delay_queues'])} messages waited in the delay queues at "
        f"once; {_n(v['dead_letters_during_outage'])} were dead-lettered; everything was complete "
        f"{_s(v['seconds_from_outage_end_to_all_complete'])} s after the vendors came back; {_done(v)}. "
        f"{_n(notices)} purchases failed until after their users' erasure had been handled: they forwarded "
        "nothing, and each asked its installer to erase what the failed attempt may have delivered.",
        "database-outage": f"Last run: PostgreSQL down {_s(d['database_down_s'])} s; consumers held their batches "
        f"(nothing acked without its commit), committed work grew again {_s(d['work_resumed_after_s'])} s after the "
        f"restart; {_done(d)}.",
    }


def reliability_blocks(c: Mapping[str, Any]) -> dict[str, str]:
    """Every generated block of docs/RELIABILITY.md."""
    recorded = sorted(str(r["recorded_at"]) for r in c.values() if isinstance(r, Mapping) and "recorded_at" in r)
    first, last = (r.replace("T", " ").rstrip("Z") for r in (recorded[0], recorded[-1]))
    when = f"Recorded {first}{DASH}{last[11:] if first[:10] == last[:10] else last} UTC."
    return {"faults": f"{when}\n\n{fault_table(c)}", **last_runs(c)}


def benchmark_blocks(results: Mapping[str, Any]) -> dict[str, str]:
    """Every generated block of BENCHMARKS.md."""
    meta = results["meta"]
    head = f"Scale `{meta['scale']}`, started {meta['started_at']}, total {meta.get('total_seconds')} s."
    return {"summary": f"{head}\n\n{_md_table(['section', 'measure', 'value'], _rows(dict(results)))}"}


def render(text: str, blocks: Mapping[str, str]) -> str:
    """The document with each generated block replaced; KeyError for a marker nothing generates."""
    return BLOCK.sub(lambda m: f"{m.group(1)}{blocks[m['name']]}\n{m.group(4)}", text)


def block_names(text: str) -> set[str]:
    """The names of the generated blocks a document holds."""
    return {m["name"] for m in BLOCK.finditer(text)}


DOCUMENTS: dict[Path, tuple[Path, Callable[[Mapping[str, Any]], dict[str, str]]]] = {
    RELIABILITY: (CHAOS_RESULTS, reliability_blocks),
    BENCHMARKS: (BENCH_RESULTS, benchmark_blocks),
}


def rendered(doc: Path) -> str:
    """The document as it should read with the figures of its results file."""
    results_file, blocks = DOCUMENTS[doc]
    return render(doc.read_text(), blocks(json.loads(results_file.read_text())))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a document's figures are stale")
    args = parser.parse_args(argv)
    stale = []
    for doc in DOCUMENTS:
        fresh = rendered(doc)
        if fresh != doc.read_text():
            stale.append(doc.relative_to(ROOT))
            if not args.check:
                doc.write_text(fresh)
    if args.check and stale:
        print(f"stale figures in {', '.join(map(str, stale))}: run python -m tests.docs_figures", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
