"""The `erasure` command as operators meet it: no traceback ever, exit codes 0/1/2, pure JSON, a version."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from services.cli.main import cli
from shared.keys import new_material, use_key_store, write_key_file
from shared.testing.ports import free_port

# Arguments for commands whose required arguments cannot be made up from their types alone.
ARGUMENTS: dict[str, list[str]] = {
    "run": ["account"],  # a service; `run all` supervises these and `run sandbox` needs neither broker nor database
    "replay": ["--since", "2026-01-01"],
    "schemas generate": ["--check"],  # without --check it writes files
    "status": ["--overdue"],
    "correction request": ["--user", "u-1001", "--email", "anna.lindqvist@kund.loggamera.se"],
    "dlq replay": ["--all"],
    "dlq purge": ["--all", "--yes"],
}
# Commands that need neither the broker nor a database: they answer (0) or say what is stale (1).
OFFLINE = {"schemas generate", "console hash-password"}


def leaves(group: click.Group, prefix: str = "") -> Iterator[tuple[str, click.Command]]:
    """Every runnable subcommand of a group, by its full name (`dlq list`)."""
    for name, command in sorted(group.commands.items()):
        full = f"{prefix}{name}"
        if isinstance(command, click.Group):
            yield from leaves(command, full + " ")
        else:
            yield full, command


def made_up_arguments(command: click.Command, tmp_path: Path) -> list[str]:
    """A value for every required argument or option, from its type."""
    args: list[str] = []
    for param in command.params:
        if not param.required:
            continue
        if isinstance(param.type, click.Choice):
            value = str(param.type.choices[0])
        elif isinstance(param.type, click.File | click.Path):
            value = str(tmp_path / "input.eml")
            Path(value).write_bytes(b"From: someone@example.com\r\nSubject: Unregister account: x\r\n\r\nhi\r\n")
        else:
            value = "0b6e3c1e-8d3f-4a57-9c1a-0f5d2f3c9e11"
        args += [value] if isinstance(param, click.Argument) else [param.opts[0], value]
    return args


def _broken_env(tmp_path: Path) -> dict[str, str]:
    """A broker port nothing listens on and a database URL no driver accepts."""
    return {"ERASURE_AMQP_URL": f"amqp://guest:guest@127.0.0.1:{free_port()}/%2F",
            "ERASURE_DATABASE_URL": "nosuchdb://nowhere/{service}", "ERASURE_VAR_DIR": str(tmp_path / "var"),
            "ERASURE_KEYS_DATABASE_URL": "nosuchdb://nowhere/keys",
            "ERASURE_NAMESPACE": "clitest"}


def _invoke(args: list[str], env: dict[str, str]) -> Result:
    return CliRunner().invoke(cli, args, env=env)


ALL = sorted(name for name, _ in leaves(cli))


def test_every_subcommand_is_walked() -> None:
    assert {"dlq list", "dlq show", "topology declare", "demo", "publish", "doctor", "status"} <= set(ALL)
    assert len(ALL) >= 18


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", ALL)
def test_no_subcommand_shows_a_traceback_with_the_broker_and_databases_away(name: str, tmp_path: Path) -> None:
    command = dict(leaves(cli))[name]
    args = name.split() + ARGUMENTS.get(name, made_up_arguments(command, tmp_path))
    result = _invoke(args, _broken_env(tmp_path))
    shown = result.stdout + result.stderr
    assert "Traceback" not in shown, shown
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), \
        repr(result.exception)
    expected = {0, 1} if name in OFFLINE else {1}
    assert result.exit_code in expected, f"exit {result.exit_code}: {shown}"
    if result.exit_code == 1 and name not in OFFLINE:
        last = result.stderr.strip().splitlines()[-1]
        assert len(last) > 30, f"a one-line reason is expected on stderr, got {result.stderr!r}"


@pytest.mark.parametrize("args", [["publish", "purchase", "--count", "0"], ["status", "a", "--overdue"],
                                  ["dlq", "replay"], ["publish", "file"], ["nosuchcommand"],
                                  ["sweep", "inactive", "--now", "yesterday"]])
def test_usage_errors_exit_2_with_one_clear_line(args: list[str], tmp_path: Path) -> None:
    result = _invoke(args, _broken_env(tmp_path))
    assert "Traceback" not in result.stdout + result.stderr
    assert result.exit_code == 2, result.stdout + result.stderr


@pytest.mark.parametrize("content", [b"[1", b'{"type": "se.loggamera.nope.v1", "data": {}}',
                                     b'{"type": "se.loggamera.user.deregistered.v1", "data": {"user_id": 5}}',
                                     b"\xff\xfe", b'"just a string"'])
def test_publish_file_with_bad_data_says_what_is_wrong(content: bytes, tmp_path: Path) -> None:
    path = tmp_path / "event.json"
    path.write_bytes(content)
    result = _invoke(["publish", "file", "--data", str(path)], _broken_env(tmp_path))
    assert result.exit_code == 2 and "Traceback" not in result.stdout + result.stderr
    assert "--data" in result.stderr and "event.json" in result.stderr


def test_version_comes_from_the_package_metadata() -> None:
    from importlib.metadata import version

    result = _invoke(["--version"], {})
    assert result.exit_code == 0 and result.stdout.strip() == f"erasure {version('loggamera-erasure')}"


def test_doctor_checks_databases_by_default_and_reports_json(tmp_path: Path) -> None:
    env = {**_broken_env(tmp_path), "ERASURE_LEDGER_DATABASE_URL": f"sqlite:///{tmp_path / 'ledger.db'}"}
    result = _invoke(["doctor", "--json"], env)
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    checks = {c["what"]: c for c in report["checks"]}
    assert report["ok"] is False and checks["broker"]["ok"] is False
    assert checks["database ledger"]["ok"] is True and checks["database account"]["ok"] is False
    assert "nosuchdb" in checks["database account"]["error"]


def _offers_json(command: click.Command) -> bool:
    return any("--json" in getattr(param, "opts", ()) for param in command.params)


JSON_COMMANDS = sorted(name for name, command in leaves(cli) if _offers_json(command))
JSON_ARGUMENTS: dict[str, list[str]] = {**ARGUMENTS, "status": ["--overdue"], "sweep inactive": ["--dry-run"],
                                        "dlq replay": ["--all", "--dry-run"], "dlq purge": ["--all", "--dry-run"]}


def test_the_json_commands_are_the_expected_ones() -> None:
    assert {"publish", "doctor", "status", "receipt", "dlq list", "dlq show", "sweep inactive", "replay",
            "retention purge", "intake cleanup"} <= set(JSON_COMMANDS)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", JSON_COMMANDS)
def test_json_output_is_pure_json_on_stdout(name: str, erasure_pipeline, tmp_path: Path) -> None:
    erasure_pipeline.declare()
    env = {"ERASURE_AMQP_URL": erasure_pipeline.settings.amqp_url, "ERASURE_NAMESPACE": erasure_pipeline.namespace,
           "ERASURE_DATABASE_URL": f"sqlite:///{tmp_path}/{{service}}.db", "ERASURE_VAR_DIR": str(tmp_path / "var"),
           "ERASURE_LOG_LEVEL": "DEBUG"}  # every log line there is must go to stderr
    command = dict(leaves(cli))[name]
    args = name.split() + JSON_ARGUMENTS.get(name, made_up_arguments(command, tmp_path)) + ["--json"]
    # The keys commands get keys of their own: `keys rotate` would otherwise add a key-encryption key to the
    # session's key file and re-wrap every data key the session's other tests made.
    write_key_file(tmp_path / "keys.json", new_material())
    env |= {"ERASURE_KEYS_FILE": str(tmp_path / "keys.json"),
            "ERASURE_KEYS_DATABASE_URL": f"sqlite:///{tmp_path}/keys.db"}
    sessions_store = use_key_store(None)
    try:
        result = _invoke(args, env)
    finally:
        use_key_store(sessions_store)
    assert "Traceback" not in result.stdout + result.stderr
    if result.exit_code in (1, 2) and not result.stdout:
        assert result.stderr.strip(), "a failure or refusal says why on stderr"
        return
    assert result.stdout.strip(), f"exit {result.exit_code}, nothing on stdout: {result.stderr}"
    text = result.stdout
    try:
        json.loads(text)
    except json.JSONDecodeError:  # JSON lines (one document per published event)
        for line in text.splitlines():
            json.loads(line)


def test_status_overdue_exits_0_when_it_lists_nothing(tmp_path: Path) -> None:
    """(With a request listed it exits 1: tests/services/test_ledger.py, the silent-slice test.)"""
    env = {**_broken_env(tmp_path), "ERASURE_LEDGER_DATABASE_URL": f"sqlite:///{tmp_path / 'ledger.db'}"}
    result = _invoke(["status", "--overdue", "--json"], env)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == json.loads(_invoke(["status", "--overdue", "--json"], env).stdout)


def test_demo_with_the_broker_away_writes_no_sample_account(tmp_path: Path) -> None:
    account = tmp_path / "account.db"
    env = {**_broken_env(tmp_path), "ERASURE_ACCOUNT_DATABASE_URL": f"sqlite:///{account}"}
    result = _invoke(["demo", "--user", "u-demo-away"], env)
    assert result.exit_code == 1 and "Traceback" not in result.stdout + result.stderr
    assert "broker" in result.stderr
    assert not account.exists() or b"u-demo-away" not in account.read_bytes()


@pytest.mark.timeout(120)
def test_demo_exits_1_when_the_erasure_does_not_complete(erasure_pipeline, tmp_path: Path) -> None:
    from services.account.publishing import account_database

    erasure_pipeline.declare()  # the exchanges and queues exist, but no service runs
    with account_database(f"sqlite:///{tmp_path}/account.db"):
        pass  # the account's tables, as its service creates them
    env = {"ERASURE_AMQP_URL": erasure_pipeline.settings.amqp_url, "ERASURE_NAMESPACE": erasure_pipeline.namespace,
           "ERASURE_DATABASE_URL": f"sqlite:///{tmp_path}/{{service}}.db"}
    result = _invoke(["demo", "--timeout", "2"], env)
    assert result.exit_code == 1, result.output
    assert "did not complete" in result.stderr and "Traceback" not in result.stdout + result.stderr


@pytest.mark.parametrize("url", ["postgresql+nodriver://app:s3cret-pw@db/ledger", "app:s3cret-pw@db/ledger",
                                 "postgresql://app:s3cret-pw@db:notaport/ledger",
                                 "postgresql+psycopg://app:s3cret-pw@127.0.0.1:1/ledger"])
def test_a_bad_database_url_fails_in_one_line_without_its_password(url: str, tmp_path: Path) -> None:
    result = _invoke(["status", "--overdue"], {**_broken_env(tmp_path), "ERASURE_LEDGER_DATABASE_URL": url})
    assert result.exit_code == 1 and "Traceback" not in result.stdout + result.stderr
    assert "s3cret-pw" not in result.stdout + result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_password_quoted_in_an_error_is_masked() -> None:
    from services.cli.errors import explain

    line = explain("erasure status", RuntimeError("cannot use amqps://svc:s3cret-pw@mq:5671/erasure"))
    assert "s3cret-pw" not in line and "amqps://svc:***@mq:5671" in line
