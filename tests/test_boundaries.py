"""Package boundaries, read from the imports: no service reaches into another, the runtime into no service."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from services.registry import SERVICES

ROOT = Path(__file__).resolve().parent.parent
# What a service may import besides its own package: shared rules, the vendors' clients, and the sandbox (the
# development stand-in for the vendors, whose addresses are the settings' defaults).
SHARED_BY_SERVICES = ("services.common", "services.vendors", "services.sandbox")


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _sources(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*.py") if "migrations" not in p.parts]


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_imports_no_other_services_internals(service: str) -> None:
    own = f"services.{service}"
    crossing = {
        f"{path.relative_to(ROOT)}: {name}"
        for path in _sources(ROOT / "services" / service)
        for name in _imports(path)
        if name.startswith("services.") and not name.startswith((own, *SHARED_BY_SERVICES))
    }
    assert not crossing, f"{service} reaches into other services: {sorted(crossing)}"


def test_the_runtime_and_operator_tooling_import_no_service() -> None:
    crossing = {
        f"{path.relative_to(ROOT)}: {name}"
        for folder in ("shared", "ops")
        for path in _sources(ROOT / folder)
        if "testing" not in path.relative_to(ROOT).parts  # the pytest plugin runs services on purpose
        for name in _imports(path)
        if name == "services" or name.startswith("services.")
    }
    assert not crossing, sorted(crossing)
