"""Real processes for the chaos suite: a private RabbitMQ node, a private PostgreSQL cluster, the sandbox and
the six services as child processes — each of which a test may stop, cut off or kill.

The shared RabbitMQ (5672) and PostgreSQL (5432) of this machine are never touched: everything here runs on
ports picked free at start, with data under a temporary directory removed at the end.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import httpx
import kombu
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, text

from services.cli.local_broker import node_files
from services.registry import SERVICES
from services.sandbox import SandboxControl
from shared.testing.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
RESULTS = Path(__file__).resolve().parent / "results" / "latest.json"
RABBIT_BIN = Path("/usr/lib/rabbitmq/bin")
POSTGRES_BIN = Path("/usr/lib/postgresql/15/bin")
T = TypeVar("T")


def poll(check: Callable[[], T], *, timeout: float, interval: float = 0.2, what: str = "") -> T:
    """Call check() until it returns something truthy; AssertionError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what or check}")
        time.sleep(interval)


def record_results(name: str, figures: Mapping[str, Any]) -> None:
    """Merge one test's figures into tests/chaos/results/latest.json (the file docs/RELIABILITY.md cites)."""
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    current = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    current[name] = {**figures, "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    RESULTS.write_text(json.dumps(current, indent=2, sort_keys=True) + "\n")
    from tests import docs_figures  # the document that cites the file is rewritten with it, never left stale

    docs_figures.main([])


class BrokerQueries:
    """What a test asks of its broker, over AMQP to `url` and rabbitmqctl (`ctl`): a single node or a cluster."""

    url: str

    def ctl(self, *args: str, timeout: float = 60) -> str:
        raise NotImplementedError

    def queues(self, prefix: str) -> dict[str, dict[str, Any]]:
        """Every queue whose name starts with `prefix`: messages (ready + unacked) and arguments."""
        out = self.ctl("list_queues", "-q", "name", "messages", "arguments", "--formatter", "json")
        return {q["name"]: q for q in json.loads(out or "[]") if q["name"].startswith(prefix)}

    def declared(self, queues: Iterable[str]) -> dict[str, Any]:
        """Each queue's (queue, message_count, consumer_count) as a passive declare answers it: milliseconds over
        AMQP, where rabbitmqctl takes seconds on a loaded machine. message_count is what is ready."""
        with kombu.Connection(self.url, connect_timeout=5) as conn:
            channel = conn.channel()
            return {name: channel.queue_declare(name, passive=True) for name in queues}

    def ready_count(self, queue: str) -> int:
        """Messages ready in a queue."""
        return int(self.declared([queue])[queue].message_count)

    def take(self, queue: str) -> list[Any]:
        """Every message ready in a queue, removed from it."""
        taken = []
        with kombu.Connection(self.url) as conn:
            channel = conn.channel()
            while (message := channel.basic_get(queue, no_ack=False)) is not None:
                taken.append(message)
            for message in taken:
                channel.basic_ack(message.delivery_tag)
        return taken

    def delete_queues(self, prefix: str) -> None:
        """Delete the queues and exchanges of a finished test, so the node stays light for the next."""
        names = list(self.queues(prefix))
        with kombu.Connection(self.url) as conn:
            channel = conn.channel()
            for name in names:
                channel.queue_delete(name)
            for exchange in (f"{prefix}events", f"{prefix}dead"):
                channel.exchange_delete(exchange)


class RabbitNode(BrokerQueries):
    """A RabbitMQ node of our own (own name, ports, data, cookie), driven with rabbitmqctl -n <node>."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.node = f"chaos-{os.getpid()}@localhost"
        self.port = free_port()
        self.dist_port = free_port()
        # An epmd of our own: the shared one may be restarted under us, and Erlang nodes never re-register.
        self.epmd_port = free_port()
        self.url = f"amqp://guest:guest@127.0.0.1:{self.port}/%2F"

    def _env(self) -> dict[str, str]:
        root = self.root
        return {
            **{k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))},
            "HOME": str(root / "home"),  # the Erlang cookie lives here, apart from the shared node's
            "ERL_EPMD_PORT": str(self.epmd_port),
            **node_files(root, self.node, self.port, self.dist_port),
        }

    def start(self) -> RabbitNode:
        """Boot the node and wait until it is fully running."""
        self.configure()
        self.boot()
        return self

    def configure(self, extra_config: str = "") -> None:
        """Write the node's Erlang cookie (unless its HOME has one), plugins and rabbitmq.conf (+ `extra_config`)."""
        home = Path(self._env()["HOME"])
        for directory in (home, self.root / "mnesia", self.root / "log"):
            directory.mkdir(parents=True, exist_ok=True)
        cookie = home / ".erlang.cookie"
        if not cookie.exists():
            cookie.write_text(secrets.token_hex(16).upper())
            cookie.chmod(0o400)
        (self.root / "enabled_plugins").write_text("[].\n")
        (self.root / "rabbitmq-env.conf").write_text("")
        (self.root / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.port}\n"
            "loopback_users.guest = true\n"
            "disk_free_limit.absolute = 50MB\n"
            "log.console = false\n"
            + extra_config
        )

    def boot(self, timeout: float = 90) -> None:
        """Start the Erlang node detached and wait until RabbitMQ runs on it."""
        (self.root / "node.pid").unlink(missing_ok=True)
        subprocess.run([str(RABBIT_BIN / "rabbitmq-server"), "-detached"], env=self._env(), check=True,
                       capture_output=True, timeout=60)
        self._tool("rabbitmq-diagnostics", "wait", str(self.root / "node.pid"), "--timeout", str(int(timeout)),
                   timeout=timeout + 10)

    def _tool(self, tool: str, *args: str, timeout: float = 60) -> str:
        done = subprocess.run([str(RABBIT_BIN / tool), "-n", self.node, *args], env=self._env(),
                              capture_output=True, text=True, timeout=timeout, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{tool} {' '.join(args)} failed ({done.returncode}): {done.stderr or done.stdout}")
        return done.stdout

    def ctl(self, *args: str, timeout: float = 60) -> str:
        """Run rabbitmqctl against this node; its output, or RuntimeError."""
        return self._tool("rabbitmqctl", *args, timeout=timeout)

    def stop_app(self) -> None:
        """Stop the RabbitMQ application (the Erlang node stays): every connection drops."""
        self.ctl("stop_app")

    def start_app(self) -> None:
        """Start the application again and wait until it accepts connections."""
        self.ctl("start_app", timeout=120)
        self.ctl("await_startup", timeout=120)

    def stop(self, *, keep_data: bool = False) -> None:
        """Stop the node and its epmd, and remove its data (unless `keep_data`: its files are to be read; then
        remove() when done)."""
        try:
            self.ctl("stop", timeout=60)
        except (RuntimeError, subprocess.TimeoutExpired):
            pid_file = self.root / "node.pid"
            if pid_file.exists():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid_file.read_text().strip()), signal.SIGKILL)
        subprocess.run(["epmd", "-port", str(self.epmd_port), "-kill"], capture_output=True, timeout=10,
                       check=False)
        if keep_data:
            return
        if os.environ.get("CHAOS_KEEP_NODE"):  # to read the node's log after a failure
            print(f"chaos node's data and log kept in {self.root}")
            return
        self.remove()

    def remove(self) -> None:
        """Remove the stopped node's data, configuration and log."""
        shutil.rmtree(self.root, ignore_errors=True)


_OUR_NODE = re.compile(r"^(?:chaos|cluster\d+)-(\d+)@localhost$")


def reap_orphan_nodes() -> list[str]:
    """Stop the private RabbitMQ nodes a killed chaos run left behind, and remove their directories.

    Our nodes are named after the pytest process that started them (`chaos-<pid>`, `cluster<n>-<pid>`); a node
    whose process is gone belongs to a run that was killed (SIGTERM or SIGKILL skip the fixtures' teardown) and
    would otherwise hold its memory, ports and Erlang distribution name until the machine restarts. Returns the
    names stopped."""
    stopped = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if b"beam.smp" not in (proc / "cmdline").read_bytes():
                continue
            env = dict(item.split("=", 1) for item in (proc / "environ").read_text(errors="replace").split("\0")
                       if "=" in item)
        except OSError:  # gone meanwhile, or not ours to read
            continue
        match = _OUR_NODE.match(env.get("RABBITMQ_NODENAME", ""))
        if match is None or Path(f"/proc/{match.group(1)}").exists():
            continue
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(proc.name), signal.SIGKILL)
        stopped.append(env["RABBITMQ_NODENAME"])
        base = Path(env.get("RABBITMQ_MNESIA_BASE", "/nonexistent"))
        root = next((d for d in base.parents if d.name.startswith("chaos-")), None)
        if root is not None and root.parent == Path(tempfile.gettempdir()):
            shutil.rmtree(root, ignore_errors=True)
    return stopped


@contextlib.contextmanager
def private_rabbit(needed_for: str, *, prefix: str, root: bool = False) -> Iterator[RabbitNode]:
    """A RabbitMQ node of our own in a new temporary directory; stopped, and its data removed, on exit. The test
    is skipped, saying what for, where `rabbitmq-server` or `epmd` is missing (or root, when `root` is asked)."""
    import pytest

    if not (RABBIT_BIN / "rabbitmq-server").exists() or not shutil.which("epmd") or (root and os.geteuid() != 0):
        pytest.skip(f"{needed_for} needs {RABBIT_BIN}/rabbitmq-server and epmd" + (" and root" if root else ""))
    node = RabbitNode(Path(tempfile.mkdtemp(prefix=prefix))).start()
    try:
        yield node
    finally:
        node.stop()


class PostgresCluster:
    """A PostgreSQL 15 cluster of our own in a temporary directory, run as the postgres OS user."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="chaos-pg-"))
        self.root.chmod(0o755)
        shutil.chown(self.root, "postgres")
        self.port = free_port()
        self.admin_url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _pg(self, tool: str, *args: str, timeout: float = 60) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", str(POSTGRES_BIN / tool), *args], check=True,
                       capture_output=True, timeout=timeout, cwd=self.root)

    def start(self) -> PostgresCluster:
        """initdb on first start; then start the server and wait until it accepts connections."""
        data = self.root / "data"
        if not data.exists():
            self._pg("initdb", "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync")
        # fsync and full-page writes can go (the machine does not crash, only the server does); commits must
        # stay synchronous: with synchronous_commit=off an acknowledged commit dies with the server, and the
        # database outage then shows an event acked without its inbox row (the pipeline trusts its commits).
        options = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c max_connections=300 "
                   "-c fsync=off -c full_page_writes=off")
        self._pg("pg_ctl", "-D", str(data), "-o", options, "-l", str(self.root / "server.log"), "-w", "start")
        return self

    def stop(self, mode: str = "immediate") -> None:
        """Stop the server; `immediate` drops every connection at once, as a crash would."""
        self._pg("pg_ctl", "-D", str(self.root / "data"), "-m", mode, "-w", "stop")

    def create_database(self, name: str) -> str:
        """A new, empty database; its URL."""
        engine = create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        engine.dispose()
        return self.admin_url.rsplit("/", 1)[0] + f"/{name}"

    def destroy(self) -> None:
        """Stop the server (if running) and remove the cluster."""
        with contextlib.suppress(subprocess.CalledProcessError, subprocess.TimeoutExpired):
            self.stop("fast")
        shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def private_postgres(needed_for: str) -> Iterator[PostgresCluster]:
    """A PostgreSQL cluster of our own for the block, removed after it; the test is skipped, saying what for,
    where `initdb` or root (to run it as the postgres user) is missing."""
    import pytest

    if not (POSTGRES_BIN / "initdb").exists() or os.geteuid() != 0:
        pytest.skip(f"{needed_for} needs {POSTGRES_BIN}/initdb and root (to run it as the postgres user)")
    cluster = PostgresCluster().start()
    try:
        yield cluster
    finally:
        cluster.destroy()


class Child:
    """One child process (`python -m <args>`) with its output appended to a log file, restartable."""

    def __init__(self, name: str, args: list[str], env: Mapping[str, str], log_path: Path) -> None:
        self.name = name
        self.args = args
        self.env = dict(env)
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self.kills = 0

    def start(self) -> Child:
        """Start (or start again) the process."""
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen([sys.executable, "-m", *self.args], cwd=ROOT, env=self.env,
                                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        return self

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill9(self) -> None:
        """SIGKILL: no cleanup, no flush, no ack — a crash."""
        if self.process is not None and self.alive:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
            self.kills += 1

    def stop(self, grace: float = 20.0) -> int | None:
        """SIGTERM, then SIGKILL after `grace` seconds; the exit code."""
        if self.process is None:
            return None
        if self.alive:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        return self.process.returncode

    def log(self) -> str:
        """Everything the process (and its earlier incarnations) wrote."""
        return self.log_path.read_text("utf-8", "replace") if self.log_path.exists() else ""


class SandboxProcess(Child):
    """`python -m services.sandbox` on free ports, driven over its control API."""

    def __init__(self, workdir: Path) -> None:
        self.http_port, self.smtp_port = free_port(), free_port()
        super().__init__("sandbox", ["services.sandbox", "--http-port", str(self.http_port),
                                     "--smtp-port", str(self.smtp_port)], os.environ, workdir / "sandbox.log")
        self.url = f"http://127.0.0.1:{self.http_port}"
        self.control = SandboxControl(self.url, timeout=60)

    def start(self) -> SandboxProcess:
        super().start()
        poll(self.control.healthy, timeout=30, what="the sandbox to answer")
        return self


def service_env(name: str, *, base: Mapping[str, str], database_url: str, vendors_url: str, smtp_port: int,
                http_port: int) -> dict[str, str]:
    """The environment of one service process: every vendor URL pointing at `vendors_url` (the sandbox, or a
    gateway in front of it), then `base` (broker, namespace, test settings), then its own database and port."""
    return {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "ERASURE_LOG_FORMAT": "json",
        "ERASURE_NEWSLETTER_MAILCHIMP_BASE_URL": f"{vendors_url}/mailchimp/3.0",
        "ERASURE_PAYMENT_PAYPAL_BASE_URL": f"{vendors_url}/paypal",
        "ERASURE_BOOKKEEPING_VISMA_BASE_URL": f"{vendors_url}/visma",
        "ERASURE_BOOKKEEPING_VISMA_TOKEN_URL": f"{vendors_url}/visma/connect/token",
        "ERASURE_INSTALLER_SHARING_SANDBOX_URL": vendors_url,
        "ERASURE_INSTALLER_SHARING_DIRECTORY": "",
        "ERASURE_SANDBOX_URL": vendors_url,
        "ERASURE_ACCOUNT_SMTP_PORT": str(smtp_port),
        **base,
        f"ERASURE_{name.upper()}_DATABASE_URL": database_url,
        f"ERASURE_{name.upper()}_HTTP_PORT": str(http_port),
    }


class Fleet:
    """The six services as `python -m services.cli run <name>` processes."""

    def __init__(self, *, base_env: Mapping[str, str], database_urls: Mapping[str, str], sandbox: SandboxProcess,
                 workdir: Path, vendors_url: str | None = None, names: Iterable[str] = SERVICES) -> None:
        self.children: dict[str, Child] = {}
        self.ports: dict[str, int] = {}
        for name in names:
            port = free_port()
            env = service_env(name, base=base_env, database_url=database_urls[name],
                              vendors_url=vendors_url or sandbox.url, smtp_port=sandbox.smtp_port, http_port=port)
            self.ports[name] = port
            self.children[name] = Child(name, ["services.cli", "run", name], env, workdir / f"{name}.log")

    def start(self, timeout: float = 60) -> Fleet:
        """Start every service and wait until each consumes."""
        for child in self.children.values():
            child.start()
        self.wait_ready(timeout)
        return self

    def ready(self, name: str) -> bool:
        """Whether the service answers /readyz with 200 (consuming, database reachable)."""
        try:
            return httpx.get(f"http://127.0.0.1:{self.ports[name]}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def outbox_connected(self, name: str) -> bool:
        """Whether the service's outbox producer has its channel in confirm mode (its erasure_broker_connected
        gauge: set when the broker answers Confirm.Select on a new connection, cleared when it is lost)."""
        try:
            exposition = httpx.get(f"http://127.0.0.1:{self.ports[name]}/metrics", timeout=2).text
        except httpx.HTTPError:
            return False
        return any(sample.labels == {"service": name, "link": "outbox"} and sample.value == 1.0
                   for family in text_string_to_metric_families(exposition)
                   if family.name == "erasure_broker_connected" for sample in family.samples)

    def all_ready(self) -> bool:
        return all(self.ready(name) for name in self.children)

    def wait_ready(self, timeout: float = 60) -> float:
        """Block until every service is ready (AssertionError with its log if one exits); seconds it took."""
        started = time.monotonic()

        def ready() -> bool:
            for name, child in self.children.items():
                if not child.alive:
                    code = child.process.returncode if child.process else None
                    raise AssertionError(f"{name} exited with {code}:\n{child.log()[-3000:]}")
            return self.all_ready()

        poll(ready, timeout=timeout, what="every service to be ready")
        return time.monotonic() - started

    def crash_and_restart(self, name: str, down_for: float = 0.5) -> None:
        """kill -9 one service, then start it again."""
        child = self.children[name]
        child.kill9()
        time.sleep(down_for)
        child.start()

    def stop(self) -> dict[str, int | None]:
        """SIGTERM every service (they finish in-flight work); their exit codes."""
        for child in self.children.values():
            if child.alive and child.process is not None:
                child.process.send_signal(signal.SIGTERM)
        return {name: child.stop() for name, child in self.children.items()}

    def logs(self) -> dict[str, str]:
        """Each service's captured output."""
        return {name: child.log() for name, child in self.children.items()}
