"""newsletter's table: which e-mail address of which user is subscribed to which audience, by consent only."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.db import runtime_metadata

metadata = runtime_metadata()


class Base(DeclarativeBase):
    metadata = metadata


class Subscriber(Base):
    """A consenting subscriber: the address is kept so that the member can be found at Mailchimp to erase it."""

    __tablename__ = "subscribers"

    user_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    email: Mapped[str] = mapped_column(String(320), primary_key=True)
    list_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    subscribed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
