"""`erasure run all`: every service (and the sandbox) as child processes, restarted with back-off if they die.

Each child's output is prefixed with its name; Ctrl-C or SIGTERM stops them all (SIGTERM lets each finish
its in-flight work) and leaves no orphan.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

from services.registry import SERVICES

STOP_GRACE_S = 20.0
MAX_BACKOFF_S = 30.0


@dataclass
class Child:
    name: str
    argv: list[str]
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    started_at: float = 0.0
    next_start: float = 0.0
    pumps: list[threading.Thread] = field(default_factory=list)


def _pump(child: Child, stream: object, width: int) -> None:
    prefix = f"{child.name:<{width}} | ".encode()
    for line in iter(stream.readline, b""):  # type: ignore[attr-defined]
        sys.stdout.buffer.write(prefix + line)
        sys.stdout.buffer.flush()


def _start(child: Child, env: dict[str, str], width: int) -> None:
    child.process = subprocess.Popen(
        child.argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, start_new_session=True
    )
    child.started_at = time.monotonic()
    pump = threading.Thread(target=_pump, args=(child, child.process.stdout, width), daemon=True)
    pump.start()
    child.pumps = [pump]


def _say(message: str) -> None:
    sys.stdout.write(f"{'supervisor':<17} | {message}\n")
    sys.stdout.flush()


def run_all(*, with_sandbox: bool = True, services: tuple[str, ...] = SERVICES, with_console: bool = True) -> int:
    """Supervise the services (and the sandbox and console) until interrupted; return the exit code for the shell."""
    python = sys.executable
    children = [Child(name, [python, "-m", "services.cli", "run", name]) for name in services]
    if with_console:
        children.append(Child("console", [python, "-m", "services.cli", "console"]))
    if with_sandbox:
        from urllib.parse import urlsplit

        from services.sandbox.defaults import DEFAULT_SMTP_PORT, sandbox_url

        http_port = str(urlsplit(sandbox_url()).port or 80)
        smtp_port = os.environ.get("ERASURE_SANDBOX_SMTP_PORT", str(DEFAULT_SMTP_PORT))
        children.insert(0, Child("sandbox", [python, "-m", "services.sandbox", "--http-port", http_port,
                                             "--smtp-port", smtp_port]))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.setdefault("ERASURE_LOG_FORMAT", "console" if sys.stdout.isatty() else "json")
    width = max(len(c.name) for c in children)
    stopping = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.set())
    _say(f"starting {', '.join(c.name for c in children)}")
    for child in children:
        _start(child, env, width)
    while not stopping.wait(0.2):
        now = time.monotonic()
        for child in children:
            if child.process is None:
                if now >= child.next_start:
                    _start(child, env, width)
                continue
            code = child.process.poll()
            if code is None:
                continue
            ran = now - child.started_at
            if ran > 60:
                child.restarts = 0  # it ran well for a while: start the back-off afresh
            delay = min(2 ** child.restarts * 0.5, MAX_BACKOFF_S)
            child.restarts += 1
            child.process = None
            child.next_start = now + delay
            _say(f"{child.name} exited with {code} after {ran:.1f}s; restarting in {delay:.1f}s")
    _say("stopping all services")
    alive = [c.process for c in children if c.process is not None and c.process.poll() is None]
    for process in alive:
        process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    for process in alive:
        try:
            process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _say(f"pid {process.pid} did not stop in {STOP_GRACE_S:.0f}s; killing it")
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    for child in children:
        for pump in child.pumps:
            pump.join(timeout=2)
    _say("all stopped")
    return 0
