"""The ledger's tables: erasure requests, one row per expected slice, and the receipt chain.

No personal data lives here beyond the opaque user id: slice reports name categories, legal bases,
dates and recipients, never contact details.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from shared.db import runtime_metadata

metadata = runtime_metadata()

OPEN, COMPLETE = "open", "complete"
BY_DEREGISTRATION, BY_REPORT = "deregistration", "report"


class UtcTimestamp(TypeDecorator[datetime]):
    """A timezone-aware UTC instant on every backend (SQLite keeps no offset, so store and read UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("the ledger stores timezone-aware instants only")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = metadata


class ErasureRequest(Base):
    """One erasure request, from its opening to the report of the last of the five slices."""

    __tablename__ = "erasure_requests"
    __table_args__ = (
        CheckConstraint("status IN ('open', 'complete')", name="ck_erasure_requests_status"),
        CheckConstraint("opened_by IN ('deregistration', 'report')", name="ck_erasure_requests_opened_by"),
        Index("ix_erasure_requests_status_due_at", "status", "due_at"),
        # The console pages through requests by (due_at, request_id): keyset paging stays an index range scan.
        Index("ix_erasure_requests_due_at_request_id", "due_at", "request_id"),
        Index("ix_erasure_requests_status_due_at_request_id", "status", "due_at", "request_id"),
    )

    request_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(64), index=True)
    # reason and requested_at stay NULL while a request opened by an early slice report awaits its event.
    reason: Mapped[str | None] = mapped_column(String(20))
    requested_at: Mapped[datetime | None] = mapped_column(UtcTimestamp)
    opened_at: Mapped[datetime] = mapped_column(UtcTimestamp)
    opened_by: Mapped[str] = mapped_column(String(20))
    due_at: Mapped[datetime] = mapped_column(UtcTimestamp)
    replay: Mapped[bool] = mapped_column(Boolean, default=False)
    original_request_id: Mapped[str | None] = mapped_column(String(36))
    status: Mapped[str] = mapped_column(String(10), default=OPEN)
    completed_at: Mapped[datetime | None] = mapped_column(UtcTimestamp, index=True)
    receipt_hash: Mapped[str | None] = mapped_column(String(64))
    # An extension (GDPR Art. 12(3)): further months, why, when, and whether the data subject was told.
    extension_months: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    extension_reason: Mapped[str | None] = mapped_column(Text)
    extended_at: Mapped[datetime | None] = mapped_column(UtcTimestamp)
    extension_notice: Mapped[str | None] = mapped_column(String(20))

    slices: Mapped[list[SliceReport]] = relationship(
        back_populates="request", order_by="SliceReport.position", cascade="all, delete-orphan")
    entries: Mapped[list[ReceiptEntry]] = relationship(
        back_populates="request", order_by="ReceiptEntry.seq", cascade="all, delete-orphan")


class SliceReport(Base):
    """What one expected slice reported for a request; outcome is NULL until it has reported."""

    __tablename__ = "erasure_slices"

    request_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("erasure_requests.request_id", ondelete="CASCADE"), primary_key=True)
    service: Mapped[str] = mapped_column(String(40), primary_key=True)
    position: Mapped[int] = mapped_column(Integer)
    outcome: Mapped[str | None] = mapped_column(String(20))
    reported_at: Mapped[datetime | None] = mapped_column(UtcTimestamp)
    recorded_at: Mapped[datetime | None] = mapped_column(UtcTimestamp)
    report: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # The slice's last failure while it has not reported (ErasureSliceRetrying): how often, where, why, and when
    # the next automatic try is due (NULL with a failure recorded: dead-lettered, an operator must act).
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    failing_system: Mapped[str | None] = mapped_column(String(200))
    last_error: Mapped[str | None] = mapped_column(Text)
    last_failed_at: Mapped[datetime | None] = mapped_column(UtcTimestamp)
    next_retry_at: Mapped[datetime | None] = mapped_column(UtcTimestamp)

    request: Mapped[ErasureRequest] = relationship(back_populates="slices")


class ReceiptEntry(Base):
    """One link of a request's receipt chain: a slice report, hashed onto the link before it."""

    __tablename__ = "receipt_entries"
    __table_args__ = (UniqueConstraint("request_id", "service", name="uq_receipt_entries_request_service"),)

    request_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("erasure_requests.request_id", ondelete="CASCADE"), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    service: Mapped[str] = mapped_column(String(40))
    payload: Mapped[str] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64))
    entry_hash: Mapped[str] = mapped_column(String(64))
    recorded_at: Mapped[datetime] = mapped_column(UtcTimestamp)

    request: Mapped[ErasureRequest] = relationship(back_populates="entries")


class LegalHold(Base):
    """A legal hold on a user's erasure: placed with a reason, active until released. Append-only but for release."""

    __tablename__ = "legal_holds"
    __table_args__ = (Index("ix_legal_holds_user_id_released_at", "user_id", "released_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text)
    placed_at: Mapped[datetime] = mapped_column(UtcTimestamp)
    released_at: Mapped[datetime | None] = mapped_column(UtcTimestamp)


class ConsoleAction(Base):
    """One thing a person did in the operations console (a reveal, a replay, a purge): who, when, what, outcome.

    Append-only. `target` is an opaque id (event or request id), never personal data.
    """

    __tablename__ = "console_actions"
    __table_args__ = (Index("ix_console_actions_at", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UtcTimestamp)
    who: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(20))
    action: Mapped[str] = mapped_column(String(40))
    target: Mapped[str] = mapped_column(String(200), default="")
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class AccessRequest(Base):
    """One access request (GDPR Art. 15): open until every slice has answered, then its export until it expires.

    The export holds personal data: it lives only in `export_json` and `export_html`, which are erased (set to
    NULL, `export_erased_at` set) when it expires or the user is erased. The manifest holds only hashes.
    """

    __tablename__ = "access_requests"
    __table_args__ = (
        CheckConstraint("status IN ('open', 'complete')", name="ck_access_requests_status"),
        Index("ix_access_requests_status_due_at", "status", "due_at"),
    )

    request_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(64), index=True)
    requested_at: Mapped[datetime] = mapped_column(UtcTimestamp)
    opened_at: Mapped[datetime] = mapped_column(UtcTimestamp)
    due_at: Mapped[datetime] = mapped_column(UtcTimestamp)
    status: Mapped[str] = mapped_column(String(10), default=OPEN)
    completed_at: Mapped[datetime | None] = mapped_column(UtcTimestamp)
    expires_at: Mapped[datetime | None] = mapped_column(UtcTimestamp, index=True)
    manifest: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    manifest_hash: Mapped[str | None] = mapped_column(String(64))
    export_json: Mapped[str | None] = mapped_column(Text)
    export_html: Mapped[str | None] = mapped_column(Text)
    export_erased_at: Mapped[datetime | None] = mapped_column(UtcTimestamp)
    export_erased_why: Mapped[str | None] = mapped_column(String(20))

    parts: Mapped[list[AccessPart]] = relationship(
        back_populates="request", order_by="AccessPart.position", cascade="all, delete-orphan")


class AccessPart(Base):
    """One slice's answer to an access request; `items` (personal data) only until the export is assembled."""

    __tablename__ = "access_parts"

    request_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("access_requests.request_id", ondelete="CASCADE"), primary_key=True)
    service: Mapped[str] = mapped_column(String(40), primary_key=True)
    position: Mapped[int] = mapped_column(Integer)
    answered_at: Mapped[datetime | None] = mapped_column(UtcTimestamp)
    items: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    sha256: Mapped[str | None] = mapped_column(String(64))

    request: Mapped[AccessRequest] = relationship(back_populates="parts")


class CorrectionRequest(Base):
    """One correction request (GDPR Art. 16, 19): open until every slice has reported. Only the names of the
    corrected fields are kept here, never their values."""

    __tablename__ = "correction_requests"
    __table_args__ = (
        CheckConstraint("status IN ('open', 'complete')", name="ck_correction_requests_status"),
        Index("ix_correction_requests_status_due_at", "status", "due_at"),
    )

    request_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(64), index=True)
    fields: Mapped[list[str]] = mapped_column(JSON)
    requested_at: Mapped[datetime] = mapped_column(UtcTimestamp)
    opened_at: Mapped[datetime] = mapped_column(UtcTimestamp)
    due_at: Mapped[datetime] = mapped_column(UtcTimestamp)
    status: Mapped[str] = mapped_column(String(10), default=OPEN)
    completed_at: Mapped[datetime | None] = mapped_column(UtcTimestamp)
    receipt_hash: Mapped[str | None] = mapped_column(String(64))

    parts: Mapped[list[CorrectionPart]] = relationship(
        back_populates="request", order_by="CorrectionPart.position", cascade="all, delete-orphan")


class CorrectionPart(Base):
    """What one slice reported for a correction: outcome, fields updated, recipients told."""

    __tablename__ = "correction_parts"

    request_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("correction_requests.request_id", ondelete="CASCADE"), primary_key=True)
    service: Mapped[str] = mapped_column(String(40), primary_key=True)
    position: Mapped[int] = mapped_column(Integer)
    outcome: Mapped[str | None] = mapped_column(String(20))
    corrected: Mapped[list[str] | None] = mapped_column(JSON)
    recipients: Mapped[list[str] | None] = mapped_column(JSON)
    reported_at: Mapped[datetime | None] = mapped_column(UtcTimestamp)

    request: Mapped[CorrectionRequest] = relationship(back_populates="parts")
