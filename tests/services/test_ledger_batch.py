"""The ledger's batch path: a batch's requests read in one statement, its writes in one flush, same outcome."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event

from schemas import SLICE_SERVICES
from services.ledger.main import build
from shared.testing.memory import MemoryPipeline
from tests.services.test_ledger import LEDGER_TABLES, Completions, _deregistration, _reports, _status, _verify


def test_a_batch_of_whole_erasures_costs_the_ledger_a_fixed_number_of_statements(
        erasure_memory: MemoryPipeline, db_backend: str) -> None:
    ledger = erasure_memory.start(build(), erasure_memory.database_url("ledger"))
    completions = Completions(erasure_memory)
    statements: list[str] = []

    @event.listens_for(ledger.engine, "before_cursor_execute")
    def _count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if any(name in statement for name in LEDGER_TABLES):
            statements.append(statement)

    requests = [_deregistration() for _ in range(12)]
    early = _deregistration()  # two of its reports come before its deregistration, in the same batch
    events: list[Any] = [*_reports(early)[:2]]
    for request in requests:
        events += [request, *_reports(request)]
    events += [early, *_reports(early)[2:]]
    sent = erasure_memory.publish(*events, run=False)
    assert len(sent) <= erasure_memory.settings.batch_size, "one batch"
    erasure_memory.run()
    event.remove(ledger.engine, "before_cursor_execute", _count)
    for outbound in sent:
        assert ledger.handled(outbound.event_id)

    # Lock (PostgreSQL), read, then one write per table and kind, whatever the batch holds: not per delivery.
    assert len(statements) <= 8, statements
    for request in [*requests, early]:
        status = _status(ledger, request)
        assert status.status == "complete" and status.missing == ()
        assert _verify(ledger, request).ok
        assert completions.wait_one(request)["receipt_hash"] == status.receipt_hash
    assert len({s.service for s in _status(ledger, early).slices}) == len(SLICE_SERVICES)
