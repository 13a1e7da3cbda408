"""Realistic, fictitious users in bulk, for the inactivity-sweep tests and benchmarks.

Names and streets are common Swedish ones; e-mail addresses are under kund.loggamera.se (a
subdomain Loggamera owns, which the vendors accept and no stranger reads; schemas/examples.py) and
phone numbers the range PTS reserves for fiction (070-174 06 05 to 070-174 06 99), so numbers repeat.
Sole traders get a personnummer that passes its check digit but is made up.
"""

from __future__ import annotations

import random
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session

from schemas.validators import luhn_check_digit
from services.account.models import User
from shared.keys import blind_index, key_store, of_user, sealed_columns, user_subject

# Well clear of the three-year line on both sides, so the sweep's exact cutoff rule does not matter.
INACTIVE_AFTER = timedelta(days=3 * 365 + 30)
ACTIVE_WITHIN = timedelta(days=3 * 365 - 30)

_FIRST = ("Anna", "Erik", "Maria", "Lars", "Karin", "Johan", "Eva", "Anders", "Sara", "Per", "Emma", "Nils",
          "Lena", "Mikael", "Ingrid", "Oskar", "Elin", "Gustav", "Sofia", "Fredrik", "Astrid", "Henrik")
_LAST = ("Lindqvist", "Johansson", "Karlsson", "Nilsson", "Andersson", "Eriksson", "Larsson", "Olsson",
         "Persson", "Svensson", "Gustafsson", "Pettersson", "Jonsson", "Lindberg", "Lindström", "Bergström")
_STREETS = ("Storgatan", "Kungsgatan", "Drottninggatan", "Skolgatan", "Järnvägsgatan", "Kyrkogatan",
            "Ringvägen", "Parkvägen", "Björkvägen", "Industrivägen", "Hamngatan", "Östra Långgatan")
_PLACES = (("114 55", "Stockholm"), ("411 19", "Göteborg"), ("211 43", "Malmö"), ("903 26", "Umeå"),
           ("753 10", "Uppsala"), ("831 31", "Östersund"), ("582 24", "Linköping"), ("702 10", "Örebro"))
_ASCII = str.maketrans("åäöéÅÄÖ", "aaoeAAO")


@dataclass(frozen=True)
class SeededUsers:
    """What seed_users inserted: how many, how many are past the inactivity line, and the id prefix."""

    count: int
    inactive: int
    id_prefix: str


def _personnummer(rng: random.Random) -> str:
    born = date(1945, 1, 1) + timedelta(days=rng.randrange(20_000))
    nine = born.strftime("%y%m%d") + f"{rng.randrange(1000):03d}"
    return born.strftime("%Y")[:2] + nine + luhn_check_digit(nine)


def _organisation_number(rng: random.Random) -> str:
    nine = f"559{rng.randrange(1_000_000):06d}"
    digits = nine + luhn_check_digit(nine)
    return f"{digits[:6]}-{digits[6:]}"


def _user(rng: random.Random, prefix: str, index: int, inactive: bool, now: datetime) -> dict[str, Any]:
    first, last = rng.choice(_FIRST), rng.choice(_LAST)
    postal_code, city = rng.choice(_PLACES)
    if inactive:
        last_sign_in = now - INACTIVE_AFTER - timedelta(seconds=rng.randrange(3 * 365 * 86_400))
    else:
        last_sign_in = now - timedelta(seconds=rng.randrange(int(ACTIVE_WITHIN.total_seconds())))
    kind = rng.random()
    company_name = corporate_id = None
    if kind < 0.05:
        company_name, corporate_id = f"{last} {first} Fastighetsservice", _personnummer(rng)
    elif kind < 0.15:
        company_name, corporate_id = f"{last} Fastigheter AB", _organisation_number(rng)
    return {
        "user_id": f"{prefix}-{index:07d}",
        "name": f"{first} {last}",
        "email": f"{first}.{last}.{prefix}{index}@kund.loggamera.se".translate(_ASCII).lower(),
        "phone": f"+467017406{5 + index % 95:02d}",
        "street": f"{rng.choice(_STREETS)} {rng.randrange(1, 80)}",
        "postal_code": postal_code,
        "city": city,
        "country": "SE",
        "company_name": company_name,
        "corporate_id": corporate_id,
        "created_at": last_sign_in - timedelta(days=rng.randrange(1, 2000)),
        "last_sign_in_at": last_sign_in,
    }


def _rows(n: int, inactive: int, now: datetime, prefix: str, rng: random.Random) -> Iterator[dict[str, Any]]:
    for index in range(n):
        # Integer steps spread the inactive users evenly, and the count telescopes to exactly `inactive`.
        is_inactive = (index + 1) * inactive // n > index * inactive // n
        yield _user(rng, prefix, index, is_inactive, now)


def _sealed(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows with their personal data sealed under each user's data key (made in one go), as the ORM would."""
    key_store().ensure_keys([user_subject(row["user_id"]) for row in rows])
    personal = sealed_columns(User.__table__)
    return [{**row, "email_index": blind_index(row["email"]),
             **{name: of_user(row["user_id"], row[name]) for name in personal}} for row in rows]


def seed_users(
    session: Session,
    n: int,
    *,
    inactive_fraction: float = 0.1,
    now: datetime | None = None,
    batch: int = 5000,
) -> SeededUsers:
    """Insert n fictitious users, round(n * inactive_fraction) of them unseen for over three years.

    Rows go in by executemany in chunks of `batch`, so memory stays flat at any n; the caller commits.
    """
    if not 0 <= inactive_fraction <= 1:
        raise ValueError("inactive_fraction must be between 0 and 1")
    if batch < 1:
        raise ValueError("batch must be at least 1")
    now = datetime.now(UTC) if now is None else now.replace(tzinfo=now.tzinfo or UTC).astimezone(UTC)
    inactive = round(n * inactive_fraction)
    prefix = f"seed{secrets.token_hex(3)}"
    rng = random.Random(prefix)
    table = User.__table__
    chunk: list[dict[str, Any]] = []
    for row in _rows(n, inactive, now, prefix, rng):
        chunk.append(row)
        if len(chunk) == batch:
            session.execute(insert(table), _sealed(chunk))
            chunk = []
    if chunk:
        session.execute(insert(table), _sealed(chunk))
    return SeededUsers(count=n, inactive=inactive, id_prefix=prefix)
