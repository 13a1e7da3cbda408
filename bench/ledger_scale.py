"""Section 5d: the ledger's cost per complete erasure with a small and a large ledger behind it (data-size cost).

A scratch ledger database is filled as the ledger writes it (bench/console.py's `fill_ledger`: five slice rows
and a receipt chain per request), then the ledger's handlers take the deliveries of fresh erasures (the
deregistration and five slice reports each) through the runtime's stages on the in-memory transport, in
batches as the broker would hand them over: no broker in the measurement, only the ledger and its database.
"""

from __future__ import annotations

import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import uuid4

from sqlalchemy import create_engine

from bench.console import fill_ledger
from schemas import SLICE_SERVICES
from schemas.examples import example_deregistration, example_slice_report
from services.ledger.main import build
from shared.testing.memory import MemoryPipeline


def ledger_cost(database_url: str, filled: int, erasures: int) -> dict[str, Any]:
    """Fill the ledger at `database_url` with `filled` requests, then time `erasures` complete erasures."""
    with tempfile.TemporaryDirectory(prefix="ledger-scale-") as workdir:
        pipeline = MemoryPipeline(workdir=Path(workdir))
        try:
            ledger = pipeline.start(build(), database_url)  # migrates the database
            started = time.monotonic()
            engine = create_engine(database_url)
            try:
                fill_ledger(engine, filled, now=datetime.now(UTC))
            finally:
                engine.dispose()
            fill_s = time.monotonic() - started
            events: list[Any] = []
            for _ in range(erasures):
                request = example_deregistration(f"u-{uuid4().hex[:12]}", request_id=str(uuid4()),
                                                 requested_at=datetime.now(UTC))
                events += [request, *(example_slice_report(s, request.user_id, request_id=str(request.request_id),
                                                           reported_at=datetime.now(UTC)) for s in SLICE_SERVICES)]
            sent = pipeline.publish(*events, run=False)
            wall, cpu = time.perf_counter(), time.process_time()
            pipeline.run(rounds=10_000)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            handled = sum(ledger.handled(message.event_id) for message in sent[-6:])
        finally:
            pipeline.close()
    return {"requests": filled, "fill_seconds": round(fill_s, 1), "erasures": erasures,
            "ms_per_erasure": round(1000 * wall / erasures, 3), "cpu_ms_per_erasure": round(1000 * cpu / erasures, 3),
            "last_erasure_handled": handled == 6}
