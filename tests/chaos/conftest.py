"""Session-wide infrastructure of the chaos suite: a RabbitMQ node and a PostgreSQL cluster of its own."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.chaos.harness import PostgresCluster, RabbitNode, private_postgres, private_rabbit, reap_orphan_nodes
from tests.chaos.stack import Stack, build_stack


@pytest.fixture(scope="session")
def rabbit() -> Iterator[RabbitNode]:
    """A private RabbitMQ node on free ports (the shared broker on 5672 is never touched); first, the nodes an
    earlier, killed run left behind are stopped."""
    for name in reap_orphan_nodes():
        print(f"stopped {name}, left behind by a chaos run that was killed")
    with private_rabbit("the chaos suite's own RabbitMQ node", prefix="chaos-rabbit-") as node:
        yield node


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    """A private PostgreSQL cluster on a free port, run as the postgres OS user."""
    with private_postgres("the database fault") as cluster:
        yield cluster


@pytest.fixture
def make_stack(rabbit: RabbitNode, tmp_path: Path) -> Iterator[Callable[..., Stack]]:
    """Start a whole pipeline (sandbox + six service processes) in a fresh namespace; stopped afterwards."""
    stacks: list[Stack] = []

    def make(**options: Any) -> Stack:
        stack = build_stack(rabbit, tmp_path / f"stack{len(stacks)}", **options)
        stacks.append(stack)
        return stack

    yield make
    for stack in stacks:
        stack.close()
