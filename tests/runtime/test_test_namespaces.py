"""Test namespaces on the real broker: reused within a process, deleted when the process lets them go."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import kombu
import pytest
from amqp.exceptions import NotFound

from shared.testing import namespaces
from shared.testing.pipeline import Pipeline

SHAPE = {"retry_delays": (0.3,), "delivery_limit": 7}  # a shape no other test leases


@pytest.fixture
def pool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private pool directory (the locks and files of this test only); TMPDIR points children at it."""
    monkeypatch.setattr(namespaces, "POOL_DIR", tmp_path / "erasure-test-namespaces")
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    session = namespaces.held()  # this process's own lease (erasure_namespace): in use, so never given back here
    yield tmp_path
    namespaces.release_all(keep=session)
    assert session <= namespaces.held()


def _exists(amqp_url: str, queue: str) -> bool:
    with kombu.Connection(amqp_url) as conn:
        try:
            conn.channel().queue_declare(queue, passive=True)
        except NotFound:
            return False
    return True


def _exchange_exists(amqp_url: str, exchange: str) -> bool:
    with kombu.Connection(amqp_url) as conn:
        try:
            conn.channel().exchange_declare(exchange, "topic", passive=True)
        except NotFound:
            return False
    return True


def test_a_namespace_stays_for_the_next_pipeline_and_goes_when_released(amqp_url: str, pool: Path) -> None:
    session = namespaces.held()
    first = Pipeline(amqp_url, workdir=pool, **SHAPE)
    first.declare()
    namespace = first.namespace
    first.close()
    assert _exists(amqp_url, f"{namespace}.ledger")  # idle, not deleted: no queue churn per test
    second = Pipeline(amqp_url, workdir=pool, **SHAPE)
    assert second.namespace == namespace
    second.close()
    namespaces.release_all(keep=session)
    assert not _exists(amqp_url, f"{namespace}.ledger")
    assert not _exists(amqp_url, f"{namespace}.ledger.retry.300ms")
    assert not _exchange_exists(amqp_url, f"{namespace}.events")
    assert not namespaces.declared_file(namespace).exists()


def test_giving_back_a_tests_own_leases_leaves_the_sessions_namespace_in_use(
        amqp_url: str, erasure_pipeline: Pipeline, pool: Path) -> None:
    """Releasing every lease also gave back the session's own: its queues were deleted and its lock freed while
    the process went on using the name, so another run could lease it too and the two crossed messages."""
    erasure_pipeline.declare()
    session = namespaces.held()
    assert any(lease.namespace == erasure_pipeline.namespace for lease in session)
    mine = Pipeline(amqp_url, workdir=pool, **SHAPE)
    mine.declare()
    mine.close()
    namespaces.release_all(keep=session)
    assert not _exists(amqp_url, f"{mine.namespace}.ledger")
    assert _exists(amqp_url, f"{erasure_pipeline.namespace}.ledger"), "the session's namespace is still declared"
    assert namespaces.held() == session


CHILD = textwrap.dedent("""
    import os, signal, sys, time
    from pathlib import Path
    from shared.testing.pipeline import Pipeline
    pipeline = Pipeline(sys.argv[1], workdir=Path(sys.argv[2]), retry_delays=(0.3,), delivery_limit=7)
    pipeline.declare()
    print(pipeline.namespace, flush=True)
    if sys.argv[3] == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(60)
""")


def _child(amqp_url: str, pool: Path, how: str) -> tuple[subprocess.Popen[str], str]:
    child = subprocess.Popen([sys.executable, "-c", CHILD, amqp_url, str(pool), how], stdout=subprocess.PIPE,
                             text=True, env={**os.environ, "TMPDIR": str(pool)})
    assert child.stdout is not None
    namespace = child.stdout.readline().strip()
    assert namespace, "the child did not lease a namespace"
    return child, namespace


def test_sigterm_deletes_the_namespace(amqp_url: str, pool: Path) -> None:
    child, namespace = _child(amqp_url, pool, "wait")
    assert _exists(amqp_url, f"{namespace}.ledger")
    child.send_signal(signal.SIGTERM)
    assert child.wait(30) == -signal.SIGTERM
    assert not _exists(amqp_url, f"{namespace}.ledger")
    assert not _exists(amqp_url, f"{namespace}.payment.dead")


def test_the_next_leaseholder_deletes_what_a_killed_process_left(amqp_url: str, pool: Path) -> None:
    child, namespace = _child(amqp_url, pool, "kill")
    assert child.wait(30) == -signal.SIGKILL
    assert _exists(amqp_url, f"{namespace}.ledger")  # nothing could run in the killed process
    from shared.settings import RuntimeSettings

    lease = namespaces.lease_namespace(RuntimeSettings(amqp_url=amqp_url, **SHAPE))
    assert lease.namespace == namespace
    assert not _exists(amqp_url, f"{namespace}.ledger")
    lease.release()
