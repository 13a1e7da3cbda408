"""The RabbitMQ definitions: equal to the code, importable, and least-privilege when each role connects for real.

The checked-in file is imported once per module into a private virtual host (users renamed with a suffix),
then every role connects with its development password and tries what it must be able to do and what it
must not. The virtual host and users are deleted at the end.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pika
import pytest
from pika.exceptions import ChannelClosedByBroker

from deploy import generate
from deploy.broker import NAMESPACE, account_name, accounts, default_settings, definitions, dev_password
from schemas import SUBSCRIPTIONS
from schemas.catalog import EVENT_MODELS, PUBLICATIONS
from schemas.examples import example_deregistration, example_slice_report
from services.ledger.main import build as build_ledger
from services.registry import SERVICES, SLICES
from shared.codec import encode
from shared.consumer import full_topology
from shared.producer import Producer, RawMessage
from shared.settings import RuntimeSettings
from shared.testing import wait_until
from shared.testing.pipeline import RunningService
from shared.topology import Names, routing_key

NAMES = Names(NAMESPACE)
CHECKED_IN = generate.DEPLOY_DIR / generate.DEFINITIONS_FILE
ALL_KEYS = [routing_key(model.event_type) for model in EVENT_MODELS]
Action = Callable[[Any], object]


def _published_keys(role: str) -> set[str]:
    return {routing_key(model.event_type) for model in PUBLICATIONS.get(role, ())}


def _subscribed_keys(service: str) -> set[str]:
    return {routing_key(model.event_type) for model in SUBSCRIPTIONS[service]}


# ---- the file and the code --------------------------------------------------------------------------------
def test_checked_in_files_are_what_the_code_generates() -> None:
    assert generate.check() == [], "run `python -m deploy.generate` and commit the result"


def test_definitions_describe_exactly_the_topology_of_the_code() -> None:
    document = json.loads(CHECKED_IN.read_text())
    topology = full_topology(RuntimeSettings.model_construct(namespace=NAMESPACE))
    assert {(e["name"], e["type"]) for e in document["exchanges"]} == set(topology.exchanges)
    assert all(e["durable"] and not e["auto_delete"] for e in document["exchanges"])
    assert {q["name"]: q["arguments"] for q in document["queues"]} == {q.name: q.arguments for q in topology.queues}
    assert all(q["durable"] and q["arguments"]["x-queue-type"] == "quorum" for q in document["queues"])
    assert {(b["source"], b["destination"], b["routing_key"]) for b in document["bindings"]} == {
        (exchange, q.name, key) for q in topology.queues for exchange, key in q.bindings}
    assert {v["name"] for v in document["vhosts"]} == {NAMESPACE}


def test_definitions_hold_one_account_per_service_and_role() -> None:
    users = {u["name"] for u in json.loads(CHECKED_IN.read_text())["users"]}
    assert users == {account_name(NAMESPACE, role) for role in (*SERVICES, "upstream", "ops", "admin")}


def test_real_passwords_replace_every_development_hash() -> None:
    passwords = {a.name: uuid.uuid4().hex for a in accounts()}
    dev_hashes = {u["password_hash"] for u in definitions()["users"]}
    real_hashes = {u["password_hash"] for u in definitions(passwords=passwords)["users"]}
    assert len(real_hashes) == len(passwords) and not real_hashes & dev_hashes
    del passwords[account_name(NAMESPACE, "ops")]
    with pytest.raises(ValueError, match="erasure-ops"):
        definitions(passwords=passwords)


def test_passwords_file_renders_production_definitions(tmp_path: Path) -> None:
    secrets = tmp_path / "broker-passwords.env"
    secrets.write_text("# production\n" + "".join(f"{a.name}=pw-{a.name}\n" for a in accounts()))
    out = tmp_path / "definitions.json"
    assert generate.main(["--passwords", str(secrets), "--output", str(out)]) == 0
    assert out.stat().st_mode & 0o077 == 0, "the rendered file holds password hashes: owner-only"
    rendered = json.loads(out.read_text())
    assert rendered["queues"] == json.loads(CHECKED_IN.read_text())["queues"]


# ---- a real broker ------------------------------------------------------------------------------------------
@dataclass
class Imported:
    """The definitions as imported into a private virtual host; users carry a suffix."""

    host: str
    port: int
    vhost: str
    suffix: str

    def user(self, role: str) -> str:
        return f"{account_name(NAMESPACE, role)}-{self.suffix}"

    def url(self, role: str) -> str:
        password = dev_password(account_name(NAMESPACE, role))  # the checked-in hash, renamed user
        return f"amqp://{quote(self.user(role))}:{quote(password)}@{self.host}:{self.port}/{quote(self.vhost, safe='')}"

    def connect(self, role: str) -> pika.BlockingConnection:
        return pika.BlockingConnection(pika.URLParameters(self.url(role)))

    def run(self, role: str, action: Action) -> object:
        """Do something on a fresh confirming channel; ChannelClosedByBroker if the broker refuses it."""
        conn = self.connect(role)
        try:
            channel = conn.channel()
            channel.confirm_delivery()
            result = action(channel)
            channel.basic_qos(prefetch_count=1)  # a round trip: a refusal of the action has surely arrived
            return result
        finally:
            if conn.is_open:
                conn.close()

    def refused(self, role: str, action: Action) -> str:
        """The broker's 403 for an action; fails the test if the action was allowed."""
        with pytest.raises(ChannelClosedByBroker) as refusal:
            self.run(role, action)
        assert refusal.value.reply_code == 403, refusal.value
        return str(refusal.value.reply_text)

    def purge(self, queues: list[str]) -> None:
        def empty(channel: Any) -> None:
            for name in queues:
                channel.queue_purge(name)

        self.run("admin", empty)


def _rabbitmqctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["rabbitmqctl", "-q", *args], capture_output=True, text=True, timeout=60, check=False)


def _renamed(document: dict[str, Any], vhost: str, suffix: str) -> dict[str, Any]:
    users = {u["name"]: f"{u['name']}-{suffix}" for u in document["users"]}
    for user in document["users"]:
        user["name"] = users[user["name"]]
    for vh in document["vhosts"]:
        vh["name"] = vhost
    for key in ("permissions", "topic_permissions"):
        for entry in document[key]:
            entry["user"] = users[entry["user"]]
    for key in ("permissions", "topic_permissions", "queues", "exchanges", "bindings"):
        for entry in document[key]:
            entry["vhost"] = vhost
    return document


def _all_declared(imported: Imported, queues: list[str]) -> bool:
    try:
        imported.run("admin", lambda ch: [ch.queue_declare(name, passive=True) for name in queues])
    except (ChannelClosedByBroker, pika.exceptions.AMQPConnectionError):
        return False
    return True


@pytest.fixture(scope="module")
def imported(amqp_url: str) -> Iterator[Imported]:
    """The checked-in definitions in a private virtual host of the local broker (quorum queues made once)."""
    parsed = urlsplit(amqp_url)
    if not shutil.which("rabbitmqctl") or parsed.hostname not in ("127.0.0.1", "localhost"):
        pytest.skip("imports definitions with the local rabbitmqctl")
    if _rabbitmqctl("list_vhosts").returncode != 0:
        pytest.skip("rabbitmqctl cannot reach the local node from this user")
    suffix = uuid.uuid4().hex[:8]
    vhost = f"{NAMESPACE}-test-{suffix}"
    document = _renamed(json.loads(CHECKED_IN.read_text()), vhost, suffix)
    guest = _renamed({"topic_permissions": [], "queues": [], "exchanges": [], "bindings": [],
                      **json.loads((generate.DEPLOY_DIR / generate.DEV_GUEST_FILE).read_text())}, vhost, suffix)
    document["users"] += guest["users"]  # compose's dev guest, renamed, on the test vhost instead of /
    document["permissions"] += guest["permissions"]
    # The CLI may run as the rabbitmq user, which cannot read pytest's private temp directories (and its
    # 3.10 version does not read `-` as stdin): a readable file in the shared temp directory, deleted at once.
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(document, handle)
    path = Path(handle.name)
    try:
        path.chmod(0o644)
        result = _rabbitmqctl("import_definitions", str(path))
    finally:
        path.unlink()
    assert result.returncode == 0, f"the broker refused the definitions: {result.stderr}"
    broker = Imported(parsed.hostname or "127.0.0.1", parsed.port or 5672, vhost, suffix)
    try:
        queues = [q["name"] for q in document["queues"]]
        wait_until(lambda: _all_declared(broker, queues), timeout=60, interval=0.5,
                   what="the definition import (it runs asynchronously)")
        yield broker
    finally:
        _rabbitmqctl("delete_vhost", vhost)
        for user in document["users"]:
            _rabbitmqctl("delete_user", user["name"])


def test_compose_dev_guest_logs_in_with_guest(imported: Imported) -> None:
    url = f"amqp://guest-{imported.suffix}:guest@{imported.host}:{imported.port}/{quote(imported.vhost, safe='')}"
    conn = pika.BlockingConnection(pika.URLParameters(url))
    try:
        conn.channel().queue_declare(NAMES.queue("ledger"), passive=True)
    finally:
        conn.close()


def _publish(exchange: str, key: str, body: bytes = b"{}") -> Action:
    return lambda ch: ch.basic_publish(exchange, key, body, mandatory=True)


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_consumes_its_queue_and_publishes_what_it_reports(imported: Imported, service: str) -> None:
    imported.run(service, lambda ch: ch.basic_get(NAMES.queue(service)))
    for key in sorted(_published_keys(service)):
        imported.run(service, _publish(NAMES.events_exchange, key))
    for delay in default_settings().retry_delays:
        imported.run(service, _publish("", NAMES.retry_queue(service, delay)))
    imported.run(service, _publish(NAMES.dead_exchange, service))
    imported.run(service, lambda ch: ch.queue_bind(NAMES.queue(service), NAMES.events_exchange,
                                                   sorted(_subscribed_keys(service))[0]))
    imported.purge([q["name"] for q in definitions()["queues"]])


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_may_not_publish_events_it_does_not_own(imported: Imported, service: str) -> None:
    for key in sorted(set(ALL_KEYS) - _published_keys(service)):
        reason = imported.refused(service, _publish(NAMES.events_exchange, key))
        assert f"topic '{key}'" in reason


@pytest.mark.parametrize("service", [s for s in SLICES if "user.deregistered.v1" not in _published_keys(s)])
def test_a_slice_service_cannot_request_an_erasure(imported: Imported, service: str) -> None:
    imported.refused(service, _publish(NAMES.events_exchange, "user.deregistered.v1"))


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_cannot_touch_what_is_not_its_own(imported: Imported, service: str) -> None:
    other = next(s for s in SERVICES if s != service)
    own_dead = NAMES.dead_queue(service)
    other_queue = NAMES.queue(other)
    arguments = full_topology(default_settings()).queue(other_queue).arguments
    imported.refused(service, lambda ch: ch.basic_get(other_queue))
    imported.refused(service, lambda ch: ch.basic_get(own_dead))  # dead letters are for ops
    imported.refused(service, lambda ch: ch.queue_delete(other_queue))
    imported.refused(service, lambda ch: ch.queue_declare(other_queue, durable=True, arguments=arguments))
    imported.refused(service, lambda ch: ch.exchange_declare(NAMES.events_exchange, "topic", durable=True))
    imported.refused(service, lambda ch: ch.exchange_delete(NAMES.dead_exchange))
    imported.refused(service, lambda ch: ch.queue_bind(NAMES.queue(service), NAMES.dead_exchange, other))
    unsubscribed = sorted(set(ALL_KEYS) - _subscribed_keys(service))[0]
    imported.refused(service, lambda ch: ch.queue_bind(NAMES.queue(service), NAMES.events_exchange, unsubscribed))


def test_upstream_publishes_requests_and_purchases_but_reads_nothing(imported: Imported) -> None:
    for key in ("user.deregistered.v1", "purchase.completed.v1"):
        imported.run("upstream", _publish(NAMES.events_exchange, key))
    imported.refused("upstream", _publish(NAMES.events_exchange, "erasure.completed.v1"))
    imported.refused("upstream", _publish(NAMES.dead_exchange, "ledger"))
    imported.refused("upstream", _publish("", NAMES.queue("ledger")))
    for service in SERVICES:
        imported.refused("upstream", lambda ch, s=service: ch.basic_get(NAMES.queue(s)))
    imported.refused("upstream", lambda ch: ch.queue_declare("upstream-scratch", durable=True))
    imported.purge([q["name"] for q in definitions()["queues"]])


def test_ops_reads_dead_letters_and_replays_them_but_configures_nothing(imported: Imported) -> None:
    for service in SERVICES:
        imported.run("ops", lambda ch, s=service: ch.basic_get(NAMES.dead_queue(s)))
        imported.refused("ops", lambda ch, s=service: ch.basic_get(NAMES.queue(s)))
    imported.run("ops", _publish("", NAMES.queue("ledger")))  # replay goes through the default exchange
    imported.refused("ops", _publish(NAMES.events_exchange, "user.deregistered.v1"))
    imported.refused("ops", lambda ch: ch.queue_purge(NAMES.queue("ledger")))
    imported.refused("ops", lambda ch: ch.queue_delete(NAMES.dead_queue("ledger")))
    imported.purge([NAMES.queue("ledger")])


def _settings(imported: Imported, role: str, declare: str) -> RuntimeSettings:
    return RuntimeSettings(amqp_url=imported.url(role), namespace=NAMESPACE, declare=declare)


def _take(imported: Imported, role: str, queue: str) -> list[tuple[Any, bytes]]:
    def drain(channel: Any) -> list[tuple[Any, bytes]]:
        taken = []
        while (got := channel.basic_get(queue, auto_ack=True))[0] is not None:
            taken.append((got[1], got[2]))
        return taken

    return imported.run(role, drain)  # type: ignore[return-value]


def _wait_for(imported: Imported, role: str, queue: str, wanted: Callable[[Any, bytes], bool],
              what: str) -> list[tuple[Any, bytes]]:
    """Read a queue as a role until a wanted message shows up; return the wanted ones."""
    found: list[tuple[Any, bytes]] = []

    def arrived() -> bool:
        found.extend(m for m in _take(imported, role, queue) if wanted(*m))
        return bool(found)

    wait_until(arrived, what=what)
    return found


def _poison() -> RawMessage:
    return RawMessage(NAMES.events_exchange, "user.deregistered.v1", b"not json",
                      {"content_type": "application/cloudevents+json", "message_id": str(uuid.uuid4()),
                       "delivery_mode": 2, "timestamp": int(time.time())})


def test_the_ledger_runs_a_whole_erasure_under_least_privilege_accounts(imported: Imported, tmp_path: Path) -> None:
    """The ledger as erasure-ledger with ERASURE_DECLARE=own, then =none; producers as upstream and each slice."""
    database = f"sqlite:///{tmp_path}/ledger.db"
    ledger = RunningService(build_ledger(), _settings(imported, "ledger", "own"), database).start()
    try:
        settings = ledger.runner.settings
        request = example_deregistration("u-least", request_id=str(uuid.uuid4()))
        sign = {"source": "urn:test", "keyring": settings.keyring, "key_id": settings.signing_key_id}
        with Producer(imported.url("upstream"), exchange=NAMES.events_exchange) as upstream:
            upstream.publish(encode(request, **sign))
            upstream.publish_raw([_poison()])
        for service in SLICES:
            report = example_slice_report(service, "u-least", request_id=request.request_id)
            with Producer(imported.url(service), exchange=NAMES.events_exchange) as producer:
                producer.publish(encode(report, **sign))

        _wait_for(imported, "account", NAMES.queue("account"),
                  lambda props, _body: props.type == "se.loggamera.erasure.completed.v1",
                  what="ErasureCompleted, published by the ledger's outbox as erasure-ledger")
        [(properties, body)] = _wait_for(imported, "ops", NAMES.dead_queue("ledger"), lambda _p, _b: True,
                                         what="the poison message in the ledger's dead-letter queue, read as ops")
        assert body == b"not json" and properties.headers["x-error-kind"] == "signature"  # unsigned: never acted on
    finally:
        ledger.stop()
    RunningService(build_ledger(), _settings(imported, "ledger", "none"), database).start().stop()
    imported.purge([q["name"] for q in definitions()["queues"]])
