"""Fixtures the service tests share: the slice reports a service emitted, read through the pipeline."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from schemas import ErasureSliceReported
from shared.testing import MemoryPipeline


class SliceReports:
    """Slice reports one service emitted (as JSON-ready dicts), read through the pipeline."""

    def __init__(self, pipeline: MemoryPipeline, service: str) -> None:
        self.pipeline = pipeline
        self.service = service

    def wait(self, user_id: str, count: int = 1) -> list[dict[str, Any]]:
        """The user's reports once at least `count` have arrived."""
        found = self.pipeline.wait_events(
            ErasureSliceReported, count=count, where=lambda r: r.user_id == user_id and r.service == self.service)
        return [r.model_dump(mode="json") for r in found]


@pytest.fixture
def slice_reports(erasure_memory: MemoryPipeline) -> Callable[[str], SliceReports]:
    """SliceReports of a service, by name."""
    return lambda service: SliceReports(erasure_memory, service)
