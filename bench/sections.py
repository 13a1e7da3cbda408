"""The six measurements. Each takes the run's context and returns a JSON-ready dict of what it measured."""

from __future__ import annotations

import importlib.util
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kombu
import psutil
from sqlalchemy import func, select

from bench import events as ev
from bench import publishing
from bench.bookkeeping_scale import bookkeeping_cost
from bench.drain import Drain
from bench.env import BenchEnv
from bench.ledger_scale import ledger_cost
from bench.pipeline import Deployment
from bench.procs import Child
from bench.scales import Scale
from bench.stats import percentiles
from bench.sweep import sweep_cost
from bench.vendor_calls import vendor_calls
from services.account.main import build as build_account
from services.account.models import metadata as account_metadata
from services.account.seed import seed_users
from shared.db import ensure_schema, make_engine, session_factory
from shared.producer import Producer, RawMessage
from shared.topology import Names

# Celery (5.5 and later) declares these in the vhost whenever a worker consumes a quorum queue, for its
# native delayed delivery; nothing else here uses them, so the bench removes them with its own queues.
CELERY_DELAYED = [f"celery_delayed_{level}" for level in range(28)]


@dataclass
class Run:
    """What every section needs: the environment, the scale, the shared drain namespace and output paths."""

    env: BenchEnv
    scale: Scale
    drain: Drain
    log_dir: Path
    profile_dir: Path | None
    events: list[Any]


def raw_floor(run: Run) -> dict[str, Any]:
    """1. Bare pika consumers, one per queue: decode (verify + validate) and ack."""
    attempts = [run.drain.run("raw", run.events, cap_s=run.scale.drain_cap_s) for _ in range(run.scale.repeats)]
    best = max(attempts, key=lambda r: r["deliveries_per_s"])
    return {**best, "attempts": [a["deliveries_per_s"] for a in attempts]}


def _ratio(rate: float, floor: float) -> float:
    return round(rate / floor, 3) if floor else 0.0


def runtime(run: Run, floor: float) -> dict[str, Any]:
    """2. The ServiceRunner with the one-row handler, per database and (batch_size, prefetch) pair."""
    out: dict[str, Any] = {}
    for backend in run.scale.backends:
        sweep = [run.drain.run("runtime", run.events, backend=backend, batch=batch, prefetch=prefetch,
                               cap_s=run.scale.drain_cap_s) for batch, prefetch in run.scale.sweep]
        best = max(sweep, key=lambda r: r["deliveries_per_s"])
        entry: dict[str, Any] = {
            "sweep": sweep, "best": best,
            "deliveries_per_s": best["deliveries_per_s"],
            "ratio_to_floor": _ratio(best["deliveries_per_s"], floor),
        }
        if run.profile_dir is not None:
            again = run.drain.run("runtime", run.events, backend=backend, batch=best["batch_size"],
                                  prefetch=best["prefetch"], cap_s=run.scale.drain_cap_s,
                                  profile=run.profile_dir / f"runtime-{backend}.txt")
            entry["profile"] = again.get("profile")
            entry["profiled_run_deliveries_per_s"] = again["deliveries_per_s"]
        # The same row written through Context.append: the runtime inserts a batch's rows in one executemany.
        appended = run.drain.run("runtime-append", run.events, backend=backend, batch=best["batch_size"],
                                 prefetch=best["prefetch"], cap_s=run.scale.drain_cap_s)
        appended["ratio_to_floor"] = _ratio(appended["deliveries_per_s"], floor)
        entry["appended"] = appended
        out[backend] = entry
    return out


def confirmed_publishing(run: Run) -> dict[str, Any]:
    """3. Producer.publish_many (encode + sign included) against unconfirmed pika, same queues."""
    return publishing.run(run.drain, run.scale.publish_events, run.scale.publish_windows, rounds=run.scale.repeats)


def peers(run: Run, ours: dict[str, Any]) -> dict[str, Any]:
    """6. The one-row handler as a FastStream subscriber and as a Celery task, on the same queues and databases."""
    out: dict[str, Any] = {}
    for kind, module in (("faststream", "faststream"), ("celery", "celery")):
        if importlib.util.find_spec(module) is None:
            out[kind] = {"skipped": f"{module} is not installed (pip install -e '.[bench]')"}
            continue
        per_backend = {}
        if kind == "celery":
            run.env.remember(queues=CELERY_DELAYED, exchanges=[*CELERY_DELAYED, "celery_delayed_delivery"])
        for backend in run.scale.backends:
            result = run.drain.run(kind, run.events, backend=backend, cap_s=run.scale.drain_cap_s)
            mine = ours.get(backend, {}).get("deliveries_per_s", 0.0)
            result["our_ratio"] = round(mine / result["deliveries_per_s"], 2) if result["deliveries_per_s"] else None
            per_backend[backend] = result
        out[kind] = per_backend
    return out


def pipeline(run: Run, backend: str, *, with_backlog: bool) -> dict[str, Any]:
    """4 (and 5a when with_backlog) on one backend: latency at a fixed rate, a throughput backlog, a big backlog."""
    scale = run.scale
    latency_n = max(1, round(scale.latency_rate * scale.latency_seconds))
    light_n = max(1, round(scale.light_rate * scale.light_seconds))
    big = scale.scale_backlog if with_backlog else 0
    curve_n = [max(1, round(rate * scale.curve_seconds)) for rate in scale.curve_rates]
    profiled_n = scale.pipeline_backlog if run.profile_dir is not None else 0
    deployment = Deployment(run.env, backend, run.log_dir)
    result: dict[str, Any] = {"backend": backend, "buyer_fraction": scale.buyer_fraction}
    try:
        started = time.monotonic()
        deployment.start(light_n + latency_n + 2 * scale.pipeline_backlog + big + profiled_n + sum(curve_n))
        result["start_seconds"] = round(time.monotonic() - started, 1)
        groups = [deployment.take_users(n) for n in (latency_n, scale.pipeline_backlog, big, light_n, profiled_n)]
        every = max(1, round(1 / scale.buyer_fraction)) if scale.buyer_fraction else 0
        buyers = [u for users in groups for i, u in enumerate(users) if every and i % every == 0]
        result["purchases"] = deployment.give_purchases(buyers, timeout=scale.pipeline_cap_s)
        phases = (("light_latency", groups[3], scale.light_rate), ("latency", groups[0], scale.latency_rate))
        for key, users, rate in phases:
            latency = deployment.erase_at_rate(users, rate, drain_timeout=scale.pipeline_cap_s)
            result[key] = {**{k: v for k, v in latency.items() if k != "latencies_ms"},
                           **percentiles(latency["latencies_ms"]), "latencies_ms": latency["latencies_ms"]}
        result["latency_curve"] = latency_curve(deployment, scale, curve_n)
        result["throughput"] = deployment.erase_backlog(groups[1], scale.pipeline_cap_s)
        if profiled_n:
            # Profiled on a backlog of its own: six py-spy samplers on two cores cost the pipeline 40-45 % of its
            # throughput, so the timed backlog above runs without them.
            profiled = deployment.erase_backlog(groups[4], scale.pipeline_cap_s, profile_dir=run.profile_dir)
            result["throughput"]["profiles"] = profiled.get("profiles", {})
            result["throughput"]["profiled_run_erasures_per_s"] = profiled["erasures_per_s"]
        result["replicas"] = hottest_replicated(deployment, result["throughput"], scale)
        if big:
            result["backlog"] = deployment.erase_backlog(groups[2], scale.scale_cap_s, sample_memory=True)
        result["sandbox_requests"] = len(deployment.sandbox.requests())
    finally:
        result["exit_codes"] = deployment.stop()
    return result


def hottest_replicated(deployment: Deployment, single: dict[str, Any], scale: Scale) -> dict[str, Any]:
    """The same backlog again with a second process of the service that used the most CPU per erasure."""
    per = {n: ms for n, ms in (single.get("cpu_ms_per_erasure") or {}).items() if n in deployment.children}
    if not per:
        return {"skipped": "no CPU figures from the backlog"}
    hottest = max(per, key=per.__getitem__)
    deployment.add_replica(hottest)
    again = deployment.erase_backlog(deployment.take_users(scale.pipeline_backlog), scale.pipeline_cap_s)
    return {"service": hottest, "processes": 2, "erasures_per_s": again["erasures_per_s"],
            "one_process_erasures_per_s": single.get("erasures_per_s"), "complete": again["complete"],
            "cpu_ms_per_erasure": again["cpu_ms_per_erasure"]}


def latency_curve(deployment: Deployment, scale: Scale, sizes: list[int]) -> list[dict[str, Any]]:
    """p50/p99 from publish to ErasureCompleted at each offered rate (curve_rates), each run drained first."""
    points = []
    for rate, n in zip(scale.curve_rates, sizes, strict=True):
        run = deployment.erase_at_rate(deployment.take_users(n), rate, drain_timeout=scale.pipeline_cap_s)
        points.append({k: v for k, v in run.items() if k != "latencies_ms"} | percentiles(run["latencies_ms"]))
    return points


@dataclass
class AccountTable:
    """A seeded account database: its URL, the seeded id prefix, and the users not yet erased."""

    backend: str
    size: int
    url: str
    prefix: str
    seed_seconds: float
    left: list[int]


def seed_account_table(run: Run, backend: str, size: int) -> AccountTable:
    """An account database migrated to head with `size` seeded users, in random erasure order."""
    url = run.env.database_url(backend, f"acct{size}")
    engine = make_engine(url)
    try:
        ensure_schema(engine, account_metadata, build_account().migrations)
        started = time.monotonic()
        with session_factory(engine, account_metadata)() as session, session.begin():
            seeded = seed_users(session, size)
        seed_s = time.monotonic() - started
    finally:
        engine.dispose()
    order = list(range(size))
    random.Random(size).shuffle(order)
    return AccountTable(backend, size, url, seeded.id_prefix, round(seed_s, 1), order)


def account_cost(run: Run, table: AccountTable, count: int) -> dict[str, Any]:
    """5b. The account service alone (its own process) erasing `count` random users of the table."""
    env, names = run.env, Names(run.drain.namespace)
    picks, table.left = table.left[:count], table.left[count:]
    messages = [RawMessage("", names.queue("account"), m.body, m.properties()) for m in
                (ev.signed(run.drain.settings, ev.deregistration(f"{table.prefix}-{i:07d}")) for i in picks)]
    ids = [m.properties["message_id"] for m in messages]
    child = Child(f"account-{table.backend}-{table.size}-{len(table.left)}", ["-m", "services.cli", "run", "account"],
                  log_dir=run.log_dir,
                  env={"ERASURE_AMQP_URL": env.amqp_url, "ERASURE_NAMESPACE": run.drain.namespace,
                       "ERASURE_RETRY_DELAYS": "[1.0]", "ERASURE_ACCOUNT_DATABASE_URL": table.url,
                       "ERASURE_ACCOUNT_HTTP_PORT": "0"})
    engine = make_engine(table.url)
    inbox = account_metadata.tables["inbox"]
    mine = inbox.c.event_id.in_(ids)
    handled, cpu = 0, 0.0
    try:
        _wait_consumer(env.amqp_url, names.queue("account"), child, timeout=60)
        cpu_before = _cpu(child)
        with Producer(env.amqp_url, exchange="") as producer:
            producer.publish_raw(messages)
        deadline = time.monotonic() + run.scale.drain_cap_s
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                handled = conn.execute(select(func.count()).select_from(inbox).where(mine)).scalar_one()
            if handled >= count:
                break
            time.sleep(0.2)
        cpu = _cpu(child) - cpu_before
        with engine.connect() as conn:
            first, last = conn.execute(select(func.min(inbox.c.handled_at), func.max(inbox.c.handled_at))
                                       .where(mine)).one()
    finally:
        child.stop()
        engine.dispose()
        _purge(env.amqp_url, [names.queue("account"), names.queue("ledger")])
    span = (last - first).total_seconds() if first and last else 0.0
    per_s = (handled - 1) / span if span > 0 else 0.0
    return {"backend": table.backend, "users": table.size, "seed_seconds": table.seed_seconds, "erasures": count,
            "handled": handled, "seconds": round(span, 2), "erasures_per_s": round(per_s, 1),
            "ms_per_erasure": round(1000 / per_s, 2) if per_s else 0.0,
            "cpu_ms_per_erasure": round(1000 * cpu / handled, 2) if handled else 0.0}


def account_scaling(run: Run, rounds: int = 2) -> dict[str, Any]:
    """5b per backend: small and large table alternately, `rounds` times; the best run of each size counts."""
    out = {}
    for backend in run.scale.backends:
        tables = [seed_account_table(run, backend, size) for size in run.scale.account_sizes]
        count = min(run.scale.account_erasures, *(t.size // rounds for t in tables))
        attempts: dict[int, list[dict[str, Any]]] = {t.size: [] for t in tables}
        for _ in range(rounds):
            for table in tables:
                attempts[table.size].append(account_cost(run, table, count))
        small, large = (min(attempts[t.size], key=lambda a: a["ms_per_erasure"] or float("inf")) for t in tables)
        ratio = large["ms_per_erasure"] / small["ms_per_erasure"] if small["ms_per_erasure"] else 0.0
        cpu_ratio = large["cpu_ms_per_erasure"] / small["cpu_ms_per_erasure"] if small["cpu_ms_per_erasure"] else 0.0
        out[backend] = {"small": small, "large": large, "cost_ratio": round(ratio, 3),
                        "cpu_cost_ratio": round(cpu_ratio, 3),
                        "attempts_ms_per_erasure": {size: [a["ms_per_erasure"] for a in runs]
                                                    for size, runs in attempts.items()},
                        # after the erasures, so the account service never relays the sweep's outbox
                        "sweep": {t.size: sweep_cost(t.url, run.scale.scale_cap_s * 5) for t in tables}}
    return out


def ledger_scaling(run: Run) -> dict[str, Any]:
    """5d per backend: the ledger's cost per erasure behind a small and a large ledger (scale.account_sizes)."""
    out: dict[str, Any] = {}
    erasures = min(500, run.scale.account_erasures)
    for backend in run.scale.backends:
        small, large = (ledger_cost(run.env.database_url(backend, f"ledger{size}"), size, erasures)
                        for size in run.scale.account_sizes)
        out[backend] = {"small": small, "large": large,
                        "cpu_cost_ratio": _ratio(large["cpu_ms_per_erasure"], small["cpu_ms_per_erasure"])}
    return out


def bookkeeping_scaling(run: Run) -> dict[str, Any]:
    """5e per backend: bookkeeping's cost per erasure with scale.account_sizes users (customers, their sales and
    their data keys) behind it; Visma answered by the sandbox."""
    out: dict[str, Any] = {}
    small_size, large_size = run.scale.account_sizes
    erasures = min(500, run.scale.account_erasures, small_size // 2)
    for backend in run.scale.backends:
        small, large = (bookkeeping_cost(run.env.database_url(backend, f"bookkeeping{size}"),
                                         run.env.database_url(backend, f"bookkeepingkeys{size}"), size, erasures)
                        for size in (small_size, large_size))
        out[backend] = {"small": small, "large": large,
                        "cost_ratio": _ratio(large["ms_per_erasure"], small["ms_per_erasure"]),
                        "cpu_cost_ratio": _ratio(large["cpu_ms_per_erasure"], small["cpu_ms_per_erasure"])}
    return out


def vendor_calls_at_once(run: Run) -> dict[str, Any]:
    """5f: payment's and bookkeeping's erasures with vendor answers 100 ms away, their calls one at a time and a
    batch's at once (outside steps), in the same run."""
    return vendor_calls(min(200, max(20, run.scale.account_erasures // 5)))


def _cpu(child: Child) -> float:
    times = psutil.Process(child.pid).cpu_times()
    return times.user + times.system


def _wait_consumer(amqp_url: str, queue: str, child: Child, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.process.poll() is not None:
            raise RuntimeError(f"{child.name} exited with {child.process.returncode}; {child.tail()}")
        with kombu.Connection(amqp_url) as conn:
            if conn.channel().queue_declare(queue, passive=True).consumer_count:
                return
        time.sleep(0.2)
    raise RuntimeError(f"{child.name} did not start consuming {queue} within {timeout:.0f}s")


def _purge(amqp_url: str, queues: list[str]) -> None:
    with kombu.Connection(amqp_url) as conn:
        channel = conn.channel()
        for queue in queues:
            channel.queue_purge(queue)


def sealing(run: Run) -> dict[str, Any]:
    """Erasures/s and CPU per erasure with personal data sealed and, in the same run, written in clear
    (ERASURE_KEYS_SEALING=false, for this measurement only): what crypto-shredding costs. Rounds alternate the
    order (sealed, clear, clear, sealed, ...), so that a machine getting busier or quieter affects both alike."""
    scale = run.scale
    backend = scale.pipeline_backends[-1]
    count = scale.pipeline_backlog
    rounds: dict[str, list[dict[str, Any]]] = {"sealed": [], "clear": []}
    order = [("sealed", "clear") if i % 2 == 0 else ("clear", "sealed") for i in range(scale.sealing_rounds)]
    for i, mode in enumerate(mode for pair in order for mode in pair):
        rounds[mode].append(_erase_backlog_once(run, backend, count, sealed=mode == "sealed", tag=f"{mode[:2]}{i}"))
    result: dict[str, Any] = {"backend": backend, "erasures": count, "rounds": rounds}
    for mode, measured in rounds.items():
        rates = [m["erasures_per_s"] for m in measured]
        cpu = [m["cpu_ms_per_erasure"] for m in measured if m["cpu_ms_per_erasure"] is not None]
        result[mode] = {"erasures_per_s": round(sum(rates) / len(rates), 1),
                        "cpu_ms_per_erasure": round(sum(cpu) / len(cpu), 2) if cpu else None,
                        "complete": all(m["complete"] for m in measured)}
    sealed, clear = result["sealed"], result["clear"]
    if sealed["erasures_per_s"] and clear["erasures_per_s"]:
        result["throughput_overhead_pct"] = round(100 * (1 - sealed["erasures_per_s"] / clear["erasures_per_s"]), 1)
    if sealed["cpu_ms_per_erasure"] and clear["cpu_ms_per_erasure"]:
        result["cpu_overhead_pct"] = round(100 * (sealed["cpu_ms_per_erasure"] / clear["cpu_ms_per_erasure"] - 1), 1)
    return result


def _erase_backlog_once(run: Run, backend: str, count: int, *, sealed: bool, tag: str) -> dict[str, Any]:
    """One deployment, its users (a share of them buyers first), one backlog of `count` erasures."""
    from shared.keys import set_sealing

    scale = run.scale
    deployment = Deployment(run.env, backend, run.log_dir, tag=tag,
                            extra_env={"ERASURE_KEYS_SEALING": "true" if sealed else "false"})
    previous = set_sealing(sealed)  # the account seed is written here, in this process
    try:
        deployment.start(count)
        users = deployment.take_users(count)
        every = max(1, round(1 / scale.buyer_fraction)) if scale.buyer_fraction else 0
        deployment.give_purchases([u for i, u in enumerate(users) if every and i % every == 0],
                                  timeout=scale.pipeline_cap_s)
        backlog = deployment.erase_backlog(users, scale.pipeline_cap_s)
        done = backlog["completed"]
        cpu = sum(backlog["cpu_seconds"].get(name, 0.0) for name in deployment.children)
        return {"erasures_per_s": backlog["erasures_per_s"], "completed": done, "complete": backlog["complete"],
                "service_cpu_seconds": round(cpu, 2),
                "cpu_ms_per_erasure_by_service": {name: backlog["cpu_ms_per_erasure"].get(name)
                                                  for name in deployment.children},
                "cpu_ms_per_erasure": round(1000 * cpu / done, 2) if done else None}
    finally:
        set_sealing(previous)
        deployment.stop()
