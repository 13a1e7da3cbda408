"""The images, compose file and ErasurePipelineContainer run for real on a Docker engine (skipped without one).

`make images` builds what these start; `make test-containers` runs them with the rest of the container path.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy.broker import NAMESPACE, account_name, dev_password
from deploy.generate import DEPLOY_DIR, database_name
from schemas.examples import example_purchase
from services.registry import SERVICES
from shared.settings import HTTP_PORTS
from shared.testing import wait_until
from shared.testing.containers import ERASURE_IMAGE, ErasurePipelineContainer
from shared.testing.infra import docker_available, postgres_image, rabbitmq_image
from shared.testing.ports import free_port

ROOT = DEPLOY_DIR.parent
SLICES = {"account", "installer_sharing", "payment", "bookkeeping", "newsletter"}

pytestmark = [pytest.mark.slow, pytest.mark.containers, pytest.mark.timeout(600)]


def _image_exists(name: str) -> bool:
    return subprocess.run(["docker", "image", "inspect", name], capture_output=True, check=False).returncode == 0


@pytest.fixture(scope="module")
def images() -> dict[str, str]:
    """The images the container path starts; skips unless a Docker engine runs and holds them."""
    if not docker_available():
        pytest.skip("no Docker engine answers")
    wanted = {"erasure": os.environ.get("ERASURE_IMAGE") or ERASURE_IMAGE, "rabbitmq": rabbitmq_image(),
              "postgres": postgres_image()}
    missing = [name for name in wanted.values() if not _image_exists(name)]
    if missing:
        pytest.skip(f"images missing: {missing}; build them with `make images`")
    return wanted


def _request_id(demo_output: str) -> str:
    [request_id] = re.findall(r"UserDeregistered published \(request ([0-9a-f-]{36})\)", demo_output)
    return request_id


def test_pipeline_container_takes_a_deregistration_to_a_verified_receipt(images: dict[str, str]) -> None:
    with ErasurePipelineContainer(images["erasure"]) as pipeline:
        user_id = f"u-it-{uuid.uuid4().hex[:6]}"
        pipeline.publish(example_purchase(user_id))
        request_id = pipeline.deregister(user_id)
        completed = pipeline.await_completed(request_id, timeout=120)
        assert completed["data"]["request_id"] == request_id
        assert re.fullmatch(r"[0-9a-f]{64}", completed["data"]["receipt_hash"])
        assert pipeline.verify_receipt(request_id)
        status = pipeline.status(request_id)
        assert status["status"] == "complete" and status["missing"] == [], status
        assert {s["service"] for s in status["slices"]} == SLICES
        assert not pipeline.verify_receipt(str(uuid.uuid4())), "an unknown request has no receipt to verify"


# ---- compose -----------------------------------------------------------------------------------------------
def _compose_command() -> list[str]:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if subprocess.run(["docker", "compose", "version"], capture_output=True, check=False).returncode == 0:
        return ["docker", "compose"]
    pytest.skip("neither docker-compose nor the docker compose plugin is installed")
    raise AssertionError  # unreachable: skip raises


@pytest.fixture
def compose_up(images: dict[str, str]) -> Iterator[dict[str, str]]:
    """`compose up` of the whole pipeline under a private project name on free host ports; `down -v` after."""
    ports = {"HOST_AMQP_PORT": free_port(), "HOST_MANAGEMENT_PORT": free_port(), "HOST_PROMETHEUS_PORT": free_port(),
             "HOST_POSTGRES_PORT": free_port(), "HOST_SANDBOX_PORT": free_port(), "HOST_SMTP_PORT": free_port(),
             **{f"HOST_{s.upper()}_PORT": free_port() for s in HTTP_PORTS}}
    env = {**os.environ, **{k: str(v) for k, v in ports.items()}, "ERASURE_IMAGE": images["erasure"],
           "RABBITMQ_IMAGE": images["rabbitmq"], "POSTGRES_IMAGE": images["postgres"]}
    project = f"erasure-test-{uuid.uuid4().hex[:6]}"
    compose = [*_compose_command(), "-p", project, "-f", str(DEPLOY_DIR / "compose.yaml")]
    up = subprocess.run([*compose, "up", "-d"], env=env, capture_output=True, text=True, timeout=300, check=False)
    try:
        assert up.returncode == 0, up.stderr[-3000:]

        def healthy() -> bool:
            ids = subprocess.run([*compose, "ps", "-q"], env=env, capture_output=True, text=True, check=True)
            states = subprocess.run(["docker", "inspect", "-f", "{{.Name}} {{.State.Health.Status}}",
                                     *ids.stdout.split()], capture_output=True, text=True, check=True).stdout
            return states.count(" healthy") == len(SERVICES) + 3  # broker, database, sandbox, services

        wait_until(healthy, timeout=240, interval=3, what="every compose service healthy")
        yield {k: str(v) for k, v in ports.items()}
    finally:
        logs = subprocess.run([*compose, "logs", "--tail", "30"], env=env, capture_output=True, text=True,
                              check=False)
        subprocess.run([*compose, "down", "-v", "--timeout", "20"], env=env, capture_output=True, timeout=300,
                       check=False)
        sys.stdout.write(logs.stdout[-5000:])


def _host_env(ports: dict[str, str]) -> dict[str, str]:
    """Environment of an operator on the host reaching the compose pipeline through its published ports."""
    admin = account_name(NAMESPACE, "admin")
    env = {**os.environ, "ERASURE_NAMESPACE": NAMESPACE,
           "ERASURE_AMQP_URL": f"amqp://{admin}:{dev_password(admin)}@127.0.0.1:{ports['HOST_AMQP_PORT']}/{NAMESPACE}"}
    for service in ("account", "ledger"):
        name = database_name(service)
        env[f"ERASURE_{service.upper()}_DATABASE_URL"] = (
            f"postgresql+psycopg://{name}:{dev_password(name)}@127.0.0.1:{ports['HOST_POSTGRES_PORT']}/{name}")
    return env


def test_compose_pipeline_runs_the_demo_to_a_complete_verified_receipt(compose_up: dict[str, str]) -> None:
    env = _host_env(compose_up)
    erasure = str(Path(sys.executable).with_name("erasure"))
    demo = subprocess.run([erasure, "demo", "--timeout", "120"], env=env, capture_output=True, text=True,
                          timeout=200, check=False)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    request_id = _request_id(demo.stdout)
    status = subprocess.run([erasure, "status", request_id, "--json"], env=env, capture_output=True, text=True,
                            check=True)
    report = json.loads(status.stdout)
    assert report["status"] == "complete", report
    assert {s["service"] for s in report["slices"]} == SLICES and report["missing"] == []
    installer = next(s for s in report["slices"] if s["service"] == "installer_sharing")
    assert installer["outcome"] != "failed" and installer["recipients_notified"], installer
    verified = subprocess.run([erasure, "receipt", request_id, "--verify"], env=env, capture_output=True, text=True,
                              check=False)
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_compose_cluster_profile_forms_three_nodes_with_three_replicas_per_queue(images: dict[str, str]) -> None:
    ports = {f"HOST_CLUSTER_PORT_{n}": str(free_port()) for n in (1, 2, 3)}
    env = {**os.environ, **ports, "RABBITMQ_IMAGE": images["rabbitmq"]}
    compose = [*_compose_command(), "-p", f"erasure-cluster-{uuid.uuid4().hex[:6]}", "-f",
               str(DEPLOY_DIR / "compose.yaml"), "--profile", "cluster"]
    try:
        up = subprocess.run([*compose, "up", "-d", "rabbitmq-1", "rabbitmq-2", "rabbitmq-3", "rabbitmq-grow"],
                            env=env, capture_output=True, text=True, timeout=400, check=False)
        assert up.returncode == 0, up.stderr[-3000:]

        def grown() -> bool:
            ids = subprocess.run([*compose, "ps", "-q", "rabbitmq-grow"], env=env, capture_output=True, text=True,
                                 check=True).stdout.split()
            state = subprocess.run(["docker", "inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", *ids],
                                   capture_output=True, text=True, check=True).stdout.strip()
            assert state in ("running 0", "exited 0", "created 0"), state
            return state == "exited 0"

        wait_until(grown, timeout=300, interval=3, what="rabbitmq-grow done")
        node = subprocess.run([*compose, "ps", "-q", "rabbitmq-1"], env=env, capture_output=True, text=True,
                              check=True).stdout.strip()
        queues = subprocess.run(["docker", "exec", node, "rabbitmqctl", "list_queues", "-q", "-p", NAMESPACE,
                                 "--formatter", "json", "name", "type", "members"],
                                capture_output=True, text=True, timeout=120, check=True).stdout
        quorum = [q for q in json.loads(queues) if q["type"] == "quorum"]
        assert quorum and {q["name"] for q in quorum} >= {f"{NAMESPACE}.{s}" for s in SERVICES}
        for queue in quorum:
            assert sorted(queue["members"]) == ["rabbit@rabbitmq-1", "rabbit@rabbitmq-2", "rabbit@rabbitmq-3"], queue
    finally:
        subprocess.run([*compose, "down", "-v", "--timeout", "20"], env=env, capture_output=True, timeout=300,
                       check=False)
