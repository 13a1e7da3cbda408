"""Prometheus metrics every service exposes; label values are bounded (service, type, outcome, kind)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EVENTS = Counter(
    "erasure_events_handled_total", "Deliveries settled, by outcome (ok, duplicate, retry, dead).",
    ["service", "event_type", "outcome"],
)
HANDLER_SECONDS = Histogram(
    "erasure_handler_seconds", "Time spent in a handler, per event type.", ["service", "event_type"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
RETRIES = Counter("erasure_retries_total", "Deliveries sent to a delay queue.", ["service", "tier"])
DEAD_LETTERS = Counter("erasure_dead_letters_total", "Deliveries dead-lettered, by kind.", ["service", "kind"])
INBOX_DUPLICATES = Counter("erasure_inbox_duplicates_total", "Redeliveries acked without effect.", ["service"])
BROKER_CONNECTED = Gauge(
    "erasure_broker_connected",
    "1 while a link to the broker is up: consumer = consuming its queue, outbox = channel in confirm mode.",
    ["service", "link"],
)
OUTBOX_BACKLOG = Gauge("erasure_outbox_backlog", "Events committed but not yet published.", ["service"])
BATCH_SIZE = Histogram(
    "erasure_batch_size", "Deliveries per database transaction.", ["service"],
    buckets=(1, 2, 5, 10, 25, 50, 100, 200, 500),
)
