"""Test namespaces: leased from a small pool on this machine, and deleted from the broker when given back.

Each test process leases a namespace (a file lock each), declares its queues once and purges them between
tests; a namespace given back (`idle()`) stays with the process for its next lease of the same shape, so
quorum queues are not declared and deleted per test (churn that wedged RabbitMQ 3.10 here, rabbitmq-server
#13828). The process deletes every queue and exchange it declared when it lets its leases go: at the end of
the pytest session, at exit, or on SIGTERM. A process killed outright leaves its names in the pool's `.queues` file, and
the next process to lease that namespace deletes them first. So the broker carries at most the namespaces in
use right now: the pool bounds how many run at once, and none outlive their run. (Leftover pooled namespaces
used to stay declared: 35 quorum queues each, about three file descriptors per queue on the broker, so a
pool filled by a day of test runs used up a node's default 1,024 descriptors; see BENCHMARKS.md.)
The pool key includes every setting that shapes queue arguments, so two configurations never collide.
"""

from __future__ import annotations

import atexit
import fcntl
import hashlib
import logging
import signal
import tempfile
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, Any

import kombu

from shared.settings import RuntimeSettings

POOL_SIZE = 16
POOL_DIR = Path(tempfile.gettempdir()) / "erasure-test-namespaces"

log = logging.getLogger(__name__)


@dataclass(eq=False)
class Lease:
    """A namespace held by this process until release(), which deletes what it declared on the broker."""

    namespace: str
    amqp_url: str
    shape: str
    _lock: IO[str]
    _released: bool = field(default=False, repr=False)
    in_use: bool = True

    def idle(self) -> None:
        """Done with it for now: the next lease of this shape in this process takes it as it is (purged)."""
        self.in_use = False

    def release(self) -> None:
        """Delete the namespace's queues and exchanges, then give the namespace back to the pool (idempotent)."""
        if self._released:
            return
        self._released = True
        _HELD.discard(self)
        try:
            delete_declared(self.amqp_url, self.namespace)
        finally:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()


_HELD: set[Lease] = set()


def _shape(settings: RuntimeSettings) -> str:
    key = f"{settings.delivery_limit}|{settings.retry_delays}|{settings.dead_letter_ttl_days}"
    return hashlib.sha256(key.encode()).hexdigest()[:4]


def declared_file(namespace: str) -> Path:
    """Where the names of every queue declared in a pooled namespace are kept (one per line) until deleted."""
    POOL_DIR.mkdir(parents=True, exist_ok=True)
    return POOL_DIR / f"{namespace}.queues"


def lease_namespace(settings: RuntimeSettings) -> Lease:
    """Hold a free namespace of the pool for queues shaped by these settings (leftovers of a killed run deleted)."""
    POOL_DIR.mkdir(parents=True, exist_ok=True)
    _release_on_exit()
    shape = _shape(settings)
    for held in _HELD:
        if not held.in_use and held.shape == shape and held.amqp_url == settings.amqp_url:
            held.in_use = True
            return held
    for index in range(POOL_SIZE):
        namespace = f"tp{shape}n{index:02d}"
        lock = (POOL_DIR / f"{namespace}.lock").open("w")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            continue
        lease = Lease(namespace, settings.amqp_url, shape, lock)
        try:
            delete_declared(settings.amqp_url, namespace)  # a process killed with -9 could not
        except Exception:
            lease.release()
            raise
        _HELD.add(lease)
        return lease
    raise RuntimeError(f"all {POOL_SIZE} test namespaces are in use (locks in {POOL_DIR})")


def held() -> frozenset[Lease]:
    """The leases this process holds now (a test of the pool gives back only those it took after this)."""
    return frozenset(_HELD)


def release_all(keep: frozenset[Lease] = frozenset()) -> None:
    """Give back every lease this process holds but those in `keep` (pytest session end, exit, SIGTERM; a test
    of the pool keeps the session's own lease, which the process goes on using)."""
    for lease in list(_HELD - keep):
        try:
            lease.release()
        except Exception as exc:  # the broker is gone: the names stay on file for the next leaseholder
            log.warning("test namespace %s not deleted: %s", lease.namespace, exc)


def delete_declared(amqp_url: str, namespace: str) -> None:
    """Delete the queues on file for a pooled namespace and its two exchanges; forget the file once done."""
    known = declared_file(namespace)
    if not known.exists():
        return
    delete_namespace_names(amqp_url, known.read_text().split(), namespace_exchanges(namespace))
    known.unlink(missing_ok=True)


def namespace_exchanges(namespace: str) -> list[str]:
    """The exchanges every namespace's topology declares."""
    return [f"{namespace}.events", f"{namespace}.dead"]


def delete_namespace_names(amqp_url: str, queues: Iterable[str], exchanges: Iterable[str]) -> None:
    """Delete these queues, then these exchanges; names the broker does not know are skipped."""
    for_each(amqp_url, sorted(set(queues)), "queue_delete")
    for_each(amqp_url, sorted(set(exchanges)), "exchange_delete")


def for_each(amqp_url: str, names: Iterable[str], method: str) -> int:
    """Call a channel method (queue_purge, queue_delete, exchange_delete) on each name; return the counts summed."""
    from amqp.exceptions import NotFound

    total = 0
    with kombu.Connection(amqp_url) as conn:
        channel = conn.channel()
        for name in names:
            try:
                total += getattr(channel, method)(name) or 0
            except NotFound:
                channel = conn.channel()  # the broker closed the channel; the name was never declared
    return total


_HOOKED = threading.Event()


def _release_on_exit() -> None:
    """Release held leases at interpreter exit and on SIGTERM (when no one else handles SIGTERM)."""
    if _HOOKED.is_set():
        return
    _HOOKED.set()
    atexit.register(release_all)
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _on_sigterm)


def _on_sigterm(signum: int, _frame: FrameType | None) -> Any:
    release_all()
    signal.signal(signum, signal.SIG_DFL)
    signal.raise_signal(signum)
