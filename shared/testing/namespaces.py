"""Test namespaces leased from a pool instead of created and deleted per run.

Quorum queues are not made for churn (rabbitmq-server #13828): declaring and deleting ~40 of them per test
process wedged RabbitMQ 3.10 here under parallel runs. So test processes lease a namespace from a small
pool on this machine (a file lock each), purge it, and give it back; its queues stay declared between runs.
The pool key includes every setting that shapes queue arguments, so two configurations never collide.
"""

from __future__ import annotations

import fcntl
import hashlib
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from shared.settings import RuntimeSettings

POOL_SIZE = 32
POOL_DIR = Path(tempfile.gettempdir()) / "erasure-test-namespaces"


@dataclass
class Lease:
    """A namespace held by this process until release()."""

    namespace: str
    _lock: IO[str]

    def release(self) -> None:
        fcntl.flock(self._lock, fcntl.LOCK_UN)
        self._lock.close()


def _shape(settings: RuntimeSettings) -> str:
    key = f"{settings.delivery_limit}|{settings.retry_delays}|{settings.dead_letter_ttl_days}"
    return hashlib.sha256(key.encode()).hexdigest()[:4]


def declared_file(namespace: str) -> Path:
    """Where the names of every queue ever declared in a pooled namespace are kept (one per line)."""
    POOL_DIR.mkdir(parents=True, exist_ok=True)
    return POOL_DIR / f"{namespace}.queues"


def lease_namespace(settings: RuntimeSettings) -> Lease:
    """Hold a free namespace of the pool for queues shaped by these settings."""
    POOL_DIR.mkdir(parents=True, exist_ok=True)
    shape = _shape(settings)
    for index in range(POOL_SIZE):
        namespace = f"tp{shape}n{index:02d}"
        lock = (POOL_DIR / f"{namespace}.lock").open("w")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            continue
        return Lease(namespace, lock)
    raise RuntimeError(f"all {POOL_SIZE} test namespaces are in use (locks in {POOL_DIR})")
