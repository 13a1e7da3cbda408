"""Run services against a real broker in a private namespace, publish events, and wait for their effects."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import kombu
from sqlalchemy import select

from schemas import EventData
from shared.codec import Outbound
from shared.consumer import ATTEMPTS_HEADER, ServiceRunner, full_topology
from shared.producer import Producer
from shared.service import Service
from shared.settings import RuntimeSettings
from shared.testing.namespaces import (
    Lease,
    declared_file,
    delete_namespace_names,
    for_each,
    lease_namespace,
    namespace_exchanges,
)
from shared.testing.scratch import Scratch, events_of
from shared.topology import declare

T = TypeVar("T")
E = TypeVar("E", bound=EventData)


def wait_until(check: Callable[[], T], *, timeout: float = 20.0, interval: float = 0.05, what: str = "") -> T:
    """Poll until check() returns something truthy; raise AssertionError naming `what` on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or check}")
        time.sleep(interval)


class RunningService:
    """One service's runtime in a background thread, with helpers to observe its database."""

    def __init__(
        self, service: Service, settings: RuntimeSettings, database_url: str, *, http_port: int | None = None
    ) -> None:
        self.runner = ServiceRunner(service, settings, database_url, http_port=http_port)
        self.service = service
        self._thread = threading.Thread(target=self.runner.run, name=f"svc-{service.name}", daemon=True)

    def start(self, timeout: float = 30.0) -> RunningService:
        self._thread.start()
        wait_until(self.runner.ready.is_set, timeout=timeout, what=f"{self.service.name} to consume")
        return self

    def stop(self, timeout: float = 30.0) -> None:
        self.runner.stop()
        self._thread.join(timeout)

    @property
    def engine(self) -> Any:
        return self.runner.engine

    def handled(self, event_id: str | uuid.UUID) -> bool:
        """Whether the service has committed the effects of this event."""
        inbox = self.runner.inbox
        with self.engine.connect() as conn:
            return conn.execute(select(inbox.c.event_id).where(inbox.c.event_id == str(event_id))).first() \
                is not None

    def wait_handled(self, event_id: str | uuid.UUID, timeout: float = 20.0) -> None:
        """Block until the service has committed this event."""
        wait_until(lambda: self.handled(event_id), timeout=timeout,
                   what=f"{self.service.name} to handle {event_id}")


class Pipeline(Scratch):
    """A private namespace on a real broker with databases per service; deletes all of it on close()."""

    def __init__(
        self,
        amqp_url: str,
        *,
        workdir: Path,
        postgres_admin_url: str | None = None,
        namespace: str | None = None,
        keep_namespace: bool = False,
        seal_contacts: bool = False,
        **settings: Any,
    ) -> None:
        """`seal_contacts`: publish upstream events with their contact details sealed, as `erasure publish` does."""
        self.settings = RuntimeSettings(amqp_url=amqp_url, **settings)
        self.seal_contacts = seal_contacts
        self._lease: Lease | None = None
        if namespace is None:  # lease a pooled namespace rather than create one (see shared.testing.namespaces)
            self._lease = lease_namespace(self.settings)
            namespace, keep_namespace = self._lease.namespace, True
        self.namespace = namespace
        self.keep_namespace = keep_namespace
        self.settings = self.settings.model_copy(update={"namespace": namespace})
        if self._lease is not None:
            self.purge()
        self.workdir = workdir
        self.postgres_admin_url = postgres_admin_url
        self.services: dict[str, RunningService] = {}
        self._databases: list[str] = []
        self._seen: dict[str, list[dict[str, Any]]] = {}
        self._producer: Producer | None = None

    def start(
        self, service: Service, database_url: str | None = None, *, http_port: int | None = None
    ) -> RunningService:
        """Start a service in-process and wait until it consumes (http_port=0: serve health on a free port)."""
        running = RunningService(service, self.settings, database_url or self.database_url(service.name),
                                 http_port=http_port)
        self.services[service.name] = running
        self._remember(service)
        return running.start()

    @property
    def producer(self) -> Producer:
        if self._producer is None:
            self._producer = Producer(self.settings.amqp_url, exchange=f"{self.namespace}.events").start()
        return self._producer

    def publish(self, *events: EventData, attempts: int = 0) -> list[Outbound]:
        """Publish signed events with confirms; return what was sent (ids included).

        `attempts` > 0 sends them as a delay tier returns an event that failed that many times before.
        """
        messages = [self.encode(e) for e in events]
        if attempts:
            messages = [replace(m, headers={**m.headers, ATTEMPTS_HEADER: attempts}) for m in messages]
        self.producer.publish_many(messages)
        return messages

    def declare(self, extra: Service | None = None) -> None:
        """Declare the namespace's full topology, plus an extra service's (as every service does at start)."""
        self._remember(extra)
        with kombu.Connection(self.settings.amqp_url) as conn:
            declare(conn.default_channel, full_topology(self.settings, extra))

    def depth(self, queue: str) -> int:
        """Messages ready in a queue (passive declare)."""
        with kombu.Connection(self.settings.amqp_url) as conn:
            return conn.default_channel.queue_declare(queue, passive=True).message_count

    def take(self, queue: str, *, ack: bool = True) -> list[Any]:
        """Every message now ready in a queue (py-amqp messages with .body and .headers)."""
        taken = []
        with kombu.Connection(self.settings.amqp_url) as conn:
            channel = conn.channel()
            while (message := channel.basic_get(queue, no_ack=False)) is not None:
                taken.append(message)
            for message in taken:
                if ack:
                    channel.basic_ack(message.delivery_tag)
                else:
                    channel.basic_reject(message.delivery_tag, requeue=True)
        return taken

    def _remember(self, extra: Service | None) -> None:
        # The names are kept beside the lease, so that whoever holds the namespace next (or this process at
        # exit) deletes them, also an extra service's queue declared by a run that was killed.
        known = declared_file(self.namespace)
        names = set(known.read_text().split()) if known.exists() else set()
        fresh = {q.name for q in full_topology(self.settings, extra).queues} - names
        if fresh:
            with known.open("a") as out:
                out.writelines(f"{name}\n" for name in sorted(fresh))
        _DECLARED.setdefault(self.namespace, set()).update(names | fresh)

    def wait_events(
        self,
        model: type[E],
        *,
        count: int = 1,
        where: Callable[[E], bool] = lambda _event: True,
        queue: str | None = None,
        timeout: float = 10.0,
    ) -> list[E]:
        """Wait until `count` events of a type (matching `where`) reached a queue; the ledger's by default.

        The ledger queue receives every deregistration and slice report, so it is where a test sees what
        services emitted. Events taken from the queue are remembered, so successive calls see them all.
        """
        name = queue or f"{self.namespace}.ledger"
        seen = self._seen.setdefault(name, [])

        def arrived() -> list[E] | None:
            seen.extend(json.loads(m.body) for m in self.take(name))
            found = events_of(model, seen)
            matching = [e for e in found if where(e)]
            return matching if len(matching) >= count else None

        return wait_until(arrived, timeout=timeout, what=f"{count} {model.__name__} on {name}")

    def queue_names(self) -> Iterable[str]:
        """Every queue this namespace has had declared through a Pipeline in this process."""
        self._remember(None)
        return sorted(_DECLARED[self.namespace])

    def purge(self, *, settle: float = 0.0) -> None:
        """Empty every queue of the namespace; with `settle`, again until nothing more arrives.

        Messages can still be on their way when a test ends (a delay tier expiring, a browsed dead letter
        being returned): purging until a pass after `settle` seconds finds nothing keeps them out of the next
        test that shares the namespace.
        """
        names = self.queue_names()
        for_each(self.settings.amqp_url, names, "queue_purge")
        for _ in range(4 if settle else 0):
            time.sleep(settle)
            if not for_each(self.settings.amqp_url, names, "queue_purge"):
                return

    def close(self, *, leave_broker: bool = False) -> None:
        """Stop services; purge (shared namespace) or delete (own namespace) its queues; drop databases.

        `leave_broker`: ask nothing of the broker, its queues stay as they are (a private node whose files a test
        reads, then removes); only what this process keeps of the namespace is forgotten."""
        for running in self.services.values():
            running.stop()
        if self._producer is not None:
            self._producer.close()
        if leave_broker:
            _DECLARED.pop(self.namespace, None)
            declared_file(self.namespace).unlink(missing_ok=True)
        elif self.keep_namespace:
            self.purge(settle=0.2)
            if self._lease is not None:
                self._lease.idle()  # deleted when the process lets its leases go (session end, exit)
        else:
            self._remember(None)
            delete_namespace(self.settings.amqp_url, self.namespace)
        self.drop_databases()


_DECLARED: dict[str, set[str]] = {}


def delete_namespace(amqp_url: str, namespace: str) -> None:
    """Delete every queue and exchange a Pipeline declared in this namespace."""
    delete_namespace_names(amqp_url, _DECLARED.pop(namespace, set()), namespace_exchanges(namespace))
    declared_file(namespace).unlink(missing_ok=True)
