"""installer_sharing's tables: what went to which installer and when (never the contact data itself)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.db import runtime_metadata

metadata = runtime_metadata()


class Base(DeclarativeBase):
    metadata = metadata


class Share(Base):
    """One hand-over of a buyer's contact details to an installer: enough to send the Art. 19 notice later.

    The contact details are not copied here: the installer holds them, and the notice needs only the
    purchase ids they came with.
    """

    __tablename__ = "shares"

    event_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(64), index=True)
    installer_id: Mapped[str] = mapped_column(String(64))
    purchase_id: Mapped[str] = mapped_column(String(64))
    shared_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Notice(Base):
    """An Art. 19 erasure notice sent to an installer, as proof; the user is reachable only via the tombstone."""

    __tablename__ = "notices"

    request_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    installer_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    notified_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
