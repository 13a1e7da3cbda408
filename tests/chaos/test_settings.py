"""Settings an operator sets for resilience are read as documented."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.chaos.harness import ROOT


@pytest.mark.chaos
@pytest.mark.timeout(60)
def test_retry_tiers_in_the_documented_comma_form_are_read_from_the_environment() -> None:
    """README: `ERASURE_RETRY_DELAYS` = `1,10,60,600,3600`. Today pydantic-settings JSON-decodes the value before
    the field's own splitter runs, so the documented form stops every service at start."""
    env = {**os.environ, "ERASURE_RETRY_DELAYS": "5,15,30,60,120", "ERASURE_NAMESPACE": "tiers"}
    done = subprocess.run([sys.executable, "-m", "services.cli", "topology", "declare", "--print"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, (done.stderr.strip().splitlines() or ["no output"])[-1]
    for label in ("5s", "15s", "30s", "1m", "2m"):
        assert f"tiers.newsletter.retry.{label}" in done.stdout
