"""Bench section `console`: the console's server time for the request list and one request, 100k requests.

Fills a ledger database with requests as the ledger writes them (slice rows, receipt chains made by the
ledger's own `receipt.link`), then times the console's pages in-process through Starlette's test client
(server time: routing, query, template; no network), on SQLite and, when one answers, PostgreSQL.
"""

from __future__ import annotations

import random
import re
import secrets
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, insert

from bench.env import BenchEnv
from bench.scales import Scale
from bench.stats import percentiles
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


def _server_ms(resp: Any) -> float:
    """The console's own time for a response, from its Server-Timing header."""
    return float(resp.headers["server-timing"].split("dur=", 1)[1])


def time_pages(client: Any, ids: list[str], *, rounds: int, seed: int = 11) -> dict[str, dict[str, float]]:
    """Server time of the list (first page, a deeper page each round via its cursor, the overdue filter) and
    of one random request's page, with the round trip over loopback alongside."""
    rng = random.Random(seed)
    server: dict[str, list[float]] = {"list_first": [], "list_next": [], "list_overdue": [], "request": []}
    trip: dict[str, list[float]] = {name: [] for name in server}
    cursor = ""
    for _ in range(rounds):
        urls = {"list_first": "/requests?state=all", "list_overdue": "/requests?state=open&flag=overdue",
                "list_next": f"/requests?state=all&after={cursor}" if cursor else "/requests?state=all",
                "request": f"/requests/{rng.choice(ids)}"}
        for name, url in urls.items():
            start = time.perf_counter()
            resp = client.get(url)
            trip[name].append((time.perf_counter() - start) * 1000)
            if resp.status_code != 200:
                raise RuntimeError(f"{url} answered {resp.status_code}")
            server[name].append(_server_ms(resp))
            if name == "list_next":
                found = re.search(r'rel="next" href="[^"]*after=([^"&]+)"', resp.text)
                cursor = found.group(1) if found else ""
    return {name: {"server": percentiles(server[name]), "round_trip": percentiles(trip[name]), "n": rounds}
            for name in server}


REQUESTS_BY_SCALE = {"tiny": 500, "small": 100_000, "full": 100_000}
ROUNDS_BY_SCALE = {"tiny": 20, "small": 150, "full": 300}


def section(env: BenchEnv, scale: Scale) -> dict[str, Any]:
    """Fill a ledger per backend, serve the console on it, and time its pages (target p95 < 200 ms)."""
    import httpx
    from argon2 import PasswordHasher

    from services.console.app import create_app
    from services.console.settings import ConsoleSettings, ConsoleUser
    from services.console.testing import serving
    from services.ledger.main import build
    from shared.db import ensure_schema, make_engine
    from shared.settings import RuntimeSettings

    count = REQUESTS_BY_SCALE.get(scale.name, 100_000)
    password = secrets.token_urlsafe(16)
    users = [ConsoleUser(name="bench", role="viewer", password_hash=PasswordHasher().hash(password))]
    backends = ["sqlite", *(["postgresql"] if env.postgres_admin_url else [])]
    out: dict[str, Any] = {"requests": count}
    for backend in backends:
        url = env.database_url(backend, "console_ledger")
        engine = make_engine(url)
        ledger = build()
        ensure_schema(engine, ledger.metadata, ledger.migrations)
        started = time.monotonic()
        ids = fill_ledger(engine, count, now=datetime.now(UTC))
        fill_s = round(time.monotonic() - started, 1)
        if backend == "postgresql":
            with engine.begin() as conn:
                conn.exec_driver_sql("ANALYZE")
        app = create_app(ConsoleSettings(users=users), RuntimeSettings(), ledger_url=url, account_url=None,
                         sample=False)
        with serving(app) as base, httpx.Client(base_url=base, timeout=60) as client:
            page = client.get("/login")
            token = re.search(r'name="csrf" value="([^"]+)"', page.text)
            assert token is not None
            client.post("/login", data={"csrf": token.group(1), "username": "bench", "password": password})
            out[backend] = {"fill_s": fill_s, **time_pages(client, ids, rounds=ROUNDS_BY_SCALE.get(scale.name, 150))}
        engine.dispose()
    return out
