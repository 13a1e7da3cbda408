"""Child processes of the bench: start them, talk to them line by line, sample their memory, profile them."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import IO, Any

import psutil

ROOT = Path(__file__).resolve().parent.parent


class Child:
    """A Python module run as a child process; its stdout lines arrive on a queue, stderr goes to a file."""

    def __init__(self, name: str, args: list[str], *, log_dir: Path, env: dict[str, str] | None = None,
                 stdin: bool = False) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, *args], cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self._log,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, args=(self.process.stdout,), daemon=True).start()

    def _read(self, stream: IO[bytes]) -> None:
        for raw in iter(stream.readline, b""):
            self.lines.put(raw.decode(errors="replace").rstrip("\n"))

    @property
    def pid(self) -> int:
        return self.process.pid

    def send(self, line: str) -> None:
        """Write one line to the child's stdin."""
        assert self.process.stdin is not None
        self.process.stdin.write(line.encode() + b"\n")
        self.process.stdin.flush()

    def expect(self, prefix: str, timeout: float) -> str:
        """The next stdout line starting with `prefix` (others are skipped); RuntimeError on timeout or exit."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError(f"{self.name}: no {prefix!r} line within {timeout:.0f}s; {self.tail()}")
            try:
                line = self.lines.get(timeout=min(left, 0.5))
            except queue.Empty:
                if self.process.poll() is not None and self.lines.empty():
                    raise RuntimeError(f"{self.name} exited with {self.process.returncode}; {self.tail()}") from None
                continue
            if line.startswith(prefix):
                return line[len(prefix):].strip()

    def result(self, timeout: float) -> dict[str, Any]:
        """The JSON the child printed after `result `."""
        return json.loads(self.expect("result ", timeout))

    def tail(self, lines: int = 12) -> str:
        """The end of the child's stderr log."""
        self._log.flush()
        text = self.log_path.read_text(errors="replace").splitlines()
        return "log tail:\n" + "\n".join(text[-lines:])

    def stop(self, grace: float = 15.0) -> int | None:
        """SIGTERM, then SIGKILL after `grace` seconds; return the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self._log.close()
        return self.process.returncode


def listening_pid(port: int) -> int | None:
    """The process listening on a local TCP port (the broker, for its memory), or None if it cannot be seen."""
    with contextlib.suppress(psutil.Error):
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
                return int(conn.pid)
    return None


class MemorySampler:
    """Samples the resident memory of processes every `interval` seconds, in a background thread."""

    def __init__(self, pids: dict[str, int], interval: float = 0.5) -> None:
        self._procs = {name: psutil.Process(pid) for name, pid in pids.items()}
        self.interval = interval
        self.samples: dict[str, list[tuple[float, float]]] = {name: [] for name in pids}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self.started = time.monotonic()

    def start(self) -> MemorySampler:
        """Begin sampling."""
        self.started = time.monotonic()
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            now = time.monotonic() - self.started
            for name, proc in self._procs.items():
                with contextlib.suppress(psutil.Error):
                    self.samples[name].append((round(now, 2), proc.memory_info().rss / 2**20))

    def stop(self) -> dict[str, dict[str, float]]:
        """Stop sampling; per process: peak, first-fifth and last-fifth average RSS in MiB."""
        self._stop.set()
        self._thread.join(5)
        summary = {}
        for name, series in self.samples.items():
            values = [mb for _, mb in series]
            if not values:
                continue
            fifth = max(1, len(values) // 5)
            summary[name] = {
                "peak_mb": round(max(values), 1),
                "early_mb": round(sum(values[:fifth]) / fifth, 1),
                "late_mb": round(sum(values[-fifth:]) / fifth, 1),
            }
        return summary


class Profile:
    """py-spy sampling of a running process into collapsed stacks, summarised as the hottest functions."""

    def __init__(self, pid: int, out: Path, *, rate: int = 250, duration: float | None = None) -> None:
        self.out = out
        self.process: subprocess.Popen[bytes] | None = None
        spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        if not Path(spy).exists():
            return
        args = [spy, "record", "--pid", str(pid), "--format", "raw", "--rate", str(rate), "--nonblocking",
                "--output", str(out)]
        if duration is not None:
            args += ["--duration", str(max(1, round(duration)))]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def finish(self, timeout: float = 30.0, top: int = 15) -> dict[str, Any] | None:
        """Wait for py-spy to write its file (the target has exited or the duration passed); summarise it."""
        if self.process is None:
            return None
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.send_signal(signal.SIGINT)
            self.process.wait(10)
        if not self.out.exists():
            return None
        return summarise_stacks(self.out.read_text().splitlines(), top=top)


def summarise_stacks(lines: list[str], *, top: int = 15) -> dict[str, Any]:
    """From collapsed stacks (`a;b;c 12`): total samples, and the top functions by own and by total time."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    samples = 0
    for line in lines:
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_short(f) for f in stack.split(";")]
        samples += count
        own[frames[-1]] += count
        kinds[_category(frames)] += count
        for frame in set(frames):
            total[frame] += count
    if not samples:
        return {"samples": 0, "own": [], "total": [], "categories": {}}

    def share(counter: Counter[str]) -> list[dict[str, Any]]:
        return [{"function": f, "percent": round(100 * c / samples, 1)} for f, c in counter.most_common(top)]

    return {"samples": samples, "own": share(own), "total": share(total),
            "categories": {k: round(100 * c / samples, 1) for k, c in kinds.most_common()}}


# Leaf-most frame's module → what the thread was doing; first match wins, checked from the leaf upwards.
CATEGORIES = (
    ("waiting on PostgreSQL (psycopg)", ("psycopg/",)),
    ("SQLite (sqlite3 calls)", ("do_execute (sqlalchemy/engine/default.py)", "do_commit (sqlalchemy",
                                "do_savepoint (sqlalchemy", "sqlite3")),
    ("broker I/O wait (py-amqp, pika poll)", ("amqp/transport.py", "PollPoller.poll", "_sigint_safe")),
    ("HTTP to the sandbox (httpx)", ("httpx/", "httpcore/", "_backends/sync.py")),
    ("SQLAlchemy Core/ORM (Python)", ("sqlalchemy/",)),
    ("codec: JSON, pydantic, HMAC", ("pydantic", "shared/codec.py", "hmac.py", "json/", "schemas/")),
    ("AMQP client (Python)", ("amqp/", "kombu/", "pika/")),
    ("logging (structlog)", ("structlog/", "logging/", "shared/logging.py")),
    ("metrics", ("prometheus_client/",)),
    ("handler code (services/)", ("services/",)),
    ("runtime code (shared/)", ("shared/",)),
)


def _category(frames: list[str]) -> str:
    for frame in reversed(frames):
        for name, marks in CATEGORIES:
            if any(mark in frame for mark in marks):
                return name
    return "other (threading, interpreter)"


def _short(frame: str) -> str:
    """`func (path/to/module.py:123)` → `func (module.py)`: stable across lines and machines."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    if not path:
        return name
    parts = Path(path).parts
    if "site-packages" in parts:
        parts = parts[parts.index("site-packages") + 1:]
    elif path.startswith(str(ROOT)):
        parts = Path(path).relative_to(ROOT).parts
    elif Path(path).is_absolute():
        parts = parts[-2:]
    return f"{name} ({'/'.join(parts)})"
