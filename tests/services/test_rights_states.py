"""Access and correction requests in the ledger's states: `status --overdue`, `--due-soon` and the gauge."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client import REGISTRY
from sqlalchemy.orm import Session

from schemas.examples import example_access_answer, example_access_request, example_correction
from services.ledger.commands import status_command
from services.ledger.main import build
from services.ledger.metrics import RIGHTS_NAME
from services.ledger.rights import rights_counts
from shared.testing.memory import MemoryPipeline


def _publish(pipeline: MemoryPipeline, running: Any, *events: Any) -> None:
    for sent in pipeline.publish(*events):
        running.wait_handled(sent.event_id)


def test_access_and_correction_requests_are_listed_and_counted_by_state(erasure_memory: MemoryPipeline,
                                                                         db_backend: str) -> None:
    url = erasure_memory.database_url("ledger")
    ledger = erasure_memory.start(build(), url)
    now = datetime.now(UTC)
    late = example_access_request("u-late", request_id=str(uuid.uuid4()), requested_at=now - timedelta(days=45))
    fresh = example_access_request("u-fresh", request_id=str(uuid.uuid4()), requested_at=now)
    soon = example_correction("u-soon", request_id=str(uuid.uuid4()), requested_at=now - timedelta(days=21))
    _publish(erasure_memory, ledger, late, fresh, soon)
    _publish(erasure_memory, ledger, example_access_answer("u-late", request_id=str(late.request_id),
                                                           answered_at=now))

    data, code = status_command(url, overdue=True, as_json=True)
    listed = {item["request_id"]: item for item in json.loads(data)}
    assert code == 1 and set(listed) == {str(late.request_id)}
    item = listed[str(late.request_id)]
    assert (item["kind"], item["why"]) == ("access", "past_due")
    assert "newsletter" not in item["missing"] and "account" in item["missing"], "the slices still to answer"
    assert "access" in status_command(url, overdue=True)[0]

    data, code = status_command(url, due_soon=True, as_json=True)
    assert {(i["kind"], i["why"]) for i in json.loads(data)} == {("access", "past_due"), ("correction", "due_soon")}

    with Session(ledger.engine) as session:
        counts = rights_counts(session, now, timedelta(hours=24), timedelta(days=20))
        assert counts["access"] == {"open": 1, "due_soon": 0, "overdue": 1, "stuck": 0, "completed": 0}
        assert counts["correction"]["due_soon"] == 1
        later = rights_counts(session, now + timedelta(hours=25), timedelta(hours=24), timedelta(days=20))
        assert later["access"]["stuck"] == 1, "no answer for longer than the stuck threshold"
    assert REGISTRY.get_sample_value(RIGHTS_NAME, {"kind": "access", "state": "overdue"}) == 1.0


def test_an_erasure_that_completes_first_closes_the_users_open_access_and_correction_requests(
        erasure_memory: MemoryPipeline, db_backend: str) -> None:
    """Their answers and corrections still on the way are sealed under the key the erasure destroys: the slices
    cannot open them any more, so the ledger closes what they would have answered, with nothing held."""
    from schemas import SLICE_SERVICES
    from schemas.examples import example_deregistration, example_slice_report
    from services.ledger.access import access_status
    from services.ledger.correction import correction_status, verify

    ledger = erasure_memory.start(build(), erasure_memory.database_url("ledger"))
    now = datetime.now(UTC)
    ids = {name: str(uuid.uuid4()) for name in ("access", "correction", "other", "erasure")}
    _publish(erasure_memory, ledger,
             example_access_request("u-race", request_id=ids["access"], requested_at=now),
             example_correction("u-race", request_id=ids["correction"], requested_at=now),
             example_correction("u-stays", request_id=ids["other"], requested_at=now))
    _publish(erasure_memory, ledger, example_access_answer("u-race", request_id=ids["access"], answered_at=now))
    _publish(erasure_memory, ledger, example_deregistration("u-race", request_id=ids["erasure"]),
             *(example_slice_report(s, "u-race", request_id=ids["erasure"]) for s in SLICE_SERVICES))

    with Session(ledger.engine) as session:
        fixed = correction_status(session, ids["correction"])
        assert fixed is not None and fixed.status == "complete"
        assert {outcome for _s, outcome, _f, _r in fixed.slices} == {"erased"}
        assert verify(session, ids["correction"]) is True
        asked = access_status(session, ids["access"])
        assert asked is not None and asked.status == "complete" and asked.missing == ()
        assert asked.export_erased_why == "user_erased" and not asked.export_available
        other = correction_status(session, ids["other"])
        assert other is not None and other.status == "open", "another user's request is not touched"
