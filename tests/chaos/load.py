"""The load a chaos test runs under, and the accounting after it: what was sent, completed, lost, doubled.

A buyer first buys (PurchaseCompleted: contact to an installer, customer and invoice at Visma, a vaulted PayPal
token, a Mailchimp subscription); every user then deregisters (UserDeregistered with its own request id).
After the fault, every request must be complete in the ledger, every queue empty, nothing dead-lettered,
and every outside effect there exactly once.
"""

from __future__ import annotations

import contextlib
import re
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pika
from sqlalchemy import Engine, column, create_engine, func, select, table
from sqlalchemy.exc import DBAPIError

from schemas import ErasureSliceRetrying, EventData, PurchaseCompleted, UserDeregistered
from schemas.examples import example_deregistration, example_purchase
from services.sandbox import DEFAULT_INSTALLERS, SandboxControl
from services.vendors.rules import paypal_customer_id, subscriber_hash, visma_customer_number
from shared.codec import Outbound, encode
from shared.producer import Producer
from shared.settings import RuntimeSettings
from shared.topology import Names

INSTALLERS = tuple(sorted(DEFAULT_INSTALLERS))
CHAOS_KEYS = "chaos:chaos-suite-signing-key"


@dataclass(frozen=True)
class Person:
    """One user of the load: ids only; the contact details follow from the user id (schemas.examples)."""

    user_id: str
    request_id: str
    installer_id: str
    token_id: str
    buys: bool = True


def people(tag: str, count: int, *, buyers_every: int = 1) -> list[Person]:
    """`count` users whose ids start with `tag`, spread over the sandbox's installers; every
    `buyers_every`-th of them bought something first (the others hold nothing outside the account)."""
    return [Person(f"{tag}-{i:05d}", str(uuid.uuid4()), INSTALLERS[i % len(INSTALLERS)], f"tok-{tag}-{i:05d}",
                   buys=i % buyers_every == 0)
            for i in range(count)]


def purchase_of(person: Person, **overrides: Any) -> PurchaseCompleted:
    """A PayPal purchase with newsletter consent, installed by the person's installer."""
    payment = {"method": "paypal", "paypal": {"payer_id": "7XKQZ3LMN8P2A", "order_id": f"O-{person.user_id}",
                                              "capture_id": f"C-{person.user_id}",
                                              "vault_token_ids": [person.token_id]}}
    fields: dict[str, Any] = {"purchase_id": f"P-{person.user_id}", "payment": payment,
                              "installer": {"id": person.installer_id, "name": f"Installer {person.installer_id}"}}
    return example_purchase(person.user_id, **{**fields, **overrides})


def deregistration_of(person: Person) -> UserDeregistered:
    """The person's deregistration, requested now."""
    return example_deregistration(person.user_id, request_id=person.request_id, requested_at=datetime.now(UTC))


def seed_vault(control: SandboxControl, persons: Iterable[Person]) -> None:
    """Vault each person's PayPal token at the sandbox, under their user id as PayPal customer id."""
    control.seed({"paypal": {"vault": {paypal_customer_id(p.user_id): [p.token_id] for p in persons}}})


def register_in_account(account_url: str, users: Mapping[str, Mapping[str, Any]]) -> None:
    """Create users (user id → register_user fields) in the account database, as the portal would."""
    from services.account.accounts import register_user
    from services.account.models import metadata
    from shared.db import session_factory

    engine = observer_engine(account_url)
    try:
        with session_factory(engine, metadata)() as session, session.begin():
            for user_id, fields in users.items():
                register_user(session, user_id=user_id, **fields)
    finally:
        engine.dispose()


class Upstream:
    """What the web shop and portal do: publish signed events (confirmed) straight to the broker."""

    def __init__(self, amqp_url: str, namespace: str) -> None:
        self.settings = RuntimeSettings(amqp_url=amqp_url, namespace=namespace, signing_keys=CHAOS_KEYS,
                                        signing_key_id="chaos")
        self.names = Names(namespace)
        self._producer: Producer | None = None

    def encode(self, data: EventData) -> Outbound:
        """Sign an event with the pipeline's key."""
        return encode(data, source="urn:loggamera:chaos", keyring=self.settings.keyring, key_id="chaos")

    def publish(self, events: Iterable[EventData]) -> list[Outbound]:
        """Publish events with confirms; what was sent."""
        messages = [self.encode(e) for e in events]
        if self._producer is None:
            self._producer = Producer(self.settings.amqp_url, exchange=self.names.events_exchange,
                                      name="chaos-upstream").start()
        self._producer.publish_many(messages)
        return messages

    def publish_raw(self, body: bytes, *, routing_key: str, headers: Mapping[str, Any] | None = None,
                    content_type: str | None = "application/cloudevents+json", message_id: str | None = None,
                    event_type: str | None = None) -> None:
        """Publish exact bytes with exact properties (confirmed, mandatory), as a broken or hostile producer."""
        conn = pika.BlockingConnection(pika.URLParameters(self.settings.amqp_url))
        try:
            channel = conn.channel()
            channel.confirm_delivery()
            channel.basic_publish(self.names.events_exchange, routing_key, body,
                                  pika.BasicProperties(content_type=content_type, delivery_mode=2,
                                                       message_id=message_id, type=event_type,
                                                       headers=dict(headers or {})),
                                  mandatory=True)
        finally:
            conn.close()

    def close(self) -> None:
        if self._producer is not None:
            self._producer.close()


def observer_engine(url: str) -> Engine:
    """An engine for reading a service's database from outside. Not shared.db.make_engine: on SQLite that
    begins every transaction IMMEDIATE, so a mere count would queue behind (and hold up) the service's writes."""
    args = {"connect_timeout": 3} if url.startswith("postgresql") else {}
    return create_engine(url, connect_args=args, pool_pre_ping=True)


class Observer:
    """Reads the services' databases from outside: events committed (inbox rows) and erasures completed.

    While a database is unreachable the last figure read stands, so a test can keep sampling through an outage.
    """

    def __init__(self, database_urls: Mapping[str, str]) -> None:
        self._engines = {name: observer_engine(url) for name, url in database_urls.items()}
        self._committed = 0
        self._completed = 0

    def _count(self, service: str, name: str, *where: Any) -> int:
        with self._engines[service].connect() as conn:
            return int(conn.execute(select(func.count()).select_from(table(name)).where(*where)).scalar_one())

    def inbox_counts(self) -> dict[str, int]:
        """Events each service has committed, not counting the slices' retry notices to the ledger (how many
        there are depends on how often a vendor failed, not on the load sent)."""

        retrying = column("event_type") != ErasureSliceRetrying.event_type
        return {service: self._count(service, "inbox", retrying) for service in self._engines}

    def committed(self) -> int:
        """Events committed by all services together."""
        with contextlib.suppress(DBAPIError):
            self._committed = sum(self.inbox_counts().values())
        return self._committed

    def completed(self) -> int:
        """Erasure requests the ledger has closed."""
        with contextlib.suppress(DBAPIError):
            self._completed = self._count("ledger", "erasure_requests", column("status") == "complete")
        return self._completed

    def holding(self, service: str, table_name: str, user_ids: Iterable[str], *where: Any) -> int:
        """Rows of a service table that belong to these users (and match `where`)."""
        return self._count(service, table_name, column("user_id").in_(list(user_ids)), *where)

    def outbox_backlogs(self) -> dict[str, int]:
        """Events each service has committed to its outbox and not yet had confirmed by the broker."""
        return {service: self._count(service, "outbox") for service in self._engines}

    def account_completions(self) -> int:
        """ErasureCompleted events the account has recorded (the ledger's outbox reached the broker and back)."""
        return self._count("account", "completed_erasures")

    def close(self) -> None:
        for engine in self._engines.values():
            engine.dispose()


@dataclass
class Accounts:
    """Outside effects counted per key, and what is left at the vendors of the load's users."""

    duplicates: dict[str, int] = field(default_factory=dict)  # from the raw request log
    duplicates_seen_by_fakes: dict[str, int] = field(default_factory=dict)  # from the fakes' effect log
    counts: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def duplicated(self) -> int:
        return sum(self.duplicates.values())


def _doubled(kind: str, keys: Iterable[Any], accounts: Accounts) -> Counter[Any]:
    counted = Counter(keys)
    accounts.counts[kind] = sum(counted.values())
    accounts.duplicates[kind] = sum(n - 1 for n in counted.values() if n > 1)
    return counted


# Requests that only fetch or renew credentials change nothing at the vendor.
CREDENTIAL_PATHS = frozenset({"/v1/oauth2/token", "/connect/token"})
TEMPLATE = re.compile(r"/(?:[0-9a-f]{32}|[0-9a-f-]{36}|tok-[\w-]+|ct_\w+)(?=/|$)")


def _effect_key(request: Mapping[str, Any]) -> tuple[str, Any] | None:
    """What one raw request changed at its vendor, as (kind, identity), or None if it changed nothing.

    A change is a POST, PUT or DELETE the vendor answered 2xx and did not merely replay (Idempotent-Replayed).
    Its identity is what a second copy of the same change would repeat: the path for a DELETE (a token, a
    member), the business key for Visma's POSTs (CustomerNumber, YourReference), the path and raw body hash
    for any other POST (a contact, a notice: two accepted copies are two deliveries, whatever their keys). A
    PUT replaces a resource with the same body, so a repeat is idempotent: its identity includes the body.
    """
    method, status = request["method"], request.get("status")
    if method not in {"POST", "PUT", "DELETE"} or not (status and 200 <= status < 300) or request.get("replayed"):
        return None
    path = request["path"]
    if path in CREDENTIAL_PATHS:
        return None
    kind = f"{request['vendor']} {method} {TEMPLATE.sub('/{id}', path)}"
    body = request.get("body") if isinstance(request.get("body"), dict) else {}
    if method == "DELETE":
        return kind, path
    if request["vendor"] == "visma" and method == "POST":
        return kind, body.get("YourReference") or body.get("CustomerNumber") or request["body_sha256"]
    return kind, (path, request["body_sha256"])


def raw_effects(requests: Iterable[Mapping[str, Any]]) -> tuple[dict[str, int], dict[str, int]]:
    """(changes per kind, duplicated changes per kind) counted from the sandbox's raw request log alone.

    A PUT repeated with the same body changes nothing the second time, so only POSTs and DELETEs can be
    duplicated; those are counted by identity.
    """
    counts: Counter[str] = Counter()
    seen: Counter[tuple[str, Any]] = Counter()
    for request in requests:
        key = _effect_key(request)
        if key is None:
            continue
        counts[key[0]] += 1
        if request["method"] != "PUT":
            seen[key] += 1
    duplicates: Counter[str] = Counter()
    for (kind, _), n in seen.items():
        if n > 1:
            duplicates[kind] += n - 1
    return dict(counts), dict(duplicates)


def account_effects(control: SandboxControl, persons: list[Person], purchases: Mapping[str, str]) -> Accounts:
    """Count every outside effect of the load's buyers and check the vendors hold nothing personal of them.

    `purchases` maps user id → the event id of their PurchaseCompleted (Visma's YourReference).
    """
    persons = [p for p in persons if p.buys]
    accounts = Accounts()
    state = control.state()
    effects = state["effects"]
    ids = {p.user_id for p in persons}
    paypal_ids = {paypal_customer_id(p.user_id) for p in persons}
    visma_numbers = {visma_customer_number(p.user_id) for p in persons}
    hashes = {subscriber_hash(purchase_of(p).customer.email): p.user_id for p in persons}

    def of(vendor: str, kind: str) -> list[dict[str, Any]]:
        return [e for e in effects if e["vendor"] == vendor and e["effect"] == kind]

    subscribed = _doubled("mailchimp.member_subscribed",
                          (e["subscriber_hash"] for e in of("mailchimp", "member_subscribed")
                           if e["subscriber_hash"] in hashes), accounts)
    deleted = _doubled("mailchimp.member_deleted_permanently",
                       (e["subscriber_hash"] for e in of("mailchimp", "member_deleted_permanently")
                        if e["subscriber_hash"] in hashes), accounts)
    if set(subscribed) != set(deleted):
        accounts.problems.append(f"{len(set(subscribed) - set(deleted))} Mailchimp members subscribed but never "
                                 f"deleted; {len(set(deleted) - set(subscribed))} deleted but never subscribed")
    left = [h for h in state["mailchimp"]["members"] if h in hashes]
    if left:
        accounts.problems.append(f"{len(left)} of the load's members still at Mailchimp")

    contacts = _doubled("installers.contact_received",
                        ((e["installer_id"], e["purchase_id"]) for e in of("installers", "contact_received")
                         if e["purchase_id"].removeprefix("P-") in ids), accounts)
    notices = _doubled("installers.erasure_notice_received",
                       ((e["installer_id"], e["user_ref"]) for e in of("installers", "erasure_notice_received")
                        if e["user_ref"] in ids), accounts)
    told = {(i, p.removeprefix("P-")) for i, p in contacts}
    if told - set(notices):
        accounts.problems.append(f"{len(told - set(notices))} installers got contact details but no erasure notice")
    # A purchase that failed at the installer and came back after its user's erasure asks the installer to erase
    # what the failed attempt may have delivered (it cannot know): a notice without a contact is expected.
    accounts.counts["installers.notice_for_an_attempt_that_may_have_reached_them"] = len(set(notices) - told)
    held = [c for c in state["installers"]["contacts"] if c["purchase_id"].removeprefix("P-") in ids]
    if held:
        accounts.problems.append(f"{len(held)} contacts of the load's users still held by installers")

    tokens = _doubled("paypal.payment_token_deleted",
                      (e["token_id"] for e in of("paypal", "payment_token_deleted") if e["customer_id"] in paypal_ids),
                      accounts)
    if len(tokens) != len(persons):
        accounts.problems.append(f"{len(persons) - len(tokens)} vaulted PayPal tokens never deleted")

    customers = [c for c in state["visma"]["customers"].values() if c.get("CustomerNumber") in visma_numbers]
    _doubled("visma.customer", (c["CustomerNumber"] for c in customers), accounts)
    named = [c for c in customers if c.get("IsActive") or c.get("EmailAddress") or c.get("MobilePhone")]
    if named:
        accounts.problems.append(f"{len(named)} Visma customers of the load still active or with contact details")
    references = set(purchases.values())
    invoices = _doubled("visma.invoice",
                        (i["YourReference"] for i in state["visma"]["invoices"].values()
                         if i.get("YourReference") in references), accounts)
    if len(invoices) != len(references):
        accounts.problems.append(f"{len(references) - len(invoices)} sales never booked at Visma")
    # The verdict on duplicates comes from what the vendors received, not from what the fakes recorded:
    # the fakes' effect log above is a cross-check only.
    requests, accounts.duplicates_seen_by_fakes = control.requests(), dict(accounts.duplicates)
    changes, duplicated = raw_effects(requests)
    accounts.counts.update({f"raw: {kind}": n for kind, n in changes.items()})
    accounts.duplicates = duplicated
    return accounts


# The test's own copy of every ErasureCompleted the ledger publishes (stack.Stack.tap): where a completion goes
# missing, it tells the broker side (missing here too) from the account's side (here, but not committed).
TAP_SUFFIX = ".tap.completions"


def queue_figures(queues: Mapping[str, Mapping[str, Any]]) -> dict[str, int]:
    """Messages left in the namespace's queues: dead letters, and everything else."""
    dead = sum(int(q["messages"]) for name, q in queues.items() if name.endswith(".dead"))
    rest = sum(int(q["messages"]) for name, q in queues.items()
               if not name.endswith((".dead", TAP_SUFFIX)))
    return {"dead_lettered": dead, "left_in_queues": rest}
