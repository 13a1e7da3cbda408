"""Contract tests share the end-to-end stack: every service against one sandbox, on SQLite and PostgreSQL."""

from tests.e2e.conftest import Stack, stack

__all__ = ["Stack", "stack"]
