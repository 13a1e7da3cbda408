"""One test's whole pipeline: a namespace on the chaos node, the sandbox, six service processes, the upstream
publisher and a reader of the service databases — and the load-fault-account routine the fault tests share."""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kombu

from schemas import ErasureCompleted
from services.registry import SERVICES
from shared.topology import Names
from tests.chaos.gateway import LossyGateway
from tests.chaos.harness import BrokerQueries, Fleet, PostgresCluster, SandboxProcess, poll
from tests.chaos.load import (
    CHAOS_KEYS,
    TAP_SUFFIX,
    Observer,
    Person,
    Upstream,
    account_effects,
    deregistration_of,
    purchase_of,
    queue_figures,
    seed_vault,
)

# Written in the JSON form: the comma form the README documents does not parse (test_settings.py).
FAST_TIERS = (0.5, 1.0, 2.0, 4.0, 8.0)
# Events each service commits per erasure (the account also the completion; the ledger five slice reports too),
# and per purchase.
INBOX_PER_ERASURE = {"account": 2, "installer_sharing": 1, "payment": 1, "bookkeeping": 1, "newsletter": 1,
                     "ledger": 6}
INBOX_PER_PURCHASE = {"account": 0, "installer_sharing": 1, "payment": 1, "bookkeeping": 1, "newsletter": 1,
                      "ledger": 0}
# Half the users of a fault test's load bought something first (data at every vendor), half never did.
BUYERS_EVERY = 2
RECOVERY_MARKS = ("consumers_back_after_s", "outbox_producers_back_after_s", "work_resumed_after_s")


@dataclass
class Run:
    """What a load run sent and when, and samples of (seconds, events committed, erasures completed)."""

    persons: list[Person]
    purchase_ids: dict[str, str]
    started: float
    samples: list[tuple[float, int, int]] = field(default_factory=list)

    @property
    def erasures(self) -> int:
        return len(self.persons)

    @property
    def purchases(self) -> int:
        return len(self.purchase_ids)

    def inbox_expected(self) -> dict[str, int]:
        """Events each service must have committed once the run is through."""
        return {name: INBOX_PER_ERASURE[name] * self.erasures + INBOX_PER_PURCHASE[name] * self.purchases
                for name in INBOX_PER_ERASURE}

    @property
    def events_expected(self) -> int:
        return sum(self.inbox_expected().values())


@dataclass
class Stack:
    """Everything one chaos test runs against."""

    rabbit: BrokerQueries  # the suite's node, or a cluster (tests/chaos/cluster.py)
    namespace: str
    workdir: Path
    sandbox: SandboxProcess
    fleet: Fleet
    upstream: Upstream
    observer: Observer
    gateway: LossyGateway | None = None

    def queues(self) -> dict[str, dict[str, Any]]:
        """The namespace's queues with their message counts (ready + unacknowledged) and arguments."""
        return self.rabbit.queues(f"{self.namespace}.")

    def dead_letters(self, service: str) -> list[Any]:
        """Take (and remove) every dead letter of a service: py-amqp messages with .body and .headers."""
        return self.rabbit.take(f"{self.namespace}.{service}.dead")

    def tap(self) -> None:
        """Bind a queue of the test's own to ErasureCompleted: a copy of every completion the broker accepted."""
        names = Names(self.namespace)
        with kombu.Connection(self.rabbit.url) as conn:
            queue = kombu.Queue(f"{self.namespace}{TAP_SUFFIX}", durable=True,
                                queue_arguments={"x-queue-type": "quorum"},
                                exchange=kombu.Exchange(names.events_exchange, "topic", passive=True),
                                routing_key=ErasureCompleted.routing_key())
            queue(conn.channel()).declare()

    def completions_tapped(self) -> int:
        """ErasureCompleted events the broker routed (to the tap queue and so to the account's)."""
        return self.rabbit.ready_count(f"{self.namespace}{TAP_SUFFIX}")

    def start_load(self, persons: list[Person]) -> Run:
        """Vault the buyers' PayPal tokens, then publish every purchase followed by every deregistration."""
        buyers = [p for p in persons if p.buys]
        seed_vault(self.sandbox.control, buyers)
        started = time.monotonic()
        sent = self.upstream.publish(purchase_of(p) for p in buyers)
        self.upstream.publish(deregistration_of(p) for p in persons)
        return Run(persons, {p.user_id: m.event_id for p, m in zip(buyers, sent, strict=True)}, started)

    def sample(self, run: Run) -> tuple[int, int]:
        """Note and return (events committed, erasures completed)."""
        committed, completed = self.observer.committed(), self.observer.completed()
        run.samples.append((round(time.monotonic() - run.started, 1), committed, completed))
        return committed, completed

    def at(self, run: Run, seconds: float) -> dict[str, int]:
        """Wait until `seconds` into the run (sampling meanwhile); the progress then, for the figures."""
        while time.monotonic() < run.started + seconds:
            self.sample(run)
            time.sleep(min(1.0, max(0.0, run.started + seconds - time.monotonic())))
        committed, completed = self.sample(run)
        assert completed < run.erasures, "the load finished before the fault: nothing was in flight"
        return {"at_s": round(time.monotonic() - run.started, 1), "events_committed": committed,
                "of_events": run.events_expected, "erasures_completed": completed}

    def recovery(self, run: Run, since: float, committed_then: int, timeout: float = 90) -> dict[str, float]:
        """Seconds from `since` until every service queue has its consumer again, every outbox producer is
        connected again, and committed work moves past `committed_then`. Consumers are counted by the broker
        (a passive declare), work by the databases; an outbox producer counts as connected once the broker
        has answered Confirm.Select on its new connection (the service's erasure_broker_connected gauge:
        `rabbitmqctl list_connections` takes tens of seconds on a loaded two-core machine).

        Each is probed on its own thread, a few times a second, every outbox producer separately (a loaded
        service may take a second to answer /metrics). A mark is the end of the first probe that saw the
        condition hold, so it can only overstate the time to recover, by at most one probe.
        """
        services = list(self.fleet.children)
        queues = [f"{self.namespace}.{name}" for name in services]

        def consumers_back() -> bool:
            return all(ok.consumer_count >= 1 for ok in self.rabbit.declared(queues).values())

        def work_resumed() -> bool:
            committed, _ = self.sample(run)
            return committed > committed_then or committed >= run.events_expected

        probes: dict[str, Callable[[], bool]] = {
            RECOVERY_MARKS[0]: consumers_back,
            RECOVERY_MARKS[2]: work_resumed,
            **{f"outbox:{name}": (lambda name=name: self.fleet.outbox_connected(name)) for name in services},
        }
        seen: dict[str, float] = {}
        deadline = since + timeout

        def watch(mark: str, probe: Callable[[], bool]) -> None:
            while time.monotonic() < deadline:
                with contextlib.suppress(Exception):  # the broker may refuse a probe while it recovers
                    if probe():
                        seen[mark] = time.monotonic() - since
                        return
                time.sleep(0.1)

        watchers = [threading.Thread(target=watch, args=item, daemon=True) for item in probes.items()]
        for watcher in watchers:
            watcher.start()
        for watcher in watchers:
            watcher.join(max(0.0, deadline - time.monotonic()) + 5)
        missing = sorted(set(probes) - set(seen))
        assert not missing, f"no recovery within {timeout:.0f}s: {missing} never happened"
        seen[RECOVERY_MARKS[1]] = max(seen[f"outbox:{name}"] for name in services)
        return {name: round(seen[name], 1) for name in RECOVERY_MARKS}

    def settle(self, run: Run, timeout: float) -> dict[str, Any]:
        """Wait for every erasure to complete and every queue to drain, then account for everything: the
        figures for the results file (assert_clean holds them to the guarantees)."""
        # A timeout here is no failure yet: the figures say how much was lost, and assert_clean fails on them.
        with contextlib.suppress(AssertionError):
            poll(lambda: self.sample(run)[1] >= run.erasures, timeout=timeout, interval=1.0,
                 what=f"all {run.erasures} erasures to complete")
        elapsed = time.monotonic() - run.started
        # Outboxes first, queues second: once every erasure is complete nothing new enters an outbox, so empty
        # outboxes and then empty queues mean every event was published and then consumed. (The other order
        # can pass while the ledger's relay still holds the last ErasureCompleted events.)
        with contextlib.suppress(AssertionError):
            poll(lambda: not any(self.observer.outbox_backlogs().values())
                 and queue_figures(self.queues())["left_in_queues"] == 0, timeout=60, interval=1.0,
                 what="every outbox and then every queue of the namespace to drain")
        # An event between a delay queue and its service queue (at-least-once dead-lettering) is counted in
        # neither: give such stragglers a moment before counting what each service committed.
        expected = run.inbox_expected()
        with contextlib.suppress(AssertionError):
            poll(lambda: all(self.observer.inbox_counts().get(n, 0) >= want for n, want in expected.items()),
                 timeout=30, interval=1.0, what="every service to commit what it was sent")
        completed = self.observer.completed()
        accounts = account_effects(self.sandbox.control, run.persons, run.purchase_ids)
        inbox = self.observer.inbox_counts()
        return {
            "erasures_sent": run.erasures,
            "purchases_sent": run.purchases,
            "completed": completed,
            "completion_events_published": self.completions_tapped(),
            "completion_events_seen_by_account": self.observer.account_completions(),
            "lost": run.erasures - completed,
            "duplicated_outside_effects": accounts.duplicated,
            "duplicates_by_effect": accounts.duplicates,
            "duplicates_seen_by_fakes": accounts.duplicates_seen_by_fakes,
            "outside_effects": accounts.counts,
            "inbox_rows": inbox,
            "events_acked_without_inbox_row": sum(max(0, want - inbox.get(n, 0)) for n, want in expected.items()),
            "seconds_to_complete_all": round(elapsed, 1),
            **queue_figures(self.queues()),
            "left_in_outboxes": self.observer.outbox_backlogs(),
            "problems": accounts.problems + [f"{name}: {inbox.get(name)} inbox rows, expected {want}"
                                             for name, want in expected.items() if inbox.get(name) != want],
        }

    def close(self) -> None:
        """Stop the services and the sandbox; delete the namespace's queues."""
        self.fleet.stop()
        if self.gateway is not None:
            self.gateway.close()
        self.sandbox.stop()
        self.upstream.close()
        self.observer.close()
        self.rabbit.delete_queues(f"{self.namespace}.")


def assert_clean(figures: Mapping[str, Any]) -> None:
    """The guarantees every fault test holds the pipeline to."""
    assert figures["lost"] == 0, f"{figures['lost']} erasures never completed: {figures}"
    assert figures["completion_events_seen_by_account"] == figures["erasures_sent"], figures
    assert figures["duplicated_outside_effects"] == 0, f"duplicated outside effects: {figures['duplicates_by_effect']}"
    assert figures["events_acked_without_inbox_row"] == 0, figures["inbox_rows"]
    assert figures["dead_lettered"] == 0, f"{figures['dead_lettered']} dead letters: {figures}"
    assert figures["left_in_queues"] == 0, f"{figures['left_in_queues']} messages left in queues"
    assert not any(figures["left_in_outboxes"].values()), f"events never published: {figures['left_in_outboxes']}"
    assert not figures["problems"], figures["problems"]


def build_stack(
    rabbit: BrokerQueries,
    workdir: Path,
    *,
    amqp_url: str | None = None,
    postgres: PostgresCluster | None = None,
    retry_delays: tuple[float, ...] = FAST_TIERS,
    extra_env: Mapping[str, str] | None = None,
    lossy: bool = False,
) -> Stack:
    """Start the sandbox and the six services in a fresh namespace (SQLite files, or databases on `postgres`);
    with `lossy`, the services reach the vendors through a LossyGateway."""
    namespace = f"c{uuid.uuid4().hex[:8]}"
    workdir.mkdir(parents=True, exist_ok=True)
    if postgres is not None:
        urls = {name: postgres.create_database(f"{namespace}_{name}") for name in SERVICES}
    else:
        urls = {name: f"sqlite:///{workdir / f'{name}.db'}" for name in SERVICES}
    base_env = {
        "ERASURE_AMQP_URL": amqp_url or rabbit.url,
        "ERASURE_NAMESPACE": namespace,
        "ERASURE_SIGNING_KEYS": CHAOS_KEYS,
        "ERASURE_SIGNING_KEY_ID": "chaos",
        "ERASURE_RETRY_DELAYS": json.dumps(list(retry_delays)),
        "ERASURE_HEARTBEAT": "5",
        "ERASURE_VAR_DIR": str(workdir / "var"),
        **(extra_env or {}),
    }
    sandbox = SandboxProcess(workdir).start()
    gateway = LossyGateway(sandbox.url) if lossy else None
    fleet = Fleet(base_env=base_env, database_urls=urls, sandbox=sandbox, workdir=workdir,
                  vendors_url=gateway.url if gateway else None)
    try:
        fleet.start()
    except BaseException:
        fleet.stop()
        sandbox.stop()
        raise
    stack = Stack(rabbit, namespace, workdir, sandbox, fleet, Upstream(rabbit.url, namespace), Observer(urls),
                  gateway)
    stack.tap()
    return stack
