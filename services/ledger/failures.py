"""A slice's failures while it has not reported: the ledger records the last one (ErasureSliceRetrying).

Not part of the receipt: a failure is no outcome, and the request stays open until the slice reports. What is
recorded (how often it failed, the outside system, the masked error, when the next automatic try is due) is what
`erasure status` and the console show for the unfinished slice.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from schemas import ErasureSliceRetrying
from services.ledger.models import SliceReport
from services.ledger.settings import LedgerSettings
from shared.errors import TransientError
from shared.service import Context


def record_slice_failure(event: ErasureSliceRetrying, ctx: Context[LedgerSettings]) -> None:
    """Keep the slice's newest failure; ignored once the slice has reported, or when an older one arrives late."""
    row = ctx.session.scalars(select(SliceReport).where(
        SliceReport.request_id == str(event.request_id), SliceReport.service == event.service)
        .with_for_update().execution_options(populate_existing=True)).first()
    if row is None:
        # The slice failed before the ledger opened the request: try again once its deregistration is in.
        raise TransientError(f"request {event.request_id} is not open in the ledger yet")
    if row.outcome is not None:
        ctx.log.info("failure of an already reported slice ignored", service=event.service)
        return
    if row.last_failed_at is not None and row.last_failed_at > event.failed_at:
        ctx.log.info("an older failure arrived late; ignored", service=event.service)
        return
    row.attempts = max(row.attempts or 0, event.attempts)
    row.failing_system, row.last_error, row.last_failed_at = event.system, event.error, event.failed_at
    row.next_retry_at = (event.failed_at + timedelta(seconds=event.retry_in_seconds)
                         if event.retry_in_seconds is not None else None)
    ctx.log.info("slice failure recorded", service=event.service, system=event.system, attempts=event.attempts,
                 dead_lettered=event.retry_in_seconds is None)
