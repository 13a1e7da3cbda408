"""The README's variable table lists exactly the settings the code reads: every settings class and os.environ."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

from pydantic import AliasChoices
from pydantic_settings import BaseSettings

from services.registry import SERVICES

ROOT = Path(__file__).resolve().parents[2]
SETTINGS_MODULES = ("shared.settings", "shared.keys.config", *(f"services.{name}.settings" for name in SERVICES))
SOURCE_DIRS = ("shared", "services", "schemas")
TABLE_MARKER = "<!-- settings table:"
NAME = re.compile(r"`((?:ERASURE_|AMQP_URL)[A-Z0-9_<>]*)`")


def _settings_classes() -> list[type[BaseSettings]]:
    classes = []
    for module_name in SETTINGS_MODULES:
        module = importlib.import_module(module_name)
        classes += [obj for obj in vars(module).values() if isinstance(obj, type) and issubclass(obj, BaseSettings)
                    and obj is not BaseSettings and obj.__module__ == module_name]
    return classes


def _env_names(cls: type[BaseSettings]) -> set[str]:
    """The variables pydantic-settings reads for a class: its aliases, or the prefix and the field name."""
    prefix = str(cls.model_config.get("env_prefix", ""))
    names: set[str] = set()
    for field_name, info in cls.model_fields.items():
        alias = info.validation_alias
        if isinstance(alias, AliasChoices):
            names.update(str(choice) for choice in alias.choices)
        elif isinstance(alias, str):
            names.add(alias)
        else:
            names.add(f"{prefix}{field_name}".upper())
    return names


def _environ_reads() -> set[str]:
    """Variables read straight from os.environ / os.getenv; a formatted part of the name becomes <SERVICE>."""
    names: set[str] = set()
    for directory in SOURCE_DIRS:
        for path in (ROOT / directory).rglob("*.py"):
            if "testing" in path.parts or "migrations" in path.parts:
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                key = _environ_key(node)
                if isinstance(key, ast.Constant) and isinstance(key.value, str):
                    names.add(key.value)
                elif isinstance(key, ast.JoinedStr):
                    names.add("".join(part.value if isinstance(part, ast.Constant) else "<SERVICE>"
                                      for part in key.values))
    return {name for name in names if name.startswith("ERASURE_")}


def _environ_key(node: ast.AST) -> ast.AST | None:
    """The key of `os.environ.get(key, …)`, `os.getenv(key, …)` or `os.environ[key]`, else None."""
    if isinstance(node, ast.Call) and node.args:
        text = ast.unparse(node.func)
        if text in ("os.environ.get", "os.getenv", "environ.get", "os.environ.setdefault"):
            return node.args[0]
    if isinstance(node, ast.Subscript) and ast.unparse(node.value) in ("os.environ", "environ"):
        return node.slice
    return None


def _table_names() -> set[str]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = readme[readme.index(TABLE_MARKER):].split("\n\n", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    return {name for row in rows for name in NAME.findall(row.split(" | ")[0])}


def test_every_setting_the_code_reads_has_a_row_and_every_row_a_setting() -> None:
    from_classes = set().union(*(_env_names(cls) for cls in _settings_classes()))
    from_environ = _environ_reads()
    in_code = from_classes | from_environ
    in_table = _table_names()
    assert {"ERASURE_SANDBOX_URL", "ERASURE_SANDBOX_SMTP_PORT", "ERASURE_VAR_DIR"} <= from_environ
    assert {"ERASURE_<SERVICE>_HTTP_PORT", "ERASURE_<SERVICE>_DATABASE_URL"} <= from_environ
    assert len(from_classes) > 50, "the settings classes were all found"
    assert in_code - in_table == set(), "settings the README's variable table lacks"
    assert in_table - in_code == set(), "rows of the README's variable table that no code reads"


def test_the_check_sees_a_setting_without_a_row() -> None:
    class Extra(BaseSettings):
        model_config = {"env_prefix": "ERASURE_PAYMENT_"}
        brand_new: int = 1

    assert _env_names(Extra) == {"ERASURE_PAYMENT_BRAND_NEW"}
    assert "ERASURE_PAYMENT_BRAND_NEW" not in _table_names()
