"""Small statistics the report needs: percentiles and a machine-load monitor."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Sequence
from typing import Any

import psutil

SHARED_SERVERS = ("beam.smp", "postgres", "epmd")


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) of sorted or unsorted values, linearly interpolated."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def percentiles(values: Sequence[float]) -> dict[str, float]:
    """p50, p95, p99 and max, rounded to 0.1."""
    return {f"p{q}_ms": round(percentile(values, q), 1) for q in (50, 95, 99)} | {
        "max_ms": round(max(values), 1) if values else 0.0}


class LoadMonitor:
    """How busy the machine was with work that is not ours (other processes than this tree and the servers)."""

    def __init__(self, interval: float = 2.0) -> None:
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="load-monitor", daemon=True)
        self._foreign: list[float] = []
        self._last: dict[int, float] = {}
        self._last_at = time.time()
        self._load_start = os.getloadavg()[0]

    def start(self) -> LoadMonitor:
        """Begin sampling."""
        self._sample(first=True)
        self._thread.start()
        return self

    def _ours(self) -> set[int]:
        me = psutil.Process()
        with contextlib.suppress(psutil.Error):
            return {me.pid, *(c.pid for c in me.children(recursive=True))}
        return {me.pid}

    def _sample(self, *, first: bool = False) -> None:
        ours = self._ours()
        foreign = 0.0
        seen: dict[int, float] = {}
        for proc in psutil.process_iter(["pid", "name", "cpu_times", "create_time"]):
            info = proc.info
            times = info.get("cpu_times")
            if times is None:
                continue
            used = times.user + times.system
            seen[info["pid"]] = used
            if info["pid"] in ours or (info.get("name") or "").startswith(SHARED_SERVERS):
                continue
            # A process born since the last sample used all its CPU time within this interval.
            born_since = (info.get("create_time") or 0) > self._last_at
            foreign += used - self._last.get(info["pid"], 0.0 if born_since else used)
        self._last = seen
        self._last_at = time.time()
        if not first:
            self._foreign.append(100 * foreign / self.interval)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            with contextlib.suppress(psutil.Error):
                self._sample()

    def stop(self) -> dict[str, Any]:
        """Stop; the load average at start and end, and the mean CPU% (100 = one core) others used."""
        self._stop.set()
        self._thread.join(5)
        mean = sum(self._foreign) / len(self._foreign) if self._foreign else 0.0
        return {
            "loadavg_start": round(self._load_start, 2),
            "loadavg_end": round(os.getloadavg()[0], 2),
            "foreign_cpu_percent": round(mean, 1),
            "foreign_cpu_percent_max": round(max(self._foreign, default=0.0), 1),
        }


def server_cpu_seconds() -> dict[str, float]:
    """CPU seconds used so far by the system's RabbitMQ and PostgreSQL servers (shared with other users)."""
    used = {"rabbitmq": 0.0, "postgresql": 0.0}
    for proc in psutil.process_iter(["name", "username", "cpu_times"]):
        info = proc.info
        times = info.get("cpu_times")
        if times is None:
            continue
        if info.get("username") == "rabbitmq" and (info.get("name") or "").startswith("beam"):
            used["rabbitmq"] += times.user + times.system
        elif info.get("username") == "postgres":
            used["postgresql"] += times.user + times.system
    return used
