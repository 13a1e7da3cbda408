"""Section 5e: bookkeeping's cost per erasure with a small and a large bookkeeping database behind it.

A scratch bookkeeping database (its tables and indexes from the service's own migrations) is filled as the
service writes it: one customer per user, contact details sealed under the user's own data key in a key store
of the same size, one to three sales each, and a share of users erased earlier (anonymised row, tombstone).
Once the databases have settled, `erasures` users drawn at random from the live ones are deregistered, and
bookkeeping's handlers take the deliveries through the runtime's stages on the in-memory transport, in batches
as the broker would hand them over. Visma is the vendor sandbox in a process of its own, holding those users'
customers and invoices, so each erasure makes the real calls (delete refused for a customer with invoices,
then read and anonymise) and the CPU measured here is bookkeeping's alone.
"""

from __future__ import annotations

import contextlib
import os
import random
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, func, insert, select, text
from sqlalchemy.pool import NullPool

from bench.procs import Child
from schemas.examples import example_customer, example_deregistration, example_purchase
from services.bookkeeping.main import build
from services.bookkeeping.models import CustomerRecord, Sale
from services.common.retention import fiscal_year_end_for, retain_until_for
from services.sandbox.control import SandboxControl
from services.vendors.rules import visma_customer_number
from shared.db import make_engine
from shared.keys import KeySettings, KeyStore, load_material, seal, use_key_store, user_subject
from shared.testing.memory import MemoryPipeline

BATCH = 5_000  # users per fill transaction (their keys made in one key-store transaction)
SEALED = ("name", "email", "phone", "street", "postal_code", "city")


def _sealer(column: str) -> Any:
    return CustomerRecord.__table__.c[column].type.context  # type: ignore[attr-defined]


def fill_bookkeeping(engine: Engine, store: KeyStore, count: int, *, seed: int = 11,
                     erased_share: float = 0.05) -> dict[str, int]:
    """Write `count` customers with their sales; return how many sales each live (not yet erased) user has."""
    rng = random.Random(seed)
    tables = CustomerRecord.metadata.tables
    customers_t, sales_t, tombstones_t = tables["customers"], tables["sales"], tables["tombstones"]
    contexts = {column: _sealer(column) for column in (*SEALED, "visma_customer_id")}
    lines = [line.model_dump(mode="json") for line in example_purchase().lines]
    totals = example_purchase()
    today = datetime.now(UTC).date()
    booked: dict[str, int] = {}
    for start in range(0, count, BATCH):
        users = [f"u-{i:07d}" for i in range(start, min(count, start + BATCH))]
        store.ensure_keys([user_subject(u) for u in users])
        customers, sales, tombstones = [], [], []
        for user_id in users:
            erased = rng.random() < erased_share
            subject = user_subject(user_id)
            person = example_customer(user_id)
            clear = {"name": person["name"], "email": person["email"], "phone": person["phone"],
                     **{k: v for k, v in person["address"].items() if k != "country"}}
            row: dict[str, Any] = {"user_id": user_id, "customer_number": visma_customer_number(user_id),
                                   "country": "SE", "company_name": None, "corporate_id": None}
            if erased:
                row |= {"visma_customer_id": None, "active": False, "anonymised_at": datetime.now(UTC),
                        **dict.fromkeys(SEALED)}
                tombstones.append({"user_id": user_id, "request_id": str(uuid.uuid4()),
                                   "erased_at": datetime.now(UTC)})
            else:
                row |= {"visma_customer_id": seal(subject, contexts["visma_customer_id"], visma_id(user_id)),
                        "active": True, "anonymised_at": None,
                        **{column: seal(subject, contexts[column], clear[column]) for column in SEALED}}
            customers.append(row)
            sold = rng.randint(1, 3)
            for n in range(sold):
                sale_date = today - timedelta(days=rng.randrange(1, 5 * 365))
                invoice_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
                sales.append({"purchase_id": f"P-{user_id}-{n}", "user_id": user_id, "visma_invoice_id": invoice_id,
                              "sale_date": sale_date, "fiscal_year_end": fiscal_year_end_for(sale_date),
                              "currency": "SEK", "total_excl_vat": totals.total_excl_vat,
                              "vat_amount": totals.vat_amount, "total_incl_vat": totals.total_incl_vat,
                              "lines": lines, "retain_until": retain_until_for(sale_date)})
            if not erased:
                booked[user_id] = sold
        with engine.begin() as conn:
            conn.execute(insert(customers_t), customers)
            conn.execute(insert(sales_t), sales)
            if tombstones:
                conn.execute(insert(tombstones_t), tombstones)
    return booked


def visma_id(user_id: str) -> str:
    """The Id Visma gave the user's customer (derived from the user id, so the fill keeps no list of them)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"visma-customer:{user_id}"))


def _visma_customer(user_id: str) -> dict[str, Any]:
    person = example_customer(user_id)
    address = person["address"]
    return {"Id": visma_id(user_id), "CustomerNumber": visma_customer_number(user_id), "Name": person["name"],
            "EmailAddress": person["email"], "MobilePhone": person["phone"], "InvoiceAddress1": address["street"],
            "InvoicePostalCode": address["postal_code"], "InvoiceCity": address["city"],
            "InvoiceCountryCode": address["country"], "CurrencyCode": "SEK"}


def _visma_company(booked: dict[str, int], users: list[str]) -> dict[str, Any]:
    """The sandbox seed of the drawn users: their customers, and their invoices (which forbid deleting them)."""
    customers = [_visma_customer(u) for u in users]
    invoices = [{"CustomerId": visma_id(u), "YourReference": f"P-{u}-{n}", "Rows": []}
                for u in users for n in range(booked[u])]
    return {"visma": {"customers": customers, "invoices": invoices}}


@contextlib.contextmanager
def sandbox_process(log_dir: Path) -> Iterator[str]:
    """The vendor sandbox in a child process; yields its root URL."""
    child = Child("bookkeeping-sandbox", ["-m", "services.sandbox", "--http-port", "0", "--smtp-port", "0"],
                  log_dir=log_dir)
    try:
        yield child.expect("sandbox http=", timeout=30).split()[0]
    finally:
        child.stop()


@contextlib.contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    previous = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def bookkeeping_cost(database_url: str, keys_url: str, filled: int, erasures: int, *,
                     seed: int = 11) -> dict[str, Any]:
    """Fill bookkeeping at `database_url` (keys at `keys_url`) with `filled` users, then time `erasures`."""
    settings = KeySettings()
    store = KeyStore(make_engine(keys_url), load_material(settings), cache_seconds=settings.cache_seconds)
    store.ensure_schema()
    previous_store = use_key_store(store)
    with tempfile.TemporaryDirectory(prefix="bookkeeping-scale-") as workdir, sandbox_process(Path(workdir)) as root:
        pipeline = MemoryPipeline(workdir=Path(workdir))
        try:
            with environment({"ERASURE_BOOKKEEPING_VISMA_BASE_URL": f"{root}/visma",
                               "ERASURE_BOOKKEEPING_VISMA_TOKEN_URL": f"{root}/visma/connect/token"}):
                bookkeeping = pipeline.start(build(), database_url)  # migrates the database
            started = time.monotonic()
            booked = fill_bookkeeping(bookkeeping.engine, store, filled, seed=seed)
            fill_s = time.monotonic() - started
            settle_s = settle(bookkeeping.engine, store.engine)
            warm = min(10, erasures)
            drawn = random.Random(seed + 1).sample(sorted(booked), warm + erasures)
            with SandboxControl(root) as sandbox:
                sandbox.seed(_visma_company(booked, drawn))
            store.forget_cache()  # as a service that starts cold: keys are read from the store as needed
            events = [example_deregistration(u, request_id=str(uuid.uuid4()), requested_at=datetime.now(UTC))
                      for u in drawn]
            pipeline.publish(*events[:warm])  # connections, the Visma token: not part of the cost per erasure
            sent = pipeline.publish(*events[warm:], run=False)
            before = server_blocks(bookkeeping.engine, store.engine)
            wall, cpu = time.perf_counter(), time.process_time()
            pipeline.run(rounds=10_000)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            blocks = {f"server_{k}_per_erasure": round((v - before[k]) / erasures, 1)
                      for k, v in server_blocks(bookkeeping.engine, store.engine).items()}
            checked = _check(bookkeeping.engine, drawn[warm:], sum(booked[u] for u in drawn[warm:]))
            handled = bookkeeping.handled(sent[-1].event_id)
            with SandboxControl(root) as sandbox:
                measured = {visma_id(u) for u in drawn[warm:]}
                at_visma = len({e["customer_id"] for e in sandbox.effects("visma")
                                if e["effect"] == "customer_replaced" and e["customer_id"] in measured})
        finally:
            pipeline.close()
            use_key_store(previous_store)
            store.engine.dispose()
    return {"users": filled, "sales": checked.pop("sales_in_database"), "fill_seconds": round(fill_s, 1),
            "settle_seconds": round(settle_s, 1),
            "erasures": erasures, "ms_per_erasure": round(1000 * wall / erasures, 3),
            "cpu_ms_per_erasure": round(1000 * cpu / erasures, 3), "last_erasure_handled": handled,
            "visma_customers_anonymised": at_visma, **checked, **blocks}


def settle(*engines: Engine) -> float:
    """Let the filled databases settle as ones grown over years have: on PostgreSQL the tables vacuumed and
    analysed (autovacuum's work) and checkpointed; then every write of the bulk load flushed to disk, so that the
    erasures timed next do not wait behind its writeback. Returns the seconds."""
    started = time.monotonic()
    for engine in engines:
        if engine.dialect.name == "postgresql":
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text("VACUUM ANALYZE"))
                conn.execute(text("CHECKPOINT"))
    os.sync()
    return time.monotonic() - started


def server_blocks(*engines: Engine) -> dict[str, int]:
    """PostgreSQL only: blocks the server read from outside its shared buffers and found in them, summed over
    the engines' databases (empty on SQLite). Their pooled connections are closed first, which makes their
    backends report what they did; the connections are opened again on next use."""
    names = [engine.url.database for engine in engines if engine.dialect.name == "postgresql"]
    if not names:
        return {}
    for engine in engines:
        engine.dispose()
    time.sleep(1.0)  # a closing backend reports its counts as it exits
    reader = create_engine(engines[0].url, poolclass=NullPool)
    try:
        with reader.connect() as conn:
            read, hit = conn.execute(text("SELECT sum(blks_read), sum(blks_hit) FROM pg_stat_database "
                                          "WHERE datname = ANY(:names)"), {"names": names}).one()
    finally:
        reader.dispose()
    return {"blocks_read": int(read), "blocks_hit": int(hit)}


def _check(engine: Engine, users: list[str], their_sales: int) -> dict[str, Any]:
    """What the erasures left: whether every drawn customer is anonymised and every one of their sales kept."""
    customers = CustomerRecord.__table__
    with engine.connect() as conn:
        anonymised = conn.execute(select(func.count()).select_from(customers).where(
            customers.c.user_id.in_(users), customers.c.name.is_(None), customers.c.email.is_(None),
            customers.c.active.is_(False))).scalar_one()
        kept = conn.execute(select(func.count()).select_from(Sale).where(Sale.user_id.in_(users))).scalar_one()
        total = conn.execute(select(func.count()).select_from(Sale)).scalar_one()
    return {"all_anonymised": anonymised == len(users), "all_sales_kept": kept == their_sales,
            "sales_in_database": total}

