"""A chaos run killed outright leaves its private RabbitMQ node running: the next run stops it and removes it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.chaos.harness import RABBIT_BIN, reap_orphan_nodes

ROOT = Path(__file__).resolve().parents[2]
START_AND_WAIT = """
import pathlib, sys, tempfile, time
from tests.chaos.harness import RabbitNode
node = RabbitNode(pathlib.Path(tempfile.mkdtemp(prefix="chaos-orphan-"))).start()
print(node.root, flush=True)
time.sleep(600)
"""


@pytest.mark.chaos
@pytest.mark.timeout(120)
def test_a_node_whose_run_was_killed_is_stopped_and_its_directory_removed() -> None:
    if not (RABBIT_BIN / "rabbitmq-server").exists():
        pytest.skip(f"needs {RABBIT_BIN}/rabbitmq-server")
    run = subprocess.Popen([sys.executable, "-c", START_AND_WAIT], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert run.stdout is not None
    root = Path(run.stdout.readline().strip())
    assert root.is_dir(), "the node started"
    run.kill()  # as SIGKILL, or a SIGTERM that skips teardown, leaves it
    run.wait()
    name = f"chaos-{run.pid}@localhost"
    assert name in reap_orphan_nodes()
    assert not root.exists()
    assert name not in reap_orphan_nodes(), "stopped for good"
