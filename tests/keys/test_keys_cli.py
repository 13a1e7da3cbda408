"""`erasure keys` as an operator uses it, and a service that refuses to start without its keys."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from services.cli.main import cli
from shared.keys import seal, unseal, use_key_store


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"ERASURE_KEYS_FILE": str(tmp_path / "keys.json"), "ERASURE_KEYS_KEK": "",
            "ERASURE_KEYS_DATABASE_URL": f"sqlite:///{tmp_path / 'keys.db'}"}


def _run(env: dict[str, str], *args: str) -> Result:
    result = CliRunner().invoke(cli, list(args), env=env)
    assert "Traceback" not in result.stdout + result.stderr
    return result


def test_generate_rotate_and_retire_keep_every_data_key_open(env: dict[str, str], monkeypatch) -> None:  # type: ignore[no-untyped-def]
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert _run(env, "keys", "generate").exit_code == 0
    assert _run(env, "keys", "generate").exit_code == 1, "a key file is never replaced"
    assert _run(env, "keys", "generate", "--if-missing").exit_code == 0
    use_key_store(None)
    sealed = seal("user:u-cli", "account.users.name", "Åsa Öberg")
    assert json.loads(_run(env, "keys", "status", "--json").stdout)["live_by_kek"] == {"k1": 1}
    rotated = json.loads(_run(env, "keys", "rotate", "--new-id", "k2", "--json").stdout)
    assert rotated == {"kek_id": "k2", "rewrapped": 1}
    refused = _run(env, "keys", "rotate", "--retire", "k2")
    assert refused.exit_code == 1 and "rotate first" in refused.stderr
    assert _run(env, "keys", "rotate", "--retire", "k1").exit_code == 0
    status = json.loads(_run(env, "keys", "status", "--json").stdout)
    assert status["keks_configured"] == ["k2"] and status["live_by_kek"] == {"k2": 1}
    use_key_store(None)
    assert unseal("account.users.name", sealed) == "Åsa Öberg"
    issued = json.loads(_run(env, "keys", "issue", "--user", "u-cli", "--json").stdout)
    assert set(issued) == {"kid", "key"}
    use_key_store(None)


@pytest.mark.parametrize("problem", ["missing", "wrong"])
def test_a_service_without_its_key_encryption_key_refuses_to_start_with_one_line(
    env: dict[str, str], tmp_path: Path, problem: str
) -> None:
    if problem == "wrong":
        assert _run(env, "keys", "generate").exit_code == 0
        _run(env, "keys", "issue", "--user", "u-1")  # a data key wrapped by the right KEK
        (tmp_path / "other").mkdir()
        other = {**env, "ERASURE_KEYS_FILE": str(tmp_path / "other" / "keys.json")}
        assert _run(other, "keys", "generate").exit_code == 0
        env = other
    result = _run(env, "run", "newsletter")
    use_key_store(None)
    assert result.exit_code == 1
    [line] = result.stderr.strip().splitlines()
    assert ("erasure keys generate" in line) if problem == "missing" else ("wrong key" in line), line
