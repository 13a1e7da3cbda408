"""The account domain API: registration, sign-in sessions, preferences, devices, and erasure of a user.

Callers pass an open session and own the transaction; nothing here commits. Error messages name ids,
never the personal data that was refused.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, exists, insert, select, update
from sqlalchemy.orm import Session

from schemas.validators import (
    normalise_corporate_id,
    normalise_email,
    normalise_phone,
    normalise_postal_code,
)
from services.account.freetext import personal_data_in
from services.account.models import (
    CHANNELS,
    DEVICE_KINDS,
    TOPICS,
    Device,
    Preference,
    SignInSession,
    User,
    metadata,
)
from shared.keys import blind_index
from shared.logging import get_logger

log = get_logger(__name__)

DEFAULT_SESSION_LIFETIME = timedelta(days=30)
FREE_TEXT_FIELDS = ("name", "location_note", "description")
_tombstones = metadata.tables["tombstones"]


class AccountError(ValueError):
    """A request the account cannot carry out as asked (unknown user, taken e-mail, invalid value)."""


@dataclass(frozen=True)
class SavedDevice:
    """A stored device and what personal data its free text held, so the portal can warn the user."""

    device_id: str
    personal_data_flags: tuple[str, ...]
    flagged_fields: tuple[str, ...]


def _utc(at: datetime | None) -> datetime:
    """An aware UTC instant: now when not given, UTC assumed for a naive value."""
    if at is None:
        return datetime.now(UTC)
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def _valid(normalise: Callable[[str], str], value: str, what: str) -> str:
    """The normalised value, or AccountError naming only the field (the value is personal data)."""
    try:
        return normalise(value)
    except ValueError as exc:
        raise AccountError(f"invalid {what}: {exc}") from None


def _required_text(value: str, what: str, limit: int) -> str:
    text = value.strip()
    if not text or len(text) > limit:
        raise AccountError(f"{what} must be 1 to {limit} characters")
    return text


def _optional_text(value: str | None, what: str, limit: int) -> str | None:
    return None if value is None or not value.strip() else _required_text(value, what, limit)


def canonical_email(email: str) -> str:
    """The form e-mail addresses are stored and looked up in: validated, then wholly lower-cased."""
    return _valid(normalise_email, email, "e-mail address").lower()


def hash_token(token: str) -> str:
    """SHA-256 (hex) of a session token: the only form in which a cookie is stored."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_session_token() -> str:
    """A fresh, unguessable token (sign-in cookie, mailed confirmation code); never starting with "-", which a
    command line would take for an option (`erasure intake confirm <code>`)."""
    while (token := secrets.token_urlsafe(32)).startswith("-"):
        pass
    return token


def is_erased_user(session: Session, user_id: str) -> bool:
    """Whether the account has erased this user (its tombstone exists)."""
    return session.execute(select(_tombstones.c.user_id).where(_tombstones.c.user_id == user_id)).first() \
        is not None


def _require_user(session: Session, user_id: str) -> None:
    if session.get(User, user_id) is None:
        raise AccountError(f"no user {user_id}")


def register_user(
    session: Session,
    *,
    name: str,
    email: str,
    phone: str | None = None,
    street: str | None = None,
    postal_code: str | None = None,
    city: str | None = None,
    country: str = "SE",
    company_name: str | None = None,
    corporate_id: str | None = None,
    user_id: str | None = None,
    at: datetime | None = None,
) -> str:
    """Create a user with validated, normalised contact details and return its opaque user id."""
    at = _utc(at)
    user_id = user_id or f"u-{uuid.uuid4().hex}"
    if is_erased_user(session, user_id):
        raise AccountError(f"user id {user_id} belonged to an erased account and is not reused")
    address = canonical_email(email)
    if find_user_by_email(session, address) is not None:
        raise AccountError("the e-mail address is already registered")
    country = country.strip().upper()
    if len(country) != 2 or not country.isalpha():
        raise AccountError("country must be an ISO 3166-1 alpha-2 code")
    session.add(User(
        user_id=user_id,
        name=_required_text(name, "name", 200),
        email=address,
        phone=_valid(normalise_phone, phone, "phone number") if phone else None,
        street=_optional_text(street, "street", 200),
        postal_code=_valid(normalise_postal_code, postal_code, "postal code") if postal_code else None,
        city=_optional_text(city, "city", 100),
        country=country,
        company_name=_optional_text(company_name, "company name", 200),
        corporate_id=_valid(normalise_corporate_id, corporate_id, "corporate id") if corporate_id else None,
        created_at=at,
        last_sign_in_at=at,
    ))
    session.flush()
    log.info("user registered", user_id=user_id)
    return user_id


def find_user_by_email(session: Session, email: str) -> User | None:
    """The user registered with this e-mail address (case-insensitive), if any."""
    try:
        address = canonical_email(email)
    except AccountError:
        return None
    return session.execute(select(User).where(User.email_index == blind_index(address))).scalar_one_or_none()


def record_sign_in(
    session: Session,
    user_id: str,
    token: str,
    at: datetime | None = None,
    *,
    lifetime: timedelta = DEFAULT_SESSION_LIFETIME,
) -> datetime:
    """Open a sign-in session for the cookie `token`, mark the user as signed in; return its expiry."""
    at = _utc(at)
    _require_user(session, user_id)
    expires_at = at + lifetime
    session.execute(insert(SignInSession).values(
        token_sha256=hash_token(token), user_id=user_id, created_at=at, expires_at=expires_at, revoked_at=None))
    session.execute(update(User).where(User.user_id == user_id).values(last_sign_in_at=at))
    return expires_at


def revoke_sessions(session: Session, user_id: str, at: datetime | None = None) -> int:
    """End every open session of the user (sign out everywhere); return how many were open."""
    result = session.execute(
        update(SignInSession)
        .where(SignInSession.user_id == user_id, SignInSession.revoked_at.is_(None))
        .values(revoked_at=_utc(at))
    )
    return int(result.rowcount or 0)


def validate_session(session: Session, token: str, at: datetime | None = None) -> str | None:
    """The user id a cookie signs in, or None if the session is unknown, revoked, expired or erased."""
    row = session.execute(
        select(SignInSession.user_id)
        .join(User, User.user_id == SignInSession.user_id)
        .where(
            SignInSession.token_sha256 == hash_token(token),
            SignInSession.revoked_at.is_(None),
            SignInSession.expires_at > _utc(at),
            # A restored backup may bring the rows back before the erasure is re-applied.
            ~exists().where(_tombstones.c.user_id == SignInSession.user_id),
        )
    ).first()
    return None if row is None else str(row.user_id)


def set_preferences(session: Session, user_id: str, enabled: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """Replace the user's mail-dispatch choices with exactly the enabled (channel, topic) pairs."""
    wanted = sorted(set(enabled))
    for channel, topic in wanted:
        if channel not in CHANNELS:
            raise AccountError(f"unknown channel {channel!r}; choose one of {', '.join(CHANNELS)}")
        if topic not in TOPICS:
            raise AccountError(f"unknown topic {topic!r}; choose one of {', '.join(TOPICS)}")
    _require_user(session, user_id)
    session.execute(delete(Preference).where(Preference.user_id == user_id))
    if wanted:
        session.execute(insert(Preference), [
            {"user_id": user_id, "channel": channel, "topic": topic} for channel, topic in wanted])
    return wanted


def save_device(
    session: Session,
    user_id: str,
    *,
    kind: str,
    name: str,
    location_note: str | None = None,
    description: str | None = None,
    device_id: str | None = None,
    at: datetime | None = None,
) -> SavedDevice:
    """Create or update a device/plant; flag (store and return) personal data found in its free text."""
    at = _utc(at)
    if kind not in DEVICE_KINDS:
        raise AccountError(f"kind must be one of {', '.join(DEVICE_KINDS)}")
    _require_user(session, user_id)
    texts = {
        "name": _required_text(name, "device name", 200),
        "location_note": _optional_text(location_note, "location note", 2000),
        "description": _optional_text(description, "description", 2000),
    }
    found = {field: personal_data_in(text) for field, text in texts.items() if text}
    flagged_fields = tuple(field for field in FREE_TEXT_FIELDS if found.get(field))
    flags = tuple(kind_ for kind_ in ("email", "phone", "personnummer")
                  if any(kind_ in kinds for kinds in found.values()))
    device = session.get(Device, device_id) if device_id else None
    if device is not None and device.user_id != user_id:
        raise AccountError(f"device {device_id} belongs to another user")
    if device is None:
        device = Device(device_id=device_id or f"d-{uuid.uuid4().hex}", user_id=user_id, kind=kind, created_at=at)
        session.add(device)
    device.kind = kind
    device.name, device.location_note, device.description = texts["name"], texts["location_note"], \
        texts["description"]
    device.personal_data_flags = ",".join(flags)
    device.updated_at = at
    session.flush()
    if flags:
        # Which kinds and where, never the text itself: the warning must not copy what it warns about.
        log.warning("personal data in device free text", user_id=user_id, device_id=device.device_id,
                    kinds=list(flags), fields=list(flagged_fields))
    return SavedDevice(device.device_id, flags, flagged_fields)


def erase_user(session: Session, user_id: str) -> list[str]:
    """Delete every row of the user; return the categories of personal data that were held."""
    categories: list[str] = []
    # Children first, so the deletes hold on databases where foreign keys are enforced.
    for category, model in (
        ("sign-in sessions", SignInSession),
        ("mail-dispatch preferences", Preference),
        ("devices and plants", Device),
        ("account profile", User),
    ):
        result = session.execute(delete(model).where(model.user_id == user_id))
        if result.rowcount:
            categories.append(category)
    order = ("account profile", "mail-dispatch preferences", "sign-in sessions", "devices and plants")
    return sorted(categories, key=order.index)
