"""Write the deployment files derived from the code; `--check` fails when one is stale.

    python -m deploy.generate            # rewrite deploy/rabbitmq/*.json and deploy/postgres/init.sql
    python -m deploy.generate --check    # exit 1 if either differs from what the code says
    python -m deploy.generate --passwords broker-passwords.env --output /secure/definitions.json
                                         # the same definitions with real password hashes, for production

A passwords file has one `user=password` line per broker account (`erasure-account=...`); keep it and the
rendered file out of the repository.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from deploy.broker import NAMESPACE, definitions, dev_guest_definitions, dev_password
from services.registry import SERVICES

DEPLOY_DIR = Path(__file__).resolve().parent
DEFINITIONS_FILE = "rabbitmq/definitions.json"
DEV_GUEST_FILE = "rabbitmq/dev-guest.json"
POSTGRES_INIT_FILE = "postgres/init.sql"


def _json_text(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def database_name(service: str) -> str:
    """The PostgreSQL database (and role) of a service, e.g. `erasure_newsletter`."""
    return f"{NAMESPACE}_{service}"


KEY_STORE = "keys"


def postgres_init_sql() -> str:
    """A first-start script for the postgres image: one role and one database per service, nothing shared, and
    the key store's."""
    lines = [
        "-- Written by `python -m deploy.generate` from services.registry.SERVICES; edit the generator instead.",
        "-- Development only: each role's password is dev-<role>. Production roles get real passwords.",
        "-- A service's role owns its database (migrations run at start) and no other role may connect to it.",
    ]
    # The key store's database (docs/PRIVACY.md) is the one every service enters, with the key store's own role.
    for service in (*SERVICES, KEY_STORE):
        name = database_name(service)
        lines += [
            "",
            f"CREATE ROLE {name} LOGIN PASSWORD '{dev_password(name)}';",
            f"CREATE DATABASE {name} OWNER {name};",
            f"REVOKE ALL ON DATABASE {name} FROM PUBLIC;",
        ]
    return "\n".join(lines) + "\n"


def expected_files() -> dict[str, str]:
    """Every generated file, by path relative to deploy/, with its exact content."""
    return {
        DEFINITIONS_FILE: _json_text(definitions()),
        DEV_GUEST_FILE: _json_text(dev_guest_definitions()),
        POSTGRES_INIT_FILE: postgres_init_sql(),
    }


def check(out_dir: Path = DEPLOY_DIR) -> list[str]:
    """The generated files that are missing or differ from what the code says."""
    stale = []
    for name, text in expected_files().items():
        path = out_dir / name
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            stale.append(name)
    return stale


def generate(out_dir: Path = DEPLOY_DIR) -> list[Path]:
    """Write every generated file under `out_dir`; return the paths written."""
    written = []
    for name, text in expected_files().items():
        path = out_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def read_passwords(path: Path) -> dict[str, str]:
    """`user=password` lines (blank lines and # comments skipped)."""
    passwords = {}
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, password = line.partition("=")
        if not sep or not user.strip() or not password:
            raise ValueError(f"{path}:{number}: expected `user=password`")
        passwords[user.strip()] = password
    return passwords


def main(argv: list[str] | None = None) -> int:
    """Command line: generate, check, or render production definitions."""
    parser = argparse.ArgumentParser(prog="python -m deploy.generate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only report stale files; exit 1 if any")
    parser.add_argument("--passwords", type=Path, help="render definitions with these passwords' hashes")
    parser.add_argument("--output", type=Path, help="where --passwords writes the definitions")
    args = parser.parse_args(argv)
    if args.passwords is not None:
        if args.output is None:
            parser.error("--passwords needs --output (never overwrite the checked-in development file)")
        args.output.write_text(_json_text(definitions(passwords=read_passwords(args.passwords))), encoding="utf-8")
        args.output.chmod(0o600)
        print(f"wrote {args.output}")
        return 0
    if args.check:
        stale = check()
        for name in stale:
            print(f"stale: deploy/{name} (run python -m deploy.generate)")
        return 1 if stale else 0
    for path in generate():
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
