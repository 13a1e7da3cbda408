"""`pytest -m postgres` selects exactly the PostgreSQL variants of the storage tests, and `-m "not postgres"`
none of them (the db_backend fixture marks its PostgreSQL parameter)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _collected(marker: str) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "-m", marker,
         "tests/services/test_payment.py", "tests/deploy/test_replicas.py"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    ).stdout
    return [line for line in out.splitlines() if "::" in line]


def test_the_postgres_marker_selects_the_postgresql_variants_only() -> None:
    selected = _collected("postgres")
    assert selected, "no PostgreSQL variant selected"
    assert all("[postgresql]" in test for test in selected), selected
    assert any("test_replicas.py" in test for test in selected)
    assert not any("[postgresql]" in test for test in _collected("not postgres"))
