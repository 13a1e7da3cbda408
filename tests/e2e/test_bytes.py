"""Erasure reaches the disk: no byte of an erased user is left in any file the pipeline writes, its logs or its dead
letters; a backup restored after the erasure reveals nothing of them, while everyone else stays readable."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import sqlite3
import string
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pika
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from schemas import PurchaseCompleted
from schemas.examples import example_deregistration, example_purchase
from services.ledger.replay import replay_request_id
from services.registry import SERVICES, load
from services.sandbox import Sandbox
from shared.testing import Pipeline, RunningService, wait_until
from shared.testing.plugin import PIPELINE_SETTINGS
from shared.topology import Names
from tests.chaos.harness import PostgresCluster, RabbitNode, private_postgres, private_rabbit
from tests.flows import FORWARDING, buy, completed, point_at_sandbox, run_cli, start_all, summary, url_of

ERASED, KEPT = 2, 1


def _letters(n: int = 8) -> str:
    return "".join(secrets.choice(string.ascii_lowercase) for _ in range(n))


def person(index: int) -> PurchaseCompleted:
    """A purchase by a buyer whose every personal value is unique to this run (so any hit is theirs)."""
    tag = _letters()
    user_id = f"u-bytes-{tag}"
    purchase = example_purchase(user_id, newsletter_consent=True)
    customer = purchase.customer.model_copy(update={
        "name": f"Åsa Bytesdotter{tag.capitalize()}",
        "email": f"bytes.{tag}@kund.loggamera.se",
        "phone": f"+4670174069{index}",
        "address": purchase.customer.address.model_copy(update={"street": f"Östra Långgatan {tag} {index + 1}"}),
    })
    return purchase.model_copy(update={"customer": customer})


def needles(purchase: PurchaseCompleted) -> dict[str, list[bytes]]:
    """Each personal value of the buyer in every encoding it could take on disk: UTF-8 and JSON-escaped."""
    c = purchase.customer
    phone = c.phone or ""
    values = {"e-mail": [c.email], "name": [c.name], "street": [c.address.street],
              "phone": [phone, phone.replace("+46", "0")]}
    return {what: sorted({form for v in spelled for form in (v.encode(), json.dumps(v)[1:-1].encode())})
            for what, spelled in values.items()}


def files_under(*roots: Path) -> Iterator[Path]:
    for root in roots:
        if root.is_file():
            yield root
        elif root.is_dir():
            yield from (p for p in root.rglob("*") if p.is_file())


def byte_hits(blobs: Iterable[tuple[str, bytes]], wanted: dict[str, list[bytes]]) -> list[tuple[str, str]]:
    """(where, what) for every blob that holds any form of a wanted value."""
    return [(where, what) for where, blob in blobs for what, forms in wanted.items()
            if any(form in blob for form in forms)]


def file_blobs(paths: Iterable[Path]) -> Iterator[tuple[str, bytes]]:
    for path in paths:
        try:
            yield str(path), path.read_bytes()
        except OSError:  # a file removed while we walk (a PostgreSQL temp file): nothing left to read
            continue


@pytest.fixture(scope="module")
def own_postgres() -> Iterator[PostgresCluster]:
    """A PostgreSQL cluster of our own (as the fault suite starts it), so that its files can be read."""
    with private_postgres("reading a cluster's files") as cluster:
        yield cluster


@pytest.fixture(params=["sqlite", "postgresql"])
def disk(request: pytest.FixtureRequest, amqp_url: str, erasure_namespace: str, tmp_path: Path,
         monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Pipeline, dict[str, RunningService], Sandbox, Path]]:
    """The whole pipeline on SQLite files under tmp_path, or on a private PostgreSQL cluster; and the directory
    whose files it writes."""
    cluster = request.getfixturevalue("own_postgres") if request.param == "postgresql" else None
    pipeline = Pipeline(amqp_url, workdir=tmp_path, namespace=erasure_namespace, keep_namespace=True,
                        postgres_admin_url=cluster.admin_url if cluster else None, **PIPELINE_SETTINGS)
    pipeline.purge()
    with Sandbox() as sandbox:
        point_at_sandbox(sandbox, monkeypatch)
        running = {name: pipeline.start(load(name), http_port=0 if name == "account" else None)
                   for name in SERVICES}
        try:
            yield pipeline, running, sandbox, (cluster.root / "data") if cluster else tmp_path
        finally:
            pipeline.close()


def _checkpoint(pipeline: Pipeline) -> None:
    """Put everything committed into the files we read: PostgreSQL's CHECKPOINT, SQLite's WAL as it is."""
    if pipeline.postgres_admin_url:
        engine = create_engine(pipeline.postgres_admin_url, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(text("CHECKPOINT"))
        engine.dispose()


def test_erased_users_leave_no_byte_on_disk_in_logs_or_dead_letters(
    disk: tuple[Pipeline, dict[str, RunningService], Sandbox, Path], capfd: pytest.CaptureFixture[str]
) -> None:
    pipeline, running, sandbox, root = disk
    people = [person(i) for i in range(ERASED + KEPT)]
    for purchase in people:
        buy(pipeline, sandbox, running, purchase)
    erased, kept = people[:ERASED], people[ERASED:]
    requests = [example_deregistration(p.user_id, request_id=str(uuid.uuid4())) for p in erased]
    pipeline.publish(*requests)
    for sent in requests:
        completed(running["ledger"], str(sent.request_id))
    time.sleep(0.5)  # the journal wipe runs after the batch's commit
    _checkpoint(pipeline)

    keys_db = Path(make_url(os.environ["ERASURE_KEYS_DATABASE_URL"]).database or "")
    files = sorted(set(files_under(root, keys_db, Path(f"{keys_db}-wal"), Path(f"{keys_db}-shm"))))
    assert any(p.name.endswith("-wal") or "pg_wal" in p.parts for p in files), "journals are among the files"
    names = Names(pipeline.settings.namespace)
    dead = [(f"dead letter {q}", bytes(m.body)) for s in SERVICES
            for q in [names.dead_queue(s)] for m in pipeline.take(q, ack=False)]
    captured = capfd.readouterr()
    logs = [("log output", (captured.out + captured.err).encode())]
    blobs = list(file_blobs(files)) + dead + logs

    # The scan can fail: what the law makes us keep in clear (the purchase id of a sale) is found on disk.
    control = {"retained purchase id": [erased[0].purchase_id.encode()]}
    assert byte_hits(file_blobs(files), control), "the scan finds a value planted in the files"
    for purchase in erased:
        assert byte_hits(blobs, needles(purchase)) == [], f"{purchase.user_id} is still on disk"
    # Everyone's personal data is sealed at rest: not even a user still with us is in clear.
    for purchase in kept:
        assert byte_hits(file_blobs(files), needles(purchase)) == []
    print(f"byte scan: {len(files)} files, {sum(len(b) for _, b in blobs)} bytes, "
          f"{len(erased)} erased users x {sum(len(f) for f in needles(erased[0]).values())} forms: 0 hits")


class Backup:
    """Every slice's database copied before an erasure, and put back after it, as each backend does it. The
    ledger (the record of what was erased, which replay reads) and the key store are not rolled back."""

    def __init__(self, pipeline: Pipeline, running: dict[str, RunningService]) -> None:
        self.pipeline = pipeline
        self.urls = {name: service.engine.url for name, service in running.items()}
        self.restored = [name for name in self.urls if name != "ledger"]

    def _admin(self, *statements: str) -> None:
        engine = create_engine(self.pipeline.postgres_admin_url or "", isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            for statement in statements:
                conn.execute(text(statement))
        engine.dispose()

    def take(self) -> None:
        for url in (self.urls[name] for name in self.restored):
            if self.pipeline.postgres_admin_url:
                self._admin(f'CREATE DATABASE "{url.database}_backup" TEMPLATE "{url.database}"')
            else:
                with sqlite3.connect(str(url.database)) as source, \
                        sqlite3.connect(f"{url.database}.backup") as target:
                    source.backup(target)

    def restore(self) -> None:
        for url in (self.urls[name] for name in self.restored):
            if self.pipeline.postgres_admin_url:
                self._admin(f'DROP DATABASE "{url.database}" WITH (FORCE)',
                            f'CREATE DATABASE "{url.database}" TEMPLATE "{url.database}_backup"',
                            f'DROP DATABASE "{url.database}_backup"')
                continue
            for suffix in ("-wal", "-shm"):
                Path(f"{url.database}{suffix}").unlink(missing_ok=True)
            with sqlite3.connect(f"{url.database}.backup") as source, sqlite3.connect(str(url.database)) as target:
                source.backup(target)


def _contact(running: dict[str, RunningService], user_id: str) -> dict[str, object]:
    """What the services read back of a user's contact details (through their sealed columns)."""
    from services.account.models import User
    from services.bookkeeping.models import CustomerRecord

    with Session(running["account"].engine) as session:
        user = session.get(User, user_id)
        found: dict[str, object] = {"account": None if user is None else (user.name, user.email, user.street)}
    with Session(running["bookkeeping"].engine) as session:
        customer = session.get(CustomerRecord, user_id)
        found["bookkeeping"] = None if customer is None else (customer.name, customer.email, customer.phone)
    return found


def test_a_backup_restored_after_erasure_reveals_nothing_of_the_erased_and_replay_completes(
    erasure_pipeline: Pipeline, db_backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Sandbox() as sandbox:
        point_at_sandbox(sandbox, monkeypatch)
        running = {name: erasure_pipeline.start(load(name), http_port=0 if name == "account" else None)
                   for name in SERVICES}
        gone, stays = person(0), person(1)
        for purchase in (gone, stays):
            buy(erasure_pipeline, sandbox, running, purchase)
        backup = Backup(erasure_pipeline, running)
        for service in running.values():
            service.stop()
        backup.take()  # the nightly backup, taken before the user asked to be erased
        running = {name: erasure_pipeline.start(load(name), backup.urls[name].render_as_string(hide_password=False),
                                                http_port=0 if name == "account" else None) for name in SERVICES}
        since = datetime.now(UTC) - timedelta(minutes=1)
        request = example_deregistration(gone.user_id, request_id=str(uuid.uuid4()))
        erasure_pipeline.publish(request)
        completed(running["ledger"], str(request.request_id))

        for service in running.values():
            service.stop()
        backup.restore()
        running = {name: erasure_pipeline.start(load(name), backup.urls[name].render_as_string(hide_password=False),
                                                http_port=0 if name == "account" else None) for name in SERVICES}
        restored = _contact(running, gone.user_id)
        assert restored == {"account": (None, None, None), "bookkeeping": (None, None, None)}, \
            "the erased user's rows are back, and unreadable before any replay"
        c = stays.customer
        assert _contact(running, stays.user_id) == {"account": (c.name, c.email, c.address.street),
                                                    "bookkeeping": (c.name, c.email, c.phone)}

        ledger_url = backup.urls["ledger"].render_as_string(hide_password=False)
        replayed = run_cli(erasure_pipeline, "replay", "--since", since.isoformat(), "--json",
                           ERASURE_LEDGER_DATABASE_URL=ledger_url)
        assert replayed.exit_code == 0, replayed.output
        assert summary(replayed)["published"] == 1
        again = completed(running["ledger"], str(replay_request_id(str(request.request_id))))
        assert again.replay
        found = _contact(running, gone.user_id)
        assert found["account"] is None and found["bookkeeping"] in (None, (None, None, None))


def test_retention_purge_leaves_no_byte_of_the_purged_sales_in_the_sqlite_files(tmp_path: Path) -> None:
    """Retained sales are kept in clear by law; the purge at the end of retention must reach the disk too."""
    from datetime import date
    from decimal import Decimal

    from sqlalchemy import insert

    from services.bookkeeping.models import MIGRATIONS, Sale, metadata
    from services.bookkeeping.purge import run_purge
    from shared.db import ensure_schema, make_engine

    url = f"sqlite:///{tmp_path / 'bookkeeping.db'}"
    engine = make_engine(url)
    ensure_schema(engine, metadata, MIGRATIONS)
    marker, kept = f"P-PURGED-{_letters(12)}", f"P-KEPT-{_letters(12)}"
    common = {"user_id": "u-purged", "sale_date": date(2026, 3, 2), "fiscal_year_end": date(2026, 12, 31),
              "currency": "SEK", "total_excl_vat": Decimal("100.00"), "vat_amount": Decimal("25.00"),
              "total_incl_vat": Decimal("125.00"), "visma_invoice_id": None}
    with engine.begin() as conn:
        conn.execute(insert(Sale), [
            {**common, "purchase_id": marker, "lines": [{"note": marker}], "retain_until": date(2033, 12, 31)},
            {**common, "purchase_id": kept, "lines": [], "retain_until": date(2034, 12, 31)},
        ])
    engine.dispose()
    files = lambda: list(file_blobs(files_under(tmp_path)))  # noqa: E731 - read again after the purge
    assert byte_hits(files(), {"sale": [marker.encode()]}), "the retained sale is on disk before its purge"
    assert run_purge(url, today=date(2034, 1, 1)) == 1
    assert byte_hits(files(), {"sale": [marker.encode()]}) == []
    assert byte_hits(files(), {"kept": [kept.encode()]}), "the sale still within retention stays readable"


# The broker's own files: a private RabbitMQ node (as the fault suite starts it) that the whole pipeline runs on.

@pytest.fixture
def own_broker() -> Iterator[RabbitNode]:
    """A RabbitMQ node of our own, so that its data directory can be read; removed with its data afterwards."""
    with private_rabbit("reading a broker node's files", prefix="bytes-rabbit-", root=True) as node:
        yield node


@contextlib.contextmanager
def on_node(node: RabbitNode, workdir: Path, monkeypatch: pytest.MonkeyPatch, *, seal_contacts: bool = True
            ) -> Iterator[tuple[Pipeline, dict[str, RunningService], Sandbox]]:
    """The whole pipeline on SQLite under `workdir` and on `node`, upstream events sealed as `erasure publish`
    sends them; on exit the services stop and the node's queues are left as they are, to be read."""
    pipeline = Pipeline(node.url, workdir=workdir, namespace=f"bytes{uuid.uuid4().hex[:8]}", keep_namespace=True,
                        seal_contacts=seal_contacts, **PIPELINE_SETTINGS)
    with Sandbox() as sandbox:
        point_at_sandbox(sandbox, monkeypatch)
        try:
            yield pipeline, start_all(pipeline), sandbox
        finally:
            pipeline.close(leave_broker=True)


def node_blobs(node: RabbitNode) -> list[tuple[str, bytes]]:
    """Every file of the node (its mnesia directory: quorum-queue WAL and segments, message stores; its log)."""
    return [(str(Path(where).relative_to(node.root)), blob) for where, blob in file_blobs(files_under(node.root))]


def _ledger_done(ledger: RunningService, status_of: Callable[[Any, str], Any], request_id: str) -> None:
    def check() -> bool:
        with Session(ledger.engine) as session:
            found = status_of(session, request_id)
        return found is not None and found.status == "complete"

    wait_until(check, timeout=60, what=f"request {request_id} complete")


def access_and_correction(pipeline: Pipeline, running: dict[str, RunningService], user_id: str, email: str) -> None:
    """An access request (every slice answers with what it holds) and a correction of the e-mail, both complete."""
    from services.ledger.access import access_status
    from services.ledger.correction import correction_status

    ledger_url = url_of(running["ledger"])
    asked = run_cli(pipeline, "access", "request", "--user", user_id, ERASURE_LEDGER_DATABASE_URL=ledger_url)
    assert asked.exit_code == 0, asked.output
    _ledger_done(running["ledger"], access_status, asked.stdout.strip())
    fixed = run_cli(pipeline, "correction", "request", "--user", user_id, "--email", email,
                    ERASURE_LEDGER_DATABASE_URL=ledger_url)
    assert fixed.exit_code == 0, fixed.output
    _ledger_done(running["ledger"], correction_status, fixed.stdout.strip())


def test_erased_users_leave_no_byte_in_the_broker_nodes_files(
    own_broker: RabbitNode, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    people = [person(i) for i in range(ERASED + KEPT)]
    erased = people[:ERASED]
    corrected = f"bytes.corrected.{_letters()}@kund.loggamera.se"
    with on_node(own_broker, tmp_path, monkeypatch) as (pipeline, running, sandbox):
        for purchase in people:
            buy(pipeline, sandbox, running, purchase)
        access_and_correction(pipeline, running, erased[0].user_id, corrected)
        requests = [example_deregistration(p.user_id, request_id=str(uuid.uuid4())) for p in erased]
        pipeline.publish(*requests)
        for sent in requests:
            completed(running["ledger"], str(sent.request_id))
    own_broker.stop(keep_data=True)  # what the node holds in memory reaches its files
    blobs = node_blobs(own_broker)

    control = {"user id": [erased[0].user_id.encode()], "purchase id": [erased[0].purchase_id.encode()]}
    assert {what for _, what in byte_hits(blobs, control)} == set(control), "the scan finds what is sent in clear"
    wanted = [needles(p) for p in erased]
    wanted[0]["corrected e-mail"] = [corrected.encode()]
    for purchase, forms in zip(erased, wanted, strict=True):
        assert byte_hits(blobs, forms) == [], f"{purchase.user_id} is in the broker's files"
    print(f"broker byte scan: {len(blobs)} files, {sum(len(b) for _, b in blobs)} bytes, {len(erased)} erased "
          f"users, {sum(len(f) for forms in wanted for f in forms.values())} forms in all: 0 hits")


def through_quorum_queue(node: RabbitNode, queue: str, *, messages: int, size: int, declare: bool = False) -> int:
    """Send `messages` other messages of `size` bytes through a quorum queue of the node, 64 at a time: published
    with confirms, then consumed and acked as a slice does. Traffic that moves the node's Raft log on, as later
    events would; the bytes sent."""
    conn = pika.BlockingConnection(pika.URLParameters(node.url))
    try:
        channel = conn.channel()
        channel.confirm_delivery()
        if declare:
            channel.queue_declare(queue, durable=True, arguments={"x-queue-type": "quorum"})
        body = secrets.token_bytes(size)
        for start in range(0, messages, 64):
            batch = min(64, messages - start)
            for _ in range(batch):
                channel.basic_publish("", queue, body, pika.BasicProperties(delivery_mode=2), mandatory=True)
            for _ in range(batch):
                method, _properties, _body = channel.basic_get(queue)
                assert method is not None, f"{queue} lost a message"
                channel.basic_ack(method.delivery_tag)
    finally:
        conn.close()
    return messages * size


def test_a_contact_published_in_clear_stays_in_the_broker_nodes_files_until_its_log_moves_on(
    own_broker: RabbitNode, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The contrast: a purchase sent in clear (still accepted) leaves the buyer's e-mail in the node's files after
    every slice consumed it; how long it stays there is measured here (docs/PRIVACY.md cites it)."""
    buyer = person(0)
    email = {"e-mail": [buyer.customer.email.encode()]}
    seen: dict[str, list[str]] = {}

    def where(phase: str) -> list[str]:
        seen[phase] = sorted({path.rsplit("/", 2)[-2] + "/" + path.rsplit("/", 1)[-1]
                              for path, _ in byte_hits(node_blobs(own_broker), email)})
        print(f"{phase}: the e-mail is in {seen[phase] or 'no file'}")
        return seen[phase]

    with on_node(own_broker, tmp_path, monkeypatch, seal_contacts=False) as (pipeline, running, sandbox):
        buy(pipeline, sandbox, running, buyer)
        names = Names(pipeline.namespace)
    assert where("consumed by every slice"), "a body sent in clear is in the node's files after consumption"
    for service in FORWARDING:
        through_quorum_queue(own_broker, names.queue(service), messages=1024, size=512)
    assert all(f.endswith(".wal") for f in where("1024 more messages through each slice's own queue")), \
        "the queue moving on does not take the body out of the node's write-ahead log"
    other = 0
    for mebibytes in (256, 600):  # the node rolls its write-ahead log over in between (raft.wal_max_size_bytes)
        other += through_quorum_queue(own_broker, f"{names.namespace}.filler", declare=True, size=256 * 1024,
                                      messages=(mebibytes * 1024 * 1024 - other) // (256 * 1024))
        where(f"{other / 2**20:.0f} MiB more through another quorum queue")
    moved = seen[f"{other / 2**20:.0f} MiB more through another quorum queue"]
    assert moved and all(f.endswith(".segment") for f in moved), \
        "once the log rolls over, the body is in the segment files of the queues that received it"
    for service in FORWARDING:
        through_quorum_queue(own_broker, names.queue(service), messages=1, size=512)
    assert where("then 1 more message through each slice's own queue") == [], \
        "once its queue has moved on, the segment holding the body is gone"
    own_broker.stop(keep_data=True)
    assert where("node stopped") == []
