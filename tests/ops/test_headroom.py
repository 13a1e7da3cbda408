"""The broker's headroom as `erasure doctor` reports it: read from the real node, warned about with the fix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from ops.headroom import Headroom, HeadroomUnknown, read
from services.cli.main import cli

MIB = 2**20


def _headroom(**changes: int) -> Headroom:
    figures = {"fd_used": 100, "fd_limit": 65536, "memory_used": 200 * MIB, "memory_limit": 8000 * MIB,
               "queues": 30, "connections": 5}
    return Headroom("test figures", **{**figures, **changes})


def test_a_roomy_node_has_no_warning() -> None:
    assert _headroom().warnings() == []


def test_the_debian_default_descriptor_limit_is_warned_about_with_the_fix() -> None:
    (warning,) = _headroom(fd_limit=1024).warnings()
    assert "1024 is below 4096" in warning and "about 341 quorum queues" in warning and "LimitNOFILE" in warning


def test_descriptors_nearly_used_up_name_the_leftover_queues() -> None:
    (warning,) = _headroom(fd_used=3400, fd_limit=4096, queues=1100).warnings()
    assert "3400 of 4096 descriptors in use with 1100 queues" in warning and "list_queues" in warning


def test_memory_near_the_watermark_is_warned_about() -> None:
    (warning,) = _headroom(memory_used=900 * MIB, memory_limit=1000 * MIB).warnings()
    assert "900 MiB of a 1000 MiB watermark" in warning


def test_the_real_node_is_read(amqp_url: str, erasure_pipeline) -> None:
    erasure_pipeline.declare()
    try:
        found = read(amqp_url)
    except HeadroomUnknown as exc:
        pytest.skip(f"no management API and no local rabbitmqctl: {exc}")
    assert 0 < found.fd_used <= found.fd_limit
    assert found.memory_used > 0 and found.memory_limit > 0
    assert found.queues >= len(list(erasure_pipeline.queue_names()))


def test_doctor_shows_the_headroom(amqp_url: str, tmp_path: Path) -> None:
    env = {"ERASURE_AMQP_URL": amqp_url, "ERASURE_VAR_DIR": str(tmp_path / "var")}
    result = CliRunner().invoke(cli, ["doctor", "--no-database", "--json"], env=env)
    assert result.exit_code in (0, 1), result.output  # 1: the keys check may fail here; the broker's is asked
    [broker] = [check for check in json.loads(result.stdout)["checks"] if "headroom" in check]
    assert broker["ok"], broker
    if broker["headroom"].startswith("not read"):
        pytest.skip(broker["headroom"])
    assert broker["headroom_figures"]["fd_limit"] > 0 and "descriptors" in broker["headroom"]
    assert broker["warnings"] == Headroom(**broker["headroom_figures"]).warnings()
