"""The `erasure_outbox_backlog` gauge: the events a service committed but has not yet published, 0 when idle."""

from __future__ import annotations

from prometheus_client import REGISTRY

from schemas import ErasureSliceReported
from schemas.examples import example_deregistration
from services.account.main import build
from shared import metrics
from shared.testing import wait_until


def _backlog(service: str) -> float | None:
    return REGISTRY.get_sample_value("erasure_outbox_backlog", {"service": service})


def test_backlog_reads_zero_once_the_emitted_events_are_published(erasure_pipeline, db_backend) -> None:
    metrics.OUTBOX_BACKLOG.labels("account").set(-1)  # whatever an earlier test left: this run must overwrite it
    running = erasure_pipeline.start(build())
    for user in ("u-backlog-1", "u-backlog-2"):
        [sent] = erasure_pipeline.publish(example_deregistration(user))
        running.wait_handled(sent.event_id)  # the account staged its slice report in the outbox
    reports = erasure_pipeline.wait_events(ErasureSliceReported, count=2)  # ...and the relay published it
    assert {r.user_id for r in reports} == {"u-backlog-1", "u-backlog-2"}
    wait_until(lambda: _backlog("account") == 0, timeout=10, what="the backlog gauge to read 0 when idle")
    assert _backlog("account") == 0
