"""The broker's headroom: file descriptors, memory and queues in use against the node's limits, with the fix when low.

Read from the management API when the node serves it (port 15672 of the broker's host, the AMQP account),
else from `rabbitmqctl status` when the broker runs on this machine (a private node of `erasure run all
--start-broker` is found by its port). Why it matters: every quorum queue holds about three descriptors on
its node (its Ra log segments and WAL handles), so a node with the Debian default limit of 1,024 runs out at
a few hundred queues, after which it accepts no connection at all and `rabbitmqctl` hangs (BENCHMARKS.md).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import httpx

from shared.settings import VAR_DIR

LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
MIN_FD_LIMIT = 4096
MAX_USED = 0.8
DESCRIPTORS_PER_QUORUM_QUEUE = 3
TIMEOUT_S = 15.0

FD_LIMIT_FIX = ("raise the node's descriptor limit to 65536 or more: `LimitNOFILE=65536` in a systemd drop-in "
                "(systemctl edit rabbitmq-server), `ulimit -n 65536` in /etc/default/rabbitmq-server, or "
                "`--ulimit nofile=65536:65536` for a container; then restart the node")
LEFTOVER_FIX = ("delete namespaces nobody uses (`rabbitmqctl list_queues name` shows them by prefix; a test or "
                "bench run that was killed leaves `tp…`/`bench…` queues), or raise the descriptor limit")
MEMORY_FIX = "drain or purge the deepest queues, or raise vm_memory_high_watermark (publishers block above it)"


class HeadroomUnknown(Exception):
    """Neither the management API nor a local rabbitmqctl answered; the message says why."""


@dataclass(frozen=True)
class Headroom:
    """What the node uses and what it may use."""

    source: str
    fd_used: int
    fd_limit: int
    memory_used: int
    memory_limit: int
    queues: int
    connections: int

    def as_dict(self) -> dict[str, object]:
        return asdict(self)

    def warnings(self) -> list[str]:
        """Each shortfall, said with its fix; empty when the node has room."""
        found = []
        if self.fd_limit < MIN_FD_LIMIT:
            room = self.fd_limit // DESCRIPTORS_PER_QUORUM_QUEUE
            found.append(f"descriptor limit {self.fd_limit} is below {MIN_FD_LIMIT} (room for about {room} quorum "
                         f"queues in all): {FD_LIMIT_FIX}")
        if self.fd_limit and self.fd_used > MAX_USED * self.fd_limit:
            found.append(f"{self.fd_used} of {self.fd_limit} descriptors in use with {self.queues} queues: "
                         f"{LEFTOVER_FIX}")
        if self.memory_limit and self.memory_used > MAX_USED * self.memory_limit:
            found.append(f"memory {self.memory_used / 2**20:.0f} MiB of a {self.memory_limit / 2**20:.0f} MiB "
                         f"watermark: {MEMORY_FIX}")
        return found

    def summary(self) -> str:
        return (f"descriptors {self.fd_used}/{self.fd_limit}, memory {self.memory_used / 2**20:.0f}/"
                f"{self.memory_limit / 2**20:.0f} MiB, {self.queues} queues, {self.connections} connections "
                f"(from {self.source})")


def read(amqp_url: str, *, timeout: float = TIMEOUT_S) -> Headroom:
    """The headroom of the node at amqp_url (the first node of a list); HeadroomUnknown if it cannot be read."""
    first = amqp_url.replace(";", ",").split(",")[0].strip()
    reasons = []
    try:
        return _from_management(first, timeout)
    except (httpx.HTTPError, KeyError, ValueError, TypeError) as exc:
        reasons.append(f"management API: {type(exc).__name__}: {exc}")
    parts = urlsplit(first)
    if parts.hostname not in LOCAL_HOSTS:
        raise HeadroomUnknown("; ".join(reasons) + " (enable the rabbitmq_management plugin to see headroom)")
    try:
        return _from_rabbitmqctl(parts.port or 5672, timeout)
    except subprocess.TimeoutExpired:
        raise HeadroomUnknown(f"rabbitmqctl status did not answer within {timeout:.0f}s: the node may be out of "
                              f"descriptors; {FD_LIMIT_FIX}") from None
    except (OSError, subprocess.CalledProcessError, KeyError, ValueError) as exc:
        reasons.append(f"rabbitmqctl: {type(exc).__name__}: {_first_line(exc)}")
    raise HeadroomUnknown("; ".join(reasons))


def _from_management(url: str, timeout: float) -> Headroom:
    parts = urlsplit(url)
    scheme, port = ("https", 15671) if parts.scheme == "amqps" else ("http", 15672)
    auth = (unquote(parts.username or "guest"), unquote(parts.password or "guest"))
    with httpx.Client(base_url=f"{scheme}://{parts.hostname}:{port}", auth=auth, timeout=timeout) as client:
        overview = client.get("/api/overview").raise_for_status().json()
        node = next(n for n in client.get("/api/nodes").raise_for_status().json()
                    if n["name"] == overview["node"])
    totals = overview.get("object_totals", {})
    return Headroom("management API", int(node["fd_used"]), int(node["fd_total"]), int(node["mem_used"]),
                    int(node["mem_limit"]), int(totals.get("queues", 0)), int(totals.get("connections", 0)))


def _from_rabbitmqctl(port: int, timeout: float) -> Headroom:
    tool = shutil.which("rabbitmqctl")
    if tool is None:
        raise OSError("rabbitmqctl is not installed here")
    argv = [tool]
    cookie = private_node_dir(port) / ".erlang.cookie"
    if port != 5672 and cookie.is_file():  # a private node of `run all --start-broker`: its name and cookie
        argv += ["-n", f"erasure-{port}@localhost", "--erlang-cookie", cookie.read_text().strip()]
    done = subprocess.run([*argv, "status", "--formatter", "json"], capture_output=True, text=True,
                          timeout=timeout, check=True)
    status = json.loads(done.stdout)
    fds, memory, totals = status["file_descriptors"], status["memory"], status.get("totals", {})
    used = memory["total"]  # by the node's own strategy, as its memory alarm counts it
    return Headroom("rabbitmqctl status", int(fds["total_used"]), int(fds["total_limit"]),
                    int(used[memory.get("strategy", "rss")] if isinstance(used, dict) else used),
                    int(status.get("vm_memory_high_watermark_limit", 0)), int(totals.get("queue_count", 0)),
                    int(totals.get("connection_count", 0)))


def private_node_dir(port: int) -> Path:
    """Where `erasure run all --start-broker` keeps the private node for this port."""
    return (VAR_DIR / "rabbitmq" / str(port)).resolve()


def _first_line(exc: Exception) -> str:
    text = getattr(exc, "stderr", None) or str(exc)
    return (text.strip().splitlines() or [""])[0][:200]
