"""Every service by name; each lives in services/<name>/ and builds itself in main.build()."""

from __future__ import annotations

import importlib

from shared.service import Service

SLICES = ("account", "installer_sharing", "payment", "bookkeeping", "newsletter")
SERVICES = (*SLICES, "ledger")


def load(name: str) -> Service:
    """Build the named service (its settings are read from the environment now, not at import)."""
    if name not in SERVICES:
        raise KeyError(f"unknown service {name!r}; choose one of {', '.join(SERVICES)}")
    return importlib.import_module(f"services.{name}.main").build()


def all_services() -> list[Service]:
    """Every service, slices first, then the ledger."""
    return [load(name) for name in SERVICES]
