"""A broker for `make run` when none answers: a private RabbitMQ node under var/, else a container, else advice.

The private node is this machine's `rabbitmq-server` run as a child process with its own node name, ports,
configuration and data directory (var/rabbitmq/<port>/), so it never touches a system broker; the container
is RABBITMQ_IMAGE (default rabbitmq:3.13-management) with the port published on 127.0.0.1. Either one gets
the user, password and vhost of ERASURE_AMQP_URL as its default account, and is stopped when `run` ends.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import unquote, urlsplit

import click

from shared.settings import VAR_DIR, RuntimeSettings
from shared.testing.infra import docker_available  # the one check of a Docker engine, shared with the tests

LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
SERVER_PATHS = ("/usr/lib/rabbitmq/bin/rabbitmq-server", "/usr/local/sbin/rabbitmq-server",
                "/opt/homebrew/sbin/rabbitmq-server")
DEFAULT_IMAGE = "rabbitmq:3.13-management"
START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 30.0

INSTALL_HELP = """No RabbitMQ answers at {url}, and none can be started here: there is neither a
`rabbitmq-server` nor a running Docker engine. Install one of them, then run `make run` again:
  Debian/Ubuntu:  sudo apt-get install rabbitmq-server        (or: sudo apt-get install docker.io)
  Fedora/RHEL:    sudo dnf install rabbitmq-server            (or: sudo dnf install moby-engine)
  macOS:          brew install rabbitmq                       (or: Docker Desktop)
`make run` starts a private node itself; you need not start the system service. Or point the pipeline at
a broker that runs elsewhere: export ERASURE_AMQP_URL=amqp://user:pass@host:5672/vhost"""


class BrokerUnavailable(click.ClickException):
    """No broker answers and none could be started; the message says what to do."""


def first_url(settings: RuntimeSettings) -> str:
    """The broker URL `run` starts a broker for (the first of a `;`-separated failover list)."""
    return settings.amqp_url.split(";")[0].strip()


def safe_url(url: str) -> str:
    """The URL without its password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return url.replace(f":{parts.password}@", ":***@", 1)


def broker_answers(settings: RuntimeSettings, *, timeout: float = 3.0) -> bool:
    """Whether an AMQP handshake and login succeed (a published container port accepts TCP long before)."""
    from shared.broker import kombu_connection

    try:
        with kombu_connection(settings, name="erasure-run", connect_timeout=timeout) as conn:
            conn.ensure_connection(max_retries=1)
        return True
    except Exception:  # any failure to connect or log in is the same answer: not (yet) usable
        return False


def rabbitmq_server() -> str | None:
    """The `rabbitmq-server` script of a local installation, if there is one. The known paths come first:
    Debian's /usr/sbin/rabbitmq-server on PATH is a wrapper that switches to the rabbitmq user, who cannot
    write under the caller's var/."""
    found = shutil.which("rabbitmq-server")
    return next((p for p in [*SERVER_PATHS, found] if p and os.access(p, os.X_OK)), None)


def _account(url: str) -> dict[str, str]:
    """The default account a new broker gets, from the URL the services will use."""
    parts = urlsplit(url)
    vhost = unquote(parts.path[1:]) if len(parts.path) > 1 else "/"
    return {"RABBITMQ_DEFAULT_USER": unquote(parts.username or "guest"),
            "RABBITMQ_DEFAULT_PASS": unquote(parts.password or "guest"),
            "RABBITMQ_DEFAULT_VHOST": vhost}


def node_environment(url: str, base: Path) -> dict[str, str]:
    """Environment of a private node for the port in `url`: every path under `base`, nothing shared with a
    system broker (its node name, distribution port, configuration, env file, plugins, data and logs)."""
    port = urlsplit(url).port or 5672
    base.mkdir(parents=True, exist_ok=True)
    conf = base / "rabbitmq.conf"
    conf.write_text(
        "# Written by `erasure run all --start-broker`: a private development node.\n"
        f"listeners.tcp.local = 127.0.0.1:{port}\n"
        "log.console = true\nlog.file = false\n"
    )
    (base / "rabbitmq-env.conf").write_text("")  # not the system file, which pins NODENAME
    (base / "enabled_plugins").write_text("[].\n")
    return {
        **node_files(base, f"erasure-{port}@localhost", port, port + 20000),
        "HOME": str(base),  # the Erlang cookie of this node lives here too
        "ERL_CRASH_DUMP": str(base / "erl_crash.dump"),
        **_account(url),
    }


def node_files(base: Path, node: str, port: int, dist_port: int) -> dict[str, str]:
    """A node's name, ports and every file it reads or writes, all under `base`: the part of a private node's
    environment that keeps it apart from the system broker (also used by the fault suites' nodes)."""
    return {
        "RABBITMQ_NODENAME": node,
        "RABBITMQ_NODE_PORT": str(port),
        "RABBITMQ_DIST_PORT": str(dist_port),
        "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq.conf"),
        "RABBITMQ_CONF_ENV_FILE": str(base / "rabbitmq-env.conf"),
        "RABBITMQ_ADVANCED_CONFIG_FILE": str(base / "advanced.config"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
        "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
        "RABBITMQ_LOG_BASE": str(base / "log"),
        "RABBITMQ_PID_FILE": str(base / "node.pid"),
    }


def _wait_until_ready(settings: RuntimeSettings, alive: object, what: str, where: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if broker_answers(settings, timeout=2):
            return
        if not alive():  # type: ignore[operator]
            raise BrokerUnavailable(f"the {what} exited during start-up; {where}")
        time.sleep(0.5)
    raise BrokerUnavailable(f"the {what} did not accept connections within {START_TIMEOUT_S:.0f}s; {where}")


@contextmanager
def private_node(settings: RuntimeSettings, server: str) -> Iterator[str]:
    """Run a private node for the URL's port until the block ends; yields a description for the user."""
    url = first_url(settings)
    port = urlsplit(url).port or 5672
    base = (VAR_DIR / "rabbitmq" / str(port)).resolve()
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))}
    env = {**inherited, **node_environment(url, base)}
    log = (base / "console.log").open("ab")
    process = subprocess.Popen([server], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    what = f"private RabbitMQ node {env['RABBITMQ_NODENAME']} ({server}, data and log in {base})"
    try:
        _wait_until_ready(settings, lambda: process.poll() is None, what, f"see {base / 'console.log'}")
        yield what
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)  # the node stops cleanly on SIGTERM
            try:
                process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        log.close()


@contextmanager
def broker_container(settings: RuntimeSettings) -> Iterator[str]:
    """Run RABBITMQ_IMAGE with the URL's port published on 127.0.0.1 until the block ends."""
    url = first_url(settings)
    port = urlsplit(url).port or 5672
    image = os.environ.get("RABBITMQ_IMAGE") or DEFAULT_IMAGE
    name = f"erasure-rabbitmq-{port}"
    account = [arg for key, value in _account(url).items() for arg in ("-e", f"{key}={value}")]
    started = subprocess.run(
        ["docker", "run", "-d", "--rm", "--name", name, "-p", f"127.0.0.1:{port}:5672", *account, image],
        capture_output=True, text=True, check=False,
    )
    if started.returncode != 0:
        raise BrokerUnavailable(f"could not start a RabbitMQ container from {image}: {started.stderr.strip()}\n"
                                "Build the image without a registry with `make images`, or set RABBITMQ_IMAGE.")
    container = started.stdout.strip()
    what = f"RabbitMQ container {name} ({image}) on 127.0.0.1:{port}"

    def running() -> bool:
        return subprocess.run(["docker", "inspect", container], capture_output=True, check=False).returncode == 0

    try:
        _wait_until_ready(settings, running, what, f"see `docker logs {name}`")
        yield what
    finally:
        subprocess.run(["docker", "stop", "-t", str(int(STOP_TIMEOUT_S)), container], capture_output=True,
                       check=False)


@contextmanager
def ensure_broker(settings: RuntimeSettings) -> Iterator[str | None]:
    """A broker for the block: the one that answers (yields None), else one started here and stopped after."""
    url = first_url(settings)
    if broker_answers(settings):
        yield None
        return
    host = urlsplit(url).hostname or ""
    if host not in LOCAL_HOSTS:
        raise BrokerUnavailable(f"No RabbitMQ answers at {safe_url(url)}; it is not on this machine, so `run` "
                                "starts none. Start that broker, or point ERASURE_AMQP_URL at one that runs.")
    server = rabbitmq_server()
    if server is not None:
        starter = private_node(settings, server)
    elif docker_available():
        starter = broker_container(settings)
    else:
        raise BrokerUnavailable(INSTALL_HELP.format(url=safe_url(url)))
    click.echo(f"No RabbitMQ answers at {safe_url(url)}: starting one.")
    with starter as what:
        click.echo(f"Started the {what}; it stops when `run` ends (Ctrl-C).")
        yield what
