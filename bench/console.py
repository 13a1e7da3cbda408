"""Bench section `console`: the console's server time for the request list and one request, 100k requests.

Fills a ledger database with requests as the ledger writes them (slice rows, receipt chains made by the
ledger's own `receipt.link`), then times the console's pages in-process through Starlette's test client
(server time: routing, query, template; no network), on SQLite and, when one answers, PostgreSQL.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, insert

from schemas import SLICE_SERVICES
from services.ledger.models import ErasureRequest, ReceiptEntry, SliceReport
from services.ledger.receipt import link, opening_hash

BATCH = 2000


def _report(request_id: str, user_id: str, service: str, at: datetime) -> dict[str, Any]:
    retained = [{"category": "sales transaction details", "legal_basis": "Bokföringslagen (1999:1078) 7 kap. 2 §",
                 "retain_until": "2033-12-31", "held_by": "Visma eAccounting"}] if service == "bookkeeping" else []
    return {"request_id": request_id, "user_id": user_id, "service": service,
            "outcome": "retained" if retained else "erased", "erased": ["contact details"], "retained": retained,
            "recipients_notified": ["Visma eAccounting"] if retained else [], "reported_at": at.isoformat(),
            "replay": False}


def fill_ledger(engine: Engine, count: int, *, now: datetime, seed: int = 7, overdue_share: float = 0.05,
                open_share: float = 0.2) -> list[str]:
    """Write `count` requests: most complete with a full receipt, some open (a few past due); return their ids."""
    rng = random.Random(seed)
    ids: list[str] = []
    requests: list[dict[str, Any]] = []
    slices: list[dict[str, Any]] = []
    entries: list[dict[str, Any]] = []

    def flush() -> None:
        with engine.begin() as conn:
            if requests:
                conn.execute(insert(ErasureRequest), requests)
            if slices:
                conn.execute(insert(SliceReport), slices)
            if entries:
                conn.execute(insert(ReceiptEntry), entries)
        requests.clear()
        slices.clear()
        entries.clear()

    for i in range(count):
        request_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        user_id = f"u-{i:07d}"
        roll = rng.random()
        is_open = roll < open_share
        overdue = roll < overdue_share
        opened = now - timedelta(days=40 if overdue else rng.uniform(0, 29), seconds=rng.uniform(0, 3600))
        requested = opened - timedelta(seconds=1)
        due = requested + timedelta(days=30)
        reported = SLICE_SERVICES[: rng.randrange(0, len(SLICE_SERVICES))] if is_open else SLICE_SERVICES
        prev = opening_hash(request_id, user_id, "user_request", requested)
        seq = 0
        for position, service in enumerate(SLICE_SERVICES):
            at = opened + timedelta(seconds=position + 1)
            report = _report(request_id, user_id, service, at) if service in reported else None
            slices.append({"request_id": request_id, "service": service, "position": position,
                           "outcome": report["outcome"] if report else None,
                           "reported_at": at if report else None, "recorded_at": at if report else None,
                           "report": report})
            if report is not None:
                seq += 1
                entry = link(prev, seq, service, report)
                entries.append({"request_id": request_id, "seq": entry.seq, "service": service,
                                "payload": entry.payload, "prev_hash": entry.prev_hash,
                                "entry_hash": entry.entry_hash, "recorded_at": at})
                prev = entry.entry_hash
        done = not is_open
        requests.append({"request_id": request_id, "user_id": user_id, "reason": "user_request",
                         "requested_at": requested, "opened_at": opened, "opened_by": "deregistration",
                         "due_at": due, "replay": False, "original_request_id": None,
                         "status": "complete" if done else "open",
                         "completed_at": opened + timedelta(seconds=10) if done else None,
                         "receipt_hash": prev if done else None})
        ids.append(request_id)
        if len(requests) >= BATCH:
            flush()
    flush()
    return ids


def _p95(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def time_pages(client: Any, ids: list[str], *, rounds: int, seed: int = 11) -> dict[str, dict[str, float]]:
    """Server time of the list (first page, a deep page via its cursor, a filter) and of one request page."""
    rng = random.Random(seed)
    timings: dict[str, list[float]] = {"list_first": [], "list_deep": [], "list_overdue": [], "request": []}
    cursor = None
    for _ in range(rounds):
        for name, url in (("list_first", "/requests?state=all"), ("list_overdue", "/requests?state=open&flag=overdue")):
            start = time.perf_counter()
            resp = client.get(url)
            timings[name].append(time.perf_counter() - start)
            assert resp.status_code == 200, resp.status_code
        deep = f"/requests?state=all&after={cursor}" if cursor else "/requests?state=all"
        start = time.perf_counter()
        resp = client.get(deep)
        timings["list_deep"].append(time.perf_counter() - start)
        assert resp.status_code == 200
        marker = 'rel="next" href="'
        if marker in resp.text:
            cursor = resp.text.split(marker, 1)[1].split('"', 1)[0].rsplit("after=", 1)[1]
        start = time.perf_counter()
        resp = client.get(f"/requests/{rng.choice(ids)}")
        timings["request"].append(time.perf_counter() - start)
        assert resp.status_code == 200
    return {name: {"p50_ms": round(sorted(v)[len(v) // 2] * 1000, 2), "p95_ms": round(_p95(v) * 1000, 2),
                   "n": len(v)} for name, v in timings.items()}


def main() -> None:  # pragma: no cover - run by `python -m bench.console`
    print(json.dumps({"now": datetime.now(UTC).isoformat()}))
