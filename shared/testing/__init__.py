"""Helpers to run the pipeline on a real broker or in memory, on real databases, for our tests and upstream's."""

from shared.testing.infra import amqp_url_or_none, create_database, drop_database, postgres_url_or_none
from shared.testing.memory import MemoryPipeline, MemoryService
from shared.testing.pipeline import Pipeline, RunningService, wait_until

__all__ = [
    "MemoryPipeline",
    "MemoryService",
    "Pipeline",
    "RunningService",
    "amqp_url_or_none",
    "create_database",
    "drop_database",
    "postgres_url_or_none",
    "wait_until",
]
