"""newsletter's table: which e-mail address of which user is subscribed to which audience, by consent only."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.db import runtime_metadata
from shared.keys import seal_columns

metadata = runtime_metadata()


class Base(DeclarativeBase):
    metadata = metadata


class Subscriber(Base):
    """A consenting subscriber: the address is kept (sealed) so that the member can be found at Mailchimp to erase
    it; rows are found by the address's blind index."""

    __tablename__ = "subscribers"

    user_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    email_index: Mapped[str] = mapped_column(String(64), primary_key=True)
    list_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    email: Mapped[str] = mapped_column(String(320))
    subscribed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


seal_columns(Subscriber, "newsletter", "email", indexes={"email_index": "email"})
