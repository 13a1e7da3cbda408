"""Section 5c: `sweep inactive` over a seeded account table, its time and its memory, in a process of its own.

The parent starts `python -m bench.sweep URL` and samples the child's RSS; the child runs the sweep as the CLI
does (keyset pages of 1,000, each page's events staged in the outbox with its sweep marks in one transaction)
without a producer, so the staged events wait in the outbox: the broker's part is measured by section 3.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

from bench.procs import MemorySampler


def sweep_cost(url: str, timeout: float) -> dict[str, Any]:
    """Sweep the account database at `url` in a child process; its result, seconds and RSS (MiB)."""
    child = subprocess.Popen([sys.executable, "-m", "bench.sweep", url], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True)
    sampler = MemorySampler({"sweep": child.pid}, interval=0.2).start()
    started = time.monotonic()
    try:
        out, _ = child.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        child.kill()
        child.communicate()
        return {"error": f"the sweep did not finish within {timeout:.0f}s", "memory": sampler.stop()}
    memory = sampler.stop()["sweep"]
    if child.returncode != 0 or not out.strip():
        return {"error": f"the sweep exited with {child.returncode}", "memory": memory}
    result = json.loads(out.strip().splitlines()[-1])
    return {**result, "process_seconds": round(time.monotonic() - started, 1), "memory": memory,
            "memory_series": sampler.samples["sweep"]}


def main(url: str) -> None:
    """Run the sweep on the database at `url` with the default runtime settings; print its result as JSON."""
    from services.account.models import metadata
    from services.account.sweep import sweep_inactive
    from shared.db import make_engine, session_factory
    from shared.settings import RuntimeSettings

    engine = make_engine(url)
    try:
        result = sweep_inactive(engine, session_factory(engine, metadata), RuntimeSettings())
    finally:
        engine.dispose()
    print(json.dumps(result.as_dict()), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
