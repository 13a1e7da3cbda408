"""Helpers to run the pipeline against a real broker and database, for our tests and upstream services'."""

from shared.testing.infra import amqp_url_or_none, create_database, drop_database, postgres_url_or_none
from shared.testing.pipeline import Pipeline, RunningService, wait_until

__all__ = [
    "Pipeline",
    "RunningService",
    "amqp_url_or_none",
    "create_database",
    "drop_database",
    "postgres_url_or_none",
    "wait_until",
]
