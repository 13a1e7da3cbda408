"""`erasure run all` supervises every service: a killed child comes back; Ctrl-C stops all, no orphans."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from services.registry import SERVICES
from shared.testing import wait_until
from shared.testing.ports import free_port

ROOT = Path(__file__).resolve().parents[2]


def _children(pid: int) -> dict[str, int]:
    """Child processes of the supervisor by service name (from their command lines)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            args = [a.decode() for a in cmdline if a]
            name = args[-1] if "run" in args or "console" in args else "sandbox"
            found[name] = int(entry.name)
    return found


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _ready(port: int) -> bool:
    return _answers(f"http://127.0.0.1:{port}/readyz")


@pytest.mark.slow
def test_run_all_restarts_a_killed_service_and_stops_cleanly_on_sigint(amqp_url, tmp_path) -> None:
    from shared.testing import Pipeline

    pipeline = Pipeline(amqp_url, workdir=tmp_path)  # a pooled namespace shaped like production's
    ports = {name: free_port() for name in SERVICES}
    console_port = free_port()
    env = {
        **os.environ,
        "ERASURE_AMQP_URL": amqp_url,
        "ERASURE_NAMESPACE": pipeline.namespace,
        "ERASURE_VAR_DIR": str(tmp_path),
        "ERASURE_SANDBOX_URL": f"http://127.0.0.1:{free_port()}",
        "ERASURE_SANDBOX_SMTP_PORT": str(free_port()),
        "ERASURE_CONSOLE_PORT": str(console_port),
        **{f"ERASURE_{name.upper()}_HTTP_PORT": str(port) for name, port in ports.items()},
    }
    log = (tmp_path / "run.log").open("wb")
    supervisor = subprocess.Popen([sys.executable, "-m", "services.cli", "run", "all"], cwd=ROOT, env=env,
                                  stdout=log, stderr=subprocess.STDOUT)
    try:
        for name, port in ports.items():
            wait_until(lambda p=port: _ready(p), timeout=60, interval=0.3, what=f"{name} ready")
        wait_until(lambda: _answers(f"http://127.0.0.1:{console_port}/healthz"), timeout=60, interval=0.3,
                   what="console ready")
        before = _children(supervisor.pid)
        assert set(before) == {*SERVICES, "sandbox", "console"}

        os.kill(before["ledger"], signal.SIGKILL)
        wait_until(lambda: _children(supervisor.pid).get("ledger") not in (None, before["ledger"]),
                   timeout=30, what="ledger restarted")
        wait_until(lambda: _ready(ports["ledger"]), timeout=60, interval=0.3, what="ledger ready again")

        children = _children(supervisor.pid)
        supervisor.send_signal(signal.SIGINT)
        assert supervisor.wait(60) == 0
        for name, pid in children.items():
            assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text(), \
                f"{name} (pid {pid}) outlived the supervisor"
        output = (tmp_path / "run.log").read_text()
        assert "ledger exited with -9" in output and "restarting" in output
        assert "all stopped" in output
        assert "ledger            | " in output, "child output is prefixed with its name"
    finally:
        if supervisor.poll() is None:
            supervisor.kill()
        log.close()
        pipeline.close()


def _listening(port: int) -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), 1.0):
            return True
    except OSError:
        return False


@pytest.mark.slow
def test_run_all_starts_a_private_broker_when_none_answers_and_stops_it_on_sigint(tmp_path) -> None:
    """`make run` on a machine whose broker is not where the URL points: a private node under var/."""
    from services.cli.local_broker import rabbitmq_server

    if rabbitmq_server() is None:
        pytest.skip("rabbitmq-server is not installed here")
    amqp_port = free_port()
    assert not _listening(amqp_port)
    ports = {name: free_port() for name in SERVICES}
    env = {
        **os.environ,
        "ERASURE_AMQP_URL": f"amqp://erasure-dev:dev-secret@127.0.0.1:{amqp_port}/private",
        "ERASURE_VAR_DIR": str(tmp_path / "var"),
        "ERASURE_SANDBOX_URL": f"http://127.0.0.1:{free_port()}",
        "ERASURE_SANDBOX_SMTP_PORT": str(free_port()),
        "ERASURE_CONSOLE_PORT": str(free_port()),
        **{f"ERASURE_{name.upper()}_HTTP_PORT": str(port) for name, port in ports.items()},
    }
    log_path = tmp_path / "run.log"
    supervisor = subprocess.Popen([sys.executable, "-m", "services.cli", "run", "all", "--start-broker"], cwd=ROOT,
                                  env=env, stdout=log_path.open("wb"), stderr=subprocess.STDOUT)
    try:
        for name, port in ports.items():  # ready = connected to the broker it was given, with its account
            wait_until(lambda p=port: _ready(p), timeout=120, interval=0.5, what=f"{name} ready")
        out = log_path.read_text()
        assert f"Started the private RabbitMQ node erasure-{amqp_port}@localhost" in out, out
        data = tmp_path / "var" / "rabbitmq" / str(amqp_port)
        assert (data / "mnesia").is_dir() and f"listeners.tcp.local = 127.0.0.1:{amqp_port}" in \
            (data / "rabbitmq.conf").read_text()
        supervisor.send_signal(signal.SIGINT)
        assert supervisor.wait(90) == 0
        assert not _listening(amqp_port), "the private node outlived `run`"
        assert "all stopped" in log_path.read_text()
    finally:
        if supervisor.poll() is None:
            supervisor.kill()
            supervisor.wait()


def test_run_all_says_what_to_install_when_no_broker_can_be_started(monkeypatch, tmp_path) -> None:
    """A machine with neither rabbitmq-server nor a Docker engine (this one has both: hidden from the CLI)."""
    from click.testing import CliRunner

    from services.cli import local_broker
    from services.cli.main import cli

    monkeypatch.setattr(local_broker, "rabbitmq_server", lambda: None)
    monkeypatch.setattr(local_broker, "docker_available", lambda: False)
    monkeypatch.setenv("ERASURE_AMQP_URL", f"amqp://guest:guest@127.0.0.1:{free_port()}/%2F")
    result = CliRunner().invoke(cli, ["run", "all", "--start-broker"])
    assert result.exit_code == 1
    assert "apt-get install rabbitmq-server" in result.output and "docker.io" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    monkeypatch.setenv("ERASURE_AMQP_URL", f"amqp://guest:guest@192.0.2.1:{free_port()}/%2F")
    result = CliRunner().invoke(cli, ["run", "all", "--start-broker"])
    assert result.exit_code == 1 and "not on this machine" in result.output


@pytest.mark.slow
def test_start_broker_runs_a_container_where_no_rabbitmq_server_is_installed(monkeypatch) -> None:
    """The second way: a Docker engine and the RabbitMQ image, the server script hidden from the CLI."""
    from services.cli import local_broker
    from shared.settings import RuntimeSettings

    image = os.environ.get("RABBITMQ_IMAGE") or local_broker.DEFAULT_IMAGE
    if not local_broker.docker_available() or subprocess.run(
            ["docker", "image", "inspect", image], capture_output=True, check=False).returncode != 0:
        pytest.skip(f"needs a Docker engine and the image {image} (`make images`)")
    monkeypatch.setattr(local_broker, "rabbitmq_server", lambda: None)
    port = free_port()
    settings = RuntimeSettings(amqp_url=f"amqp://erasure-dev:dev-secret@127.0.0.1:{port}/private")
    with local_broker.ensure_broker(settings) as started:
        assert started is not None and f"erasure-rabbitmq-{port}" in started
        assert local_broker.broker_answers(settings), "the URL's account and vhost exist in the new broker"
    assert not _listening(port), "the container outlived the block"
    wait_until(lambda: subprocess.run(["docker", "inspect", f"erasure-rabbitmq-{port}"], capture_output=True,
                                      check=False).returncode != 0,
               timeout=30, interval=0.5, what="the stopped container removed (--rm)")
