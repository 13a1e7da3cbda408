"""The account slice: users, preferences, sessions, devices, erasure requests by e-mail and the sweep's marks."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, CheckConstraint, DateTime, ForeignKey, Index, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.db import runtime_metadata
from shared.keys import notice_subject, seal_columns

metadata = runtime_metadata()

CHANNELS = ("email", "sms", "phone")
TOPICS = ("freight_status", "freight_documents", "newsletters", "offers")
DEVICE_KINDS = ("device", "plant")


def _one_of(column: str, values: tuple[str, ...], name: str) -> CheckConstraint:
    """A CHECK that a column holds one of a fixed set of words."""
    listed = ", ".join(f"'{v}'" for v in values)
    return CheckConstraint(f"{column} IN ({listed})", name=name)


class Base(DeclarativeBase):
    metadata = metadata


class User(Base):
    """A registered user; `last_sign_in_at` drives the three-year inactivity sweep."""

    __tablename__ = "users"
    # The sweep pages through inactive users by (last_sign_in_at, user_id): one index serves range and order.
    __table_args__ = (Index("ix_users_last_sign_in_at_user_id", "last_sign_in_at", "user_id"),)

    user_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(254))
    # Blind index of the address (keyed HMAC): finds the user by e-mail without the address in clear.
    email_index: Mapped[str] = mapped_column(String(64), unique=True)
    phone: Mapped[str | None] = mapped_column(String(20))
    street: Mapped[str | None] = mapped_column(String(200))
    postal_code: Mapped[str | None] = mapped_column(String(6))
    city: Mapped[str | None] = mapped_column(String(100))
    country: Mapped[str] = mapped_column(String(2), default="SE")
    company_name: Mapped[str | None] = mapped_column(String(200))
    # An organisation number, or a sole trader's personnummer (personal data).
    corporate_id: Mapped[str | None] = mapped_column(String(12))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # Registration counts as the first sign-in, so the sweep never has to look at created_at.
    last_sign_in_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Preference(Base):
    """One enabled (channel, topic) combination of mail dispatch; absent rows are disabled."""

    __tablename__ = "preferences"
    __table_args__ = (
        _one_of("channel", CHANNELS, "ck_preferences_channel"),
        _one_of("topic", TOPICS, "ck_preferences_topic"),
    )

    user_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("users.user_id", ondelete="CASCADE"), primary_key=True)
    channel: Mapped[str] = mapped_column(String(8), primary_key=True)
    topic: Mapped[str] = mapped_column(String(20), primary_key=True)


class SignInSession(Base):
    """A sign-in cookie: only the SHA-256 of its token is stored, so a database leak yields no cookies."""

    __tablename__ = "sessions"

    token_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("users.user_id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Device(Base):
    """A device or plant; its free-text fields are meant for no personal data, and are checked for it."""

    __tablename__ = "devices"
    __table_args__ = (_one_of("kind", DEVICE_KINDS, "ck_devices_kind"),)

    device_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("users.user_id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(8))
    name: Mapped[str] = mapped_column(String(200))
    location_note: Mapped[str | None] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(Text)
    # Comma list of the kinds of personal data found when last written (email, phone, personnummer).
    personal_data_flags: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class CompletedErasure(Base):
    """A closed erasure request; the confirmation e-mail to the user is sent from these rows.

    Ids and times only: nothing here identifies a person once the account itself is gone.
    """

    __tablename__ = "completed_erasures"

    request_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(64))
    completed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # A re-applied erasure after a backup restore: the user was told the first time.
    replay: Mapped[bool] = mapped_column(Boolean, default=False)


class IntakeRequest(Base):
    """An erasure request received by e-mail: confirmed by a single-use token, of which only the hash is kept.

    Ids and times only; the address the request came from is the user's own, read from `users` when needed.
    """

    __tablename__ = "intake_requests"

    request_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(64), index=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    # When the e-mail arrived: the one-month deadline of GDPR Art. 12(3) runs from here, not from the click.
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    confirmed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # What was asked: "erasure" ("Unregister account: …") or "access" ("Access request: …", GDPR Art. 15).
    kind: Mapped[str] = mapped_column(String(10), default="erasure", server_default="erasure")


class CompletionNotice(Base):
    """The one copy of an erased user's e-mail address, kept only to tell them the erasure is done.

    Purpose-bound (GDPR Art. 12(3)): deleted when the final mail is sent, and at `keep_until` at the latest.
    """

    __tablename__ = "completion_notices"

    request_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    email: Mapped[str] = mapped_column(String(254))
    keep_until: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class SweepMark(Base):
    """A user the inactivity sweep has already deregistered: a re-run never deregisters them twice."""

    __tablename__ = "sweep_marks"

    user_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    request_id: Mapped[str] = mapped_column(String(36))
    swept_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


# Personal data at rest is sealed under the user's data key (the request's, for the notice address): erasure
# destroys the key, and with it every copy in journals, dead tuples and backups.
seal_columns(User, "account", "name", "email", "phone", "street", "postal_code", "city", "company_name",
             "corporate_id", indexes={"email_index": "email"})
seal_columns(Device, "account", "name", "location_note", "description")
seal_columns(CompletionNotice, "account", "email", owner="request_id", subject=notice_subject)
