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
