"""The RabbitMQ definitions of the pipeline: its topology from the code, and one least-privilege account per role.

Permissions in RabbitMQ are three regular expressions per user and virtual host, matched against resource
names: *configure* (declare, delete), *write* (publish to an exchange; bind a queue as destination) and *read*
(consume from a queue; bind from an exchange). Two facts shape the table below:

- Publishing to the default exchange is authorised as writing to `amq.default`, whatever the target queue:
  whoever may hand a message to a delay queue (services) or back to a service queue (ops replay) may address
  any queue by name. Messages still need a valid signature to be acted on.
- Permissions are per exchange, not per routing key. Topic permissions close that gap on the topic exchange:
  their *write* pattern is matched against the routing key of every publish, their *read* pattern against
  the routing key of every binding, so a slice service can neither publish a `user.deregistered.v1` nor bind
  its queue to events it has no business reading.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from schemas.catalog import PUBLICATIONS, SUBSCRIPTIONS
from services.registry import SERVICES
from shared.consumer import full_topology
from shared.settings import RuntimeSettings
from shared.topology import Names, Topology, routing_key

NAMESPACE = "erasure"
HASHING = "rabbit_password_hashing_sha256"
RETRY_SUFFIX = r"\.retry\.[0-9]+(ms|s|m|h)"  # the delay tiers' names (shared.topology.delay_label)
NOTHING = "^$"


@dataclass(frozen=True)
class Account:
    """One broker user: its permissions on the pipeline's virtual host and on the events exchange's keys."""

    name: str
    configure: str
    write: str
    read: str
    topic_write: str | None = None
    topic_read: str | None = None
    tags: tuple[str, ...] = field(default_factory=tuple)


def exactly(names: Iterable[str]) -> str:
    """A pattern that matches exactly these names (escaped) and nothing else."""
    escaped = sorted(re.escape(n) for n in dict.fromkeys(names))
    if not escaped:
        return NOTHING
    return f"^{escaped[0]}$" if len(escaped) == 1 else f"^({'|'.join(escaped)})$"


def _keys(models: Iterable[Any]) -> list[str]:
    return [routing_key(model.event_type) for model in models]


def default_settings(namespace: str = NAMESPACE) -> RuntimeSettings:
    """The shipped defaults (retry tiers, limits), untouched by this shell's ERASURE_* variables."""
    return RuntimeSettings.model_construct(namespace=namespace)


def account_name(namespace: str, role: str) -> str:
    """The broker user of a service or role, e.g. `erasure-newsletter`."""
    return f"{namespace}-{role}"


def accounts(namespace: str = NAMESPACE) -> list[Account]:
    """Every broker account: a service each, the upstream producers, ops, and an administrator."""
    names = Names(namespace)
    events, dead = names.events_exchange, names.dead_exchange
    table = []
    for service in SERVICES:
        own = re.escape(names.queue(service))
        table.append(Account(
            account_name(namespace, service),
            # Only its queue and delay queues, re-declared at start (ERASURE_DECLARE=own); never an exchange.
            configure=f"^{own}({RETRY_SUFFIX})?$",
            # Events it emits, its dead letters, its delay queues (amq.default); its queue as a binding target.
            write=exactly([events, dead, "amq.default", names.queue(service)]),
            # Its queue (and delay queues: declaring a queue with a dead-letter exchange needs read on it);
            # the events exchange as a binding source, narrowed by the topic read pattern below.
            read=f"^({re.escape(events)}|{own}({RETRY_SUFFIX})?)$",
            topic_write=exactly(_keys(PUBLICATIONS.get(service, ()))),
            topic_read=exactly(_keys(SUBSCRIPTIONS.get(service, ()))),
        ))
    table.append(Account(
        account_name(namespace, "upstream"), configure=NOTHING, write=exactly([events]), read=NOTHING,
        topic_write=exactly(_keys(PUBLICATIONS["upstream"])), topic_read=NOTHING,
    ))
    table.append(Account(
        # Dead-letter work (erasure dlq): browse, purge and replay. Replay goes through the default exchange.
        account_name(namespace, "ops"), configure=NOTHING, write=exactly(["amq.default"]),
        read=exactly(names.dead_queue(s) for s in SUBSCRIPTIONS),
    ))
    table.append(Account(
        # `erasure topology declare`, the management UI, and definition imports; no service runs as it.
        account_name(namespace, "admin"), configure=".*", write=".*", read=".*", tags=("administrator",),
    ))
    return table


def password_hash(password: str, salt: bytes | None = None) -> str:
    """RabbitMQ's `rabbit_password_hashing_sha256`: base64(salt + sha256(salt + password)), 4-byte salt."""
    salt = os.urandom(4) if salt is None else salt
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()


def dev_password(user: str) -> str:
    """The development password of an account: `dev-<user>`. Never deploy it (see deploy/README.md)."""
    return f"dev-{user}"


def _dev_hash(user: str) -> str:
    # A salt derived from the name keeps the checked-in file stable between runs.
    return password_hash(dev_password(user), hashlib.sha256(user.encode()).digest()[:4])


def _topology_definitions(topology: Topology, vhost: str) -> dict[str, list[dict[str, Any]]]:
    exchanges = [{"name": name, "vhost": vhost, "type": kind, "durable": True, "auto_delete": False,
                  "internal": False, "arguments": {}} for name, kind in topology.exchanges]
    queues = [{"name": q.name, "vhost": vhost, "durable": True, "auto_delete": False, "arguments": q.arguments}
              for q in topology.queues]
    bindings = [{"source": exchange, "vhost": vhost, "destination": q.name, "destination_type": "queue",
                 "routing_key": key, "arguments": {}} for q in topology.queues for exchange, key in q.bindings]
    return {"exchanges": exchanges, "queues": queues, "bindings": bindings}


def definitions(namespace: str = NAMESPACE, passwords: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The definitions document; development password hashes unless real passwords are given (all of them)."""
    vhost = namespace
    table = accounts(namespace)
    if passwords is not None:
        missing = sorted({a.name for a in table} - set(passwords))
        if missing:
            raise ValueError(f"no password given for {', '.join(missing)}")
    users = [{"name": a.name,
              "password_hash": password_hash(passwords[a.name]) if passwords is not None else _dev_hash(a.name),
              "hashing_algorithm": HASHING, "tags": list(a.tags)} for a in table]
    permissions = [{"user": a.name, "vhost": vhost, "configure": a.configure, "write": a.write, "read": a.read}
                   for a in table]
    topic_permissions = [{"user": a.name, "vhost": vhost, "exchange": Names(namespace).events_exchange,
                          "write": a.topic_write, "read": a.topic_read or NOTHING}
                         for a in table if a.topic_write is not None]
    return {
        "users": users,
        "vhosts": [{"name": vhost, "description": "Loggamera erasure pipeline", "tags": [],
                    "metadata": {"description": "Loggamera erasure pipeline", "tags": [],
                                 "default_queue_type": "quorum"}}],
        "permissions": permissions,
        "topic_permissions": topic_permissions,
        "parameters": [],
        "policies": [],
        **_topology_definitions(full_topology(default_settings(namespace)), vhost),
    }


def dev_guest_definitions() -> dict[str, Any]:
    """compose only: guest/guest with every right on `/`, so `make run` on the host finds the broker it expects."""
    return {
        "users": [{"name": "guest", "password_hash": password_hash("guest", b"dev!"), "hashing_algorithm": HASHING,
                   "tags": ["administrator"]}],
        "vhosts": [{"name": "/"}],
        "permissions": [{"user": "guest", "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"}],
    }
