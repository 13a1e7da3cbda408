"""Named fault points for chaos tests: `ERASURE_FAILPOINTS=after_commit` makes the process die right there.

Off unless the variable names the point; the check is a set lookup, so the hot path pays nothing real.
"""

from __future__ import annotations

import os

_ACTIVE = frozenset(p.strip() for p in os.environ.get("ERASURE_FAILPOINTS", "").split(",") if p.strip())


def failpoint(name: str) -> None:
    """Exit the process at once (as a crash would, no cleanup) if this point is switched on."""
    if name in _ACTIVE:
        os._exit(70)
