"""Operator tooling on top of the runtime: dead-letter inspection and replay, progress display."""
