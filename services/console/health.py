"""The health page's numbers: each service's own /metrics (the same series alerts use), sampled over time.

A background thread scrapes every service's Prometheus endpoint (parsed with prometheus_client's parser) and
keeps a short history per service; throughput and dead-letter rate are the growth of the services' counters
between samples. Queue backlogs come from the broker. Charts are small inline SVGs rendered here.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from itertools import pairwise

import httpx
from prometheus_client.parser import text_string_to_metric_families

from shared.logging import get_logger

log = get_logger(__name__)
HISTORY = 120  # samples kept per service (10 minutes at the default 5 s)


@dataclass(frozen=True)
class Sample:
    """One scrape of one service: its broker links, outbox backlog and counters; `up` False if unreachable."""

    at: float
    up: bool
    links: dict[str, float] = field(default_factory=dict)
    outbox_backlog: float = 0.0
    handled: float = 0.0
    dead: float = 0.0


def parse(service: str, text: str, at: float) -> Sample:
    """Read the runtime's metrics of one service from a Prometheus exposition."""
    links: dict[str, float] = {}
    backlog = handled = dead = 0.0
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.labels.get("service") != service:
                continue
            if s.name == "erasure_broker_connected":
                links[s.labels.get("link", "")] = s.value
            elif s.name == "erasure_outbox_backlog":
                backlog = s.value
            elif s.name == "erasure_events_handled_total":
                handled += s.value
            elif s.name == "erasure_dead_letters_total":
                dead += s.value
    return Sample(at, True, links, backlog, handled, dead)


def rate(history: list[Sample], attr: str) -> list[float]:
    """Per-second growth of a counter between consecutive samples (a restart's reset counts as 0)."""
    rates = []
    for before, after in pairwise(history):
        span = after.at - before.at
        grew = getattr(after, attr) - getattr(before, attr)
        rates.append(max(0.0, grew) / span if span > 0 and before.up and after.up else 0.0)
    return rates


class Sampler:
    """Scrapes every service's /metrics now and then; pages read the history it keeps."""

    def __init__(self, urls: dict[str, str], every_s: float) -> None:
        self.urls = dict(urls)
        self.every_s = every_s
        self._history: dict[str, deque[Sample]] = {s: deque(maxlen=HISTORY) for s in urls}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._http = httpx.Client(timeout=httpx.Timeout(2.0, connect=1.0))

    def sample_once(self) -> None:
        for service, url in self.urls.items():
            now = time.time()
            try:
                resp = self._http.get(url)
                resp.raise_for_status()
                sample = parse(service, resp.text, now)
            except (httpx.HTTPError, ValueError) as exc:
                log.debug("metrics unreachable", service=service, error=type(exc).__name__)
                sample = Sample(now, False)
            with self._lock:
                self._history[service].append(sample)

    def history(self, service: str) -> list[Sample]:
        with self._lock:
            return list(self._history.get(service, ()))

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample_once()
            self._stop.wait(self.every_s)

    def start(self) -> Sampler:
        self._thread = threading.Thread(target=self._run, name="console-metrics", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._http.close()


def sparkline(values: list[float], *, width: int = 160, height: int = 32, label: str) -> str:
    """A small SVG line chart of values (oldest left), labelled for screen readers; empty data draws a rule."""
    from html import escape

    top = max(values) if values and max(values) > 0 else 1.0
    step = width / max(1, len(values) - 1)
    points = " ".join(f"{i * step:.1f},{height - 2 - (v / top) * (height - 4):.1f}" for i, v in enumerate(values))
    if not values:
        points = f"0,{height - 2} {width},{height - 2}"
    return (f'<svg class="spark" role="img" aria-label="{escape(label)}" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg"><title>{escape(label)}</title>'
            f'<polyline fill="none" stroke="currentColor" stroke-width="1.5" points="{points}"/></svg>')
