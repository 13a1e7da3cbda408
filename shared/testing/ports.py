"""Ports for processes a test starts and must know the address of before they listen."""

from __future__ import annotations

import random
import socket
from pathlib import Path

_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")


def free_port() -> int:
    """A TCP port nobody listens on now, outside the kernel's ephemeral range.

    A port from bind(0) is ephemeral: between this call and the child's own bind, any outgoing connection on the
    machine (a broker client, say) may be given it, and the child fails with "address already in use". Ports
    below the ephemeral range are handed out only to those who ask for them by number.
    """
    try:
        ceiling = int(_RANGE.read_text().split()[0]) - 1
    except (OSError, ValueError, IndexError):
        ceiling = 32767  # Linux's default range starts at 32768
    floor = 10000
    for _ in range(200):
        port = random.randint(floor, ceiling)
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port between {floor} and {ceiling}")
