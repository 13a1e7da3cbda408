"""How big each section runs and how long it may take: `tiny` (smoke test), `small`, `full`."""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Scale:
    """Sizes and time caps of every section; a run stops at its cap and reports what it measured."""

    name: str
    # 1, 2, 6: backlog of events per drain, fanned out to `queues` quorum queues.
    drain_events: int
    queues: int
    drain_cap_s: float
    repeats: int  # noise-sensitive runs (raw floor, publishing) are repeated; the best counts
    # 2: (batch_size, prefetch) pairs tried per database; the best is reported.
    sweep: tuple[tuple[int, int], ...]
    # 3: events per confirmed publish measurement, and the producer windows tried.
    publish_events: int
    publish_windows: tuple[int, ...]
    # 4: the fixed-rate latency runs (the target rate, and a light rate first) and the throughput backlog.
    latency_rate: float
    latency_seconds: float
    light_rate: float
    light_seconds: float
    # 4: the latency curve: a fixed rate for curve_seconds at each offered rate, p50/p99 against the rate.
    curve_rates: tuple[float, ...]
    curve_seconds: float
    pipeline_backlog: int
    pipeline_cap_s: float
    buyer_fraction: float
    # 5: the big backlog through the whole pipeline, and the account database sizes compared.
    scale_backlog: int
    scale_cap_s: float
    account_sizes: tuple[int, int]
    account_erasures: int
    # 2, 5, 6: the databases the one-row runs, the account-size runs and the peers use.
    backends: tuple[str, ...]
    pipeline_backends: tuple[str, ...]
    # 9: the sealing section's backlogs, sealed and in clear, each this many times (in alternating order).
    sealing_rounds: int = 2


SCALES = {
    "tiny": Scale(
        name="tiny", drain_events=150, queues=2, drain_cap_s=30, repeats=1, sweep=((100, 200),),
        publish_events=500, publish_windows=(2000,),
        latency_rate=20, latency_seconds=1.0, light_rate=10, light_seconds=0.5, pipeline_backlog=30,
        curve_rates=(10, 50), curve_seconds=0.5,
        pipeline_cap_s=40, buyer_fraction=0.25,
        scale_backlog=40, scale_cap_s=40, account_sizes=(200, 2000), account_erasures=100,
        backends=("sqlite",), pipeline_backends=("postgresql",), sealing_rounds=1,
    ),
    "small": Scale(
        name="small", drain_events=1500, queues=5, drain_cap_s=90, repeats=2,
        sweep=((20, 50), (100, 200), (300, 600)),
        publish_events=15_000, publish_windows=(500, 2000, 5000),
        latency_rate=50, latency_seconds=6, light_rate=5, light_seconds=6, pipeline_backlog=400, pipeline_cap_s=120,
        curve_rates=(10, 50, 100, 200, 300), curve_seconds=2,
        buyer_fraction=0.25, scale_backlog=1000, scale_cap_s=120, account_sizes=(10_000, 100_000),
        account_erasures=1500,
        backends=("sqlite", "postgresql"), pipeline_backends=("postgresql",),
    ),
    "full": Scale(
        name="full", drain_events=2000, queues=5, drain_cap_s=150, repeats=2,
        sweep=((20, 50), (50, 100), (100, 200), (300, 600)),
        publish_events=30_000, publish_windows=(500, 2000, 5000, 10_000),
        latency_rate=50, latency_seconds=10, light_rate=10, light_seconds=10, pipeline_backlog=600,
        curve_rates=(10, 25, 50, 100, 150, 200, 300), curve_seconds=4,
        pipeline_cap_s=240, buyer_fraction=0.25, scale_backlog=3000, scale_cap_s=300,
        account_sizes=(10_000, 1_000_000), account_erasures=1500,
        backends=("sqlite", "postgresql"), pipeline_backends=("postgresql", "sqlite"),
    ),
    # The 100,000-erasure backlog alone (section 5a on SQLite): `python -m bench --scale drain --only pipeline
    # --no-profile`, about half an hour; not part of `make bench`.
    "drain": Scale(
        name="drain", drain_events=150, queues=2, drain_cap_s=30, repeats=1, sweep=((100, 200),),
        publish_events=500, publish_windows=(2000,),
        latency_rate=10, latency_seconds=1.0, light_rate=10, light_seconds=0.5, pipeline_backlog=200,
        curve_rates=(10,), curve_seconds=1.0,
        pipeline_cap_s=300, buyer_fraction=0.25, scale_backlog=100_000, scale_cap_s=3600,
        account_sizes=(200, 2000), account_erasures=100,
        backends=("sqlite",), pipeline_backends=("sqlite",),
    ),
}


def scale_from_env(default: str = "small") -> Scale:
    """The scale named by BENCH_SCALE (tiny, small or full)."""
    name = os.environ.get("BENCH_SCALE", default).strip().lower() or default
    if name not in SCALES:
        raise ValueError(f"BENCH_SCALE={name!r}: choose one of {', '.join(SCALES)}")
    return SCALES[name]
