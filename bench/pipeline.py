"""Sections 4 and 5: the six services as separate processes, the sandbox, and erasures from end to end.

A Deployment seeds the account database with the users to erase, gives a share of them a PayPal
purchase first (so their erasure calls Mailchimp, PayPal, Visma and an installer in the sandbox), then
publishes UserDeregistered and watches ErasureCompleted on a queue bound to `<ns>.events`.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kombu
import pika
import psutil

from bench import events as ev
from bench.env import BenchEnv
from bench.procs import Child, MemorySampler, Profile, listening_pid
from bench.stats import server_cpu_seconds
from schemas import ErasureCompleted
from schemas.examples import example_purchase
from services.account.main import build as build_account
from services.account.models import metadata as account_metadata
from services.account.seed import seed_users
from services.registry import SERVICES
from services.sandbox.server import Sandbox
from services.vendors.rules import paypal_customer_id
from shared.consumer import full_topology
from shared.db import ensure_schema, make_engine, session_factory
from shared.producer import Producer
from shared.topology import Names, declare, routing_key

BROKER_PROCESS = "broker"
"""The RabbitMQ node's process among a backlog's memory samples (not a service: the per-service limit skips it)."""

INSTALLERS = ("inst-1", "inst-2", "inst-3")


class Observer:
    """Receives every ErasureCompleted of a namespace and notes when each request completed."""

    def __init__(self, amqp_url: str, namespace: str) -> None:
        self.completed: dict[str, float] = {}
        self._arrivals: list[str] = []  # request ids in the order they completed, for wait() to read only new ones
        self._lock = threading.Lock()
        self._conn = pika.BlockingConnection(pika.URLParameters(amqp_url))
        self._channel = self._conn.channel()
        declared = self._channel.queue_declare("", exclusive=True, auto_delete=True)
        self.queue = declared.method.queue
        self._channel.queue_bind(self.queue, Names(namespace).events_exchange,
                                 routing_key=routing_key(ErasureCompleted.event_type))
        self._channel.basic_consume(self.queue, self._on_message, auto_ack=True)
        self._thread = threading.Thread(target=self._channel.start_consuming, name="bench-observer", daemon=True)
        self._thread.start()

    def _on_message(self, _ch: Any, _method: Any, _props: Any, body: bytes) -> None:
        now = time.monotonic()
        request_id = json.loads(body)["data"]["request_id"]
        with self._lock:
            if request_id not in self.completed:
                self.completed[request_id] = now
                self._arrivals.append(request_id)

    def count(self, request_ids: Sequence[str]) -> int:
        """How many of these requests have completed."""
        with self._lock:
            return sum(1 for r in request_ids if r in self.completed)

    def wait(self, request_ids: Sequence[str], timeout: float) -> bool:
        """Block until every request completed, or the timeout; say whether all did (each poll reads only the
        completions that arrived since the last, so a backlog of 100,000 costs no more per poll than one of 10)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            pending = set(request_ids) - self.completed.keys()
            seen = len(self._arrivals)
        while time.monotonic() < deadline:
            with self._lock:
                fresh, seen = self._arrivals[seen:], len(self._arrivals)
            pending.difference_update(fresh)
            if not pending:
                return True
            time.sleep(0.05)
        return False

    def close(self) -> None:
        """Stop consuming and disconnect."""
        self._conn.add_callback_threadsafe(self._channel.stop_consuming)
        self._thread.join(5)
        self._conn.close()


class Deployment:
    """The six services in their own processes on one backend, with an in-process sandbox and observer."""

    def __init__(self, env: BenchEnv, backend: str, log_dir: Path, *, tag: str = "",
                 extra_env: dict[str, str] | None = None) -> None:
        self.env = env
        self.backend = backend
        self.log_dir = log_dir
        self.extra_env = extra_env or {}
        self.namespace = env.namespace(f"e{backend[:2]}{tag}")
        self.settings = env.settings(self.namespace)
        self.sandbox = Sandbox()
        self.children: dict[str, Child] = {}
        self.urls: dict[str, str] = {}
        self.users: list[str] = []
        self._next_user = 0
        self.observer: Observer | None = None
        self.producer: Producer | None = None

    # ---- set-up ------------------------------------------------------------------------------------
    def start(self, users: int) -> None:
        """Databases (account seeded with `users` users), topology, sandbox, observer, then the services."""
        for name in SERVICES:
            self.urls[name] = self.env.database_url(self.backend, f"{self.namespace}_{name}")
        self.users = self._seed_accounts(users)
        topology = full_topology(self.settings)
        self.env.remember(topology)
        with kombu.Connection(self.env.amqp_url) as conn:
            declare(conn.channel(), topology)
        self.sandbox.start()
        self.observer = Observer(self.env.amqp_url, self.namespace)
        self.producer = Producer(self.env.amqp_url, exchange=Names(self.namespace).events_exchange).start()
        for name in SERVICES:
            self.children[name] = Child(f"{self.namespace}-{name}", ["-m", "services.cli", "run", name],
                                        log_dir=self.log_dir, env=self._service_env(name))
        self._wait_consuming(timeout=90)

    def add_replica(self, name: str) -> str:
        """Start one more process of a service on the same database and queue; the name it is counted under."""
        replica = f"{name}#{sum(1 for n in self.children if n.split('#')[0] == name) + 1}"
        self.children[replica] = Child(f"{self.namespace}-{replica}", ["-m", "services.cli", "run", name],
                                       log_dir=self.log_dir, env=self._service_env(name))
        names = Names(self.namespace)
        wanted = sum(1 for n in self.children if n.split("#")[0] == name)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            with kombu.Connection(self.env.amqp_url) as conn:
                if conn.channel().queue_declare(names.queue(name), passive=True).consumer_count >= wanted:
                    return replica
            time.sleep(0.2)
        raise RuntimeError(f"{replica} did not start consuming within 90s")

    def _seed_accounts(self, count: int) -> list[str]:
        engine = make_engine(self.urls["account"])
        try:
            ensure_schema(engine, account_metadata, build_account().migrations)
            with session_factory(engine, account_metadata)() as session, session.begin():
                seeded = seed_users(session, count)
        finally:
            engine.dispose()
        return [f"{seeded.id_prefix}-{i:07d}" for i in range(count)]

    def _service_env(self, name: str) -> dict[str, str]:
        root = self.sandbox.http_url
        return {
            "ERASURE_AMQP_URL": self.env.amqp_url,
            "ERASURE_NAMESPACE": self.namespace,
            f"ERASURE_{name.upper()}_DATABASE_URL": self.urls[name],
            f"ERASURE_{name.upper()}_HTTP_PORT": "0",
            "ERASURE_LOG_FORMAT": "json",
            "ERASURE_INSTALLER_SHARING_SANDBOX_URL": root,
            "ERASURE_INSTALLER_SHARING_DIRECTORY": "",
            "ERASURE_PAYMENT_PAYPAL_BASE_URL": f"{root}/paypal",
            "ERASURE_BOOKKEEPING_VISMA_BASE_URL": f"{root}/visma",
            "ERASURE_BOOKKEEPING_VISMA_TOKEN_URL": f"{root}/visma/connect/token",
            "ERASURE_NEWSLETTER_MAILCHIMP_BASE_URL": f"{root}/mailchimp/3.0",
            **self.extra_env,
        }

    def _wait_consuming(self, timeout: float) -> None:
        names = Names(self.namespace)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for child in self.children.values():
                if child.process.poll() is not None:
                    raise RuntimeError(f"{child.name} exited with {child.process.returncode}; {child.tail()}")
            with kombu.Connection(self.env.amqp_url) as conn:
                channel = conn.channel()
                if all(channel.queue_declare(names.queue(s), passive=True).consumer_count for s in SERVICES):
                    return
            time.sleep(0.2)
        raise RuntimeError(f"services did not start consuming within {timeout:.0f}s")

    # ---- work --------------------------------------------------------------------------------------
    def take_users(self, count: int) -> list[str]:
        """The next `count` seeded users nobody has erased yet."""
        taken = self.users[self._next_user:self._next_user + count]
        if len(taken) < count:
            raise ValueError(f"only {len(self.users) - self._next_user} seeded users left, {count} asked")
        self._next_user += count
        return taken

    def give_purchases(self, user_ids: Sequence[str], timeout: float) -> dict[str, Any]:
        """A PayPal purchase (vaulted token, newsletter consent, an installer) for each user; wait until handled."""
        if not user_ids:
            return {"purchases": 0, "seconds": 0.0, "complete": True}
        assert self.producer is not None
        self.sandbox.seed({"paypal": {"vault": {paypal_customer_id(u): [f"tok-{u}"] for u in user_ids}}})
        messages = []
        for i, user_id in enumerate(user_ids):
            purchase = example_purchase(
                user_id, purchase_id=f"P-{uuid.uuid4().hex[:12]}",
                installer={"id": INSTALLERS[i % len(INSTALLERS)], "name": "Exempel Elinstallation AB"},
                payment={"method": "paypal", "paypal": {
                    "payer_id": f"PAYER{i:08d}", "order_id": f"ORDER{i:012d}", "capture_id": f"CAPT{i:012d}",
                    "vault_token_ids": [f"tok-{user_id}"]}})
            messages.append(ev.signed(self.settings, purchase))
        started = time.monotonic()
        self.producer.publish_many(messages)
        complete = self._wait_inboxes(("installer_sharing", "payment", "bookkeeping", "newsletter"),
                                      len(user_ids), timeout)
        return {"purchases": len(user_ids), "seconds": round(time.monotonic() - started, 2), "complete": complete}

    def _wait_inboxes(self, services: Sequence[str], at_least: int, timeout: float) -> bool:
        from sqlalchemy import text

        engines = [make_engine(self.urls[s]) for s in services]
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                counts = []
                for engine in engines:
                    with engine.connect() as conn:
                        counts.append(conn.execute(text("select count(*) from inbox")).scalar_one())
                if min(counts) >= at_least:
                    return True
                time.sleep(0.5)
            return False
        finally:
            for engine in engines:
                engine.dispose()

    def _deregistration(self, user_id: str) -> tuple[str, Any]:
        request_id = uuid.uuid4()
        return str(request_id), ev.signed(self.settings, ev.deregistration(user_id, request_id))

    def erase_at_rate(self, user_ids: Sequence[str], rate: float, drain_timeout: float) -> dict[str, Any]:
        """Publish one erasure every 1/rate s (each confirmed); latency = ErasureCompleted seen - publish."""
        assert self.producer is not None and self.observer is not None
        prepared = [self._deregistration(u) for u in user_ids]
        sent: dict[str, float] = {}
        started = time.monotonic()
        for i, (request_id, message) in enumerate(prepared):
            pause = started + i / rate - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            sent[request_id] = time.monotonic()
            self.producer.publish(message)
        achieved = len(prepared) / (time.monotonic() - started)
        complete = self.observer.wait(list(sent), drain_timeout)
        latencies = sorted(1000 * (self.observer.completed[r] - t) for r, t in sent.items()
                           if r in self.observer.completed)
        return {"rate": rate, "achieved_rate": round(achieved, 1), "erasures": len(prepared),
                "completed": len(latencies), "complete": complete, "latencies_ms": latencies}

    def erase_backlog(self, user_ids: Sequence[str], cap_s: float, *, sample_memory: bool = False,
                      profile_dir: Path | None = None) -> dict[str, Any]:
        """Publish every erasure at once; measure until the last ErasureCompleted (or the cap)."""
        assert self.producer is not None and self.observer is not None
        prepared = [self._deregistration(u) for u in user_ids]
        request_ids = [r for r, _ in prepared]
        watched = {n: c.pid for n, c in self.children.items()}
        broker = listening_pid(urlsplit(self.env.amqp_url).port or 5672) if sample_memory else None
        if broker is not None:
            watched[BROKER_PROCESS] = broker  # the broker's resident memory over the same backlog
        sampler = MemorySampler(watched).start() if sample_memory else None
        spies = {n: Profile(c.pid, profile_dir / f"{self.namespace}-{n}.txt", rate=100, duration=min(cap_s, 20))
                 for n, c in self.children.items()} if profile_dir else {}
        cpu_before = {**self.cpu_seconds(), **server_cpu_seconds()}
        started = time.monotonic()
        for at in range(0, len(prepared), 2000):
            self.producer.publish_many([m for _, m in prepared[at:at + 2000]])
        published = time.monotonic() - started
        complete = self.observer.wait(request_ids, cap_s)
        done = [self.observer.completed[r] - started for r in request_ids if r in self.observer.completed]
        cpu_after = {**self.cpu_seconds(), **server_cpu_seconds()}
        cpu = {n: round(cpu_after[n] - cpu_before[n], 1) for n in cpu_before}
        memory = sampler.stop() if sampler else None
        profiles = {n: spy.finish(timeout=max(5.0, 30 - (time.monotonic() - started))) for n, spy in spies.items()}
        if not complete:
            self.purge()
        result: dict[str, Any] = {
            "erasures": len(prepared), "completed": len(done), "complete": complete,
            "publish_seconds": round(published, 2), "seconds": round(max(done, default=0.0), 2),
            "erasures_per_s": round(len(done) / max(done), 1) if done else 0.0,
            "completion_times_s": sorted(round(t, 3) for t in done),
            "cpu_seconds": cpu,
            "cpu_ms_per_erasure": {n: round(1000 * c / len(done), 2) for n, c in cpu.items()} if done else {},
        }
        if memory is not None and sampler is not None:
            result["memory"] = memory
            result["memory_series"] = sampler.samples
        if profiles:
            result["profiles"] = {n: p for n, p in profiles.items() if p}
        return result

    def cpu_seconds(self) -> dict[str, float]:
        """CPU seconds (user + system) each service process has used so far."""
        used = {}
        for name, child in self.children.items():
            try:
                times = psutil.Process(child.pid).cpu_times()
                used[name] = times.user + times.system
            except psutil.Error:
                used[name] = 0.0
        return used

    def purge(self) -> None:
        """Empty the service queues (after a phase that hit its cap)."""
        names = Names(self.namespace)
        with kombu.Connection(self.env.amqp_url) as conn:
            channel = conn.channel()
            for name in SERVICES:
                channel.queue_purge(names.queue(name))

    def stop(self) -> dict[str, int | None]:
        """Stop the services (SIGTERM: they finish in-flight work), the observer, producer and sandbox."""
        codes = {name: child.stop() for name, child in self.children.items()}
        if self.observer is not None:
            self.observer.close()
        if self.producer is not None:
            self.producer.close()
        self.sandbox.stop()
        return codes
