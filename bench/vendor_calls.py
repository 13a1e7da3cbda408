"""Section 5f: a slice's erasures with its vendor calls made one at a time, and a batch's at once.

payment (PayPal: list the user's vault tokens, delete each) and bookkeeping (Visma: delete the customer, refused
for one with invoices, then read and anonymise it) make their vendor calls in outside steps, which the runtime
runs for a batch's deliveries on a thread pool before the batch's transaction (shared/runtime/reach.py). This
section takes each service alone through the same erasures twice in one run, with `outside_concurrency` 1 (the
calls one after another, as the handlers made them before) and the default 8, on the in-memory transport with
the vendor sandbox in a process of its own, and reports erasures/s and the service's CPU per erasure for both.

The sandbox answers on localhost in about a millisecond; a vendor's API over the internet takes far longer. For
the timed erasures it holds each answer back by ROUND_TRIP_S (100 ms, a short round trip from Sweden to a
payment or accounting API), so the figures say what the calls' waiting costs, as it would in production.
"""

from __future__ import annotations

import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.bookkeeping_scale import environment, sandbox_process
from schemas.examples import example_deregistration, example_purchase
from services.sandbox.control import SandboxControl
from services.vendors.rules import paypal_customer_id
from shared.service import Service
from shared.settings import RuntimeSettings
from shared.testing.memory import MemoryPipeline

DEFAULT = RuntimeSettings.model_fields["outside_concurrency"].default
ROUND_TRIP_S = 0.1


def _payment() -> Service[Any]:
    from services.payment.main import build

    return build()


def _bookkeeping() -> Service[Any]:
    from services.bookkeeping.main import build

    return build()


def _paypal_purchase(user_id: str) -> Any:
    refs = {"payer_id": f"PAYER-{user_id}", "order_id": f"ORDER-{user_id}", "capture_id": f"CAPTURE-{user_id}",
            "vault_token_ids": [f"tok-{user_id}"]}
    return example_purchase(user_id, payment={"method": "paypal", "paypal": refs})


SERVICES: dict[str, tuple[Callable[[], Service[Any]], Callable[[str], dict[str, str]]]] = {
    "payment": (_payment, lambda root: {"ERASURE_PAYMENT_PAYPAL_BASE_URL": f"{root}/paypal"}),
    "bookkeeping": (_bookkeeping, lambda root: {"ERASURE_BOOKKEEPING_VISMA_BASE_URL": f"{root}/visma",
                                                "ERASURE_BOOKKEEPING_VISMA_TOKEN_URL": f"{root}/visma/connect/token"}),
}


def _drain(name: str, erasures: int, concurrency: int, workdir: Path, root: str) -> dict[str, Any]:
    """Buy once per user (every purchase paid by PayPal with a vault token), then time the users' erasures."""
    build, env = SERVICES[name]
    run = uuid.uuid4().hex[:6]
    users = [f"vc-{run}-{i:05d}" for i in range(erasures + 10)]
    with SandboxControl(root) as sandbox:
        sandbox.seed({"paypal": {"vault": {paypal_customer_id(u): [f"tok-{u}"] for u in users}}})
    (workdir / f"{name}-{concurrency}").mkdir()
    pipeline = MemoryPipeline(workdir=workdir / f"{name}-{concurrency}", outside_concurrency=concurrency)
    try:
        with environment(env(root)):
            service = pipeline.start(build())
        pipeline.publish(*(_paypal_purchase(u) for u in users))
        now = datetime.now(UTC)
        events = [example_deregistration(u, request_id=str(uuid.uuid4()), requested_at=now) for u in users]
        pipeline.publish(*events[:10])  # connections and tokens: not part of the cost per erasure
        sent = pipeline.publish(*events[10:], run=False)
        with SandboxControl(root) as sandbox:
            sandbox.set_round_trip("all", ROUND_TRIP_S)
        try:
            wall, cpu = time.perf_counter(), time.process_time()
            pipeline.run(rounds=10_000)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        finally:
            with SandboxControl(root) as sandbox:
                sandbox.set_round_trip("all", 0)
        handled = all(service.handled(message.event_id) for message in sent)
    finally:
        pipeline.close()
    return {"erasures": erasures, "round_trip_ms": round(1000 * ROUND_TRIP_S), "seconds": round(wall, 2),
            "erasures_per_s": round(erasures / wall, 1),
            "cpu_ms_per_erasure": round(1000 * cpu / erasures, 2), "all_handled": handled}


def vendor_calls(erasures: int) -> dict[str, Any]:
    """Each service's erasures with its vendor calls one at a time, then a batch's at once (same run)."""
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="vendor-calls-") as workdir, sandbox_process(Path(workdir)) as root:
        for name in SERVICES:
            one = _drain(name, erasures, 1, Path(workdir), root)
            many = _drain(name, erasures, DEFAULT, Path(workdir), root)
            results[name] = {"one_at_a_time": one, f"{DEFAULT}_at_once": many,
                             "ratio": round(many["erasures_per_s"] / one["erasures_per_s"], 2)}
    return results


if __name__ == "__main__":  # `python -m bench.vendor_calls [erasures]`: this section alone
    import json
    import sys

    from bench.run import bench_keys

    with tempfile.TemporaryDirectory(prefix="vendor-calls-keys-") as keys:
        bench_keys(Path(keys))
        print(json.dumps(vendor_calls(int(sys.argv[1]) if len(sys.argv) > 1 else 200), indent=2))
