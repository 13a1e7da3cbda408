"""The `erasure` command: every operator action on the pipeline."""

from services.cli.main import main

__all__ = ["main"]
