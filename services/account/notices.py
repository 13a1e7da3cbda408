"""The completion notice: telling a user who asked by e-mail that the erasure is done (GDPR Art. 12(3)).

Erasing the account deletes the address the notice must go to. So, for a request that came through the
e-mail intake, the address is first copied into `completion_notices`, the only copy, kept for that purpose
alone, reported as retained in the account's slice report, and deleted when the notice is sent — or at
`keep_until` (the request's due date plus a grace period) at the latest.

Deleting what is past its date (`cleanup`) is housekeeping, not part of any one erasure: the account's
handlers run it at most once per `CLEANUP_INTERVAL` per running service (`CleanupTimer`), and the daily
`erasure intake cleanup` job runs it too, so a service that receives no events still gets it. A notice
whose `keep_until` has passed is never sent, whether or not cleanup has deleted it yet.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from schemas import ErasureCompleted, RetainedCategory, UserDeregistered
from services.account.mails import DONE_SUBJECT, NOTICE_BASIS, NOTICE_CATEGORY, completion_body, send
from services.account.models import CompletedErasure, CompletionNotice, IntakeRequest, User
from services.account.settings import AccountSettings
from shared.errors import PermanentError
from shared.keys import key_store, notice_subject
from shared.logging import get_logger

log = get_logger(__name__)

CLEANUP_INTERVAL = 60.0  # seconds between two cleanups run by one account service


class CleanupTimer:
    """Whether `cleanup` is due: the first time asked, then at most once per `interval` seconds.

    One per running service (its handlers share it across the worker's batches), so services that share a
    process but not a database do not hold each other's cleanup back.
    """

    def __init__(self, interval: float = CLEANUP_INTERVAL) -> None:
        self.interval = interval
        self._lock = threading.Lock()
        self._last: float | None = None

    def due(self) -> bool:
        """True if the caller should clean up now (and is then counted as having done so)."""
        now = time.monotonic()
        with self._lock:
            if self._last is not None and now - self._last < self.interval:
                return False
            self._last = now
            return True


def _utc(at: datetime) -> datetime:
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def keep_address_for_notice(
    session: Session, event: UserDeregistered, settings: AccountSettings
) -> RetainedCategory | None:
    """Copy the address aside if this erasure answers an e-mail request; return what to report as retained."""
    if event.reason != "user_request" or event.replay:
        return None
    request_id = str(event.request_id)
    if session.get(IntakeRequest, request_id) is None:
        return None  # requested elsewhere (portal, admin): whoever asked there is answered there
    notice = session.get(CompletionNotice, request_id)
    if notice is None:
        user = session.get(User, event.user_id)
        if user is None:
            return None
        keep_until = settings.due_at(event.requested_at) + settings.notice_grace
        notice = CompletionNotice(request_id=request_id, email=user.email, keep_until=keep_until)
        session.add(notice)
        session.flush()
    return RetainedCategory(category=NOTICE_CATEGORY, legal_basis=NOTICE_BASIS,
                            retain_until=_utc(notice.keep_until).date(), held_by="Loggamera")


def send_completion_notice(session: Session, event: ErasureCompleted, settings: AccountSettings) -> bool:
    """Mail the user that their request is done and what was kept, then delete the address; False if none.

    A refused or unreachable relay raises TransientError and nothing changes, so the event is retried. A
    relay that refuses the recipient for good (5xx) cannot be helped by retrying: the address is deleted.
    """
    notice = session.get(CompletionNotice, str(event.request_id))
    if notice is None:
        return False
    if notice.email is None:
        # Its key was destroyed by an earlier attempt that sent the mail, then failed to commit.
        session.delete(notice)
        session.flush()
        return False
    if _utc(notice.keep_until) < datetime.now(UTC):
        # Kept for this notice until then and no longer; cleanup may not have run since.
        log.info("completion notice past its keep-until date; address deleted unsent",
                 request_id=str(event.request_id))
        session.delete(notice)
        session.flush()
        return False
    try:
        send(settings, notice.email, DONE_SUBJECT, completion_body(str(event.request_id), event.retained))
    except PermanentError as exc:
        log.warning("completion notice undeliverable; address deleted", request_id=str(event.request_id),
                    error=str(exc))
    session.delete(notice)
    session.flush()
    key_store().destroy(notice_subject(str(event.request_id)))
    return True


def cleanup(session: Session, *, now: datetime | None = None) -> dict[str, int]:
    """Delete notice addresses past keep_until, expired unconfirmed requests, and spent completed ones."""
    now = datetime.now(UTC) if now is None else _utc(now)
    # "fetch": the handler's session may hold these rows already, and must not keep acting on them.
    fetch = {"synchronize_session": "fetch"}
    past = list(session.scalars(select(CompletionNotice.request_id).where(CompletionNotice.keep_until < now)))
    notices = session.execute(
        delete(CompletionNotice).where(CompletionNotice.keep_until < now).execution_options(**fetch))
    for request_id in past:
        key_store().destroy(notice_subject(request_id))
    expired = session.execute(delete(IntakeRequest).where(
        IntakeRequest.confirmed_at.is_(None), IntakeRequest.expires_at < now).execution_options(**fetch))
    spent = session.execute(delete(IntakeRequest).where(
        IntakeRequest.confirmed_at.is_not(None), IntakeRequest.expires_at < now,
        IntakeRequest.request_id.in_(select(CompletedErasure.request_id))).execution_options(**fetch))
    counts = {"notices": int(notices.rowcount or 0), "expired_requests": int(expired.rowcount or 0),
              "spent_requests": int(spent.rowcount or 0)}
    if any(counts.values()):
        log.info("intake cleanup", **counts)
    return counts
