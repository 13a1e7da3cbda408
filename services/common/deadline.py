"""Legal time of an erasure request: its deadline, extension and internal due date, which the ledger tracks.

The deadline is one calendar month from receipt (GDPR Art. 12(3)), counted as EU Regulation 1182/71
counts periods:

- the day counts in the time zone of the controller, Europe/Stockholm (a request received at 00:30 on
  6 May in Stockholm is received on 6 May, although it is still 5 May in UTC);
- a period of months ends on the same date in the last month (Art. 3(2)(c)), or on that month's last day
  when the date does not exist (31 January -> 28 or 29 February);
- when that day is a Saturday, a Sunday or a Swedish public holiday the period ends on the next working
  day (Art. 3(4)); the holidays come from the maintained `holidays` package, not from a table of our own;
- the period ends with the expiry of the last hour of that day: the deadline is the next midnight in
  Stockholm, stored as a UTC instant.

Calendar months are added with `dateutil.relativedelta`, which already clamps to the month's last day.
An extension (Art. 12(3)) adds up to two further months, counted from the same day of receipt.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import holidays
from dateutil.relativedelta import relativedelta
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

LEGAL_TIME_ZONE = ZoneInfo("Europe/Stockholm")
FIRST_PERIOD_MONTHS = 1
MAX_EXTENSION_MONTHS = 2


@lru_cache(maxsize=64)
def _swedish_holidays(year: int) -> holidays.HolidayBase:
    return holidays.country_holidays("SE", years=year)


def is_working_day(day: date) -> bool:
    """Not a Saturday, a Sunday or a Swedish public holiday."""
    return day.weekday() < 5 and day not in _swedish_holidays(day.year)


def next_working_day(day: date) -> date:
    """`day` itself when it is a working day, else the first working day after it."""
    while not is_working_day(day):
        day += timedelta(days=1)
    return day


def received_on(received: datetime) -> date:
    """The day a request was received, in the legal time zone."""
    if received.tzinfo is None:
        raise ValueError("the time of receipt must be timezone-aware")
    return received.astimezone(LEGAL_TIME_ZONE).date()


def last_day(received: datetime, months: int) -> date:
    """The day a period of `months` calendar months from `received` ends on (Regulation 1182/71 Art. 3)."""
    if months < 1:
        raise ValueError("a period is at least one month")
    return next_working_day(received_on(received) + relativedelta(months=months))


def end_of(day: date) -> datetime:
    """The expiry of the last hour of `day` in the legal time zone, as a UTC instant."""
    return datetime.combine(day + timedelta(days=1), time(), LEGAL_TIME_ZONE).astimezone(UTC)


def legal_deadline(received: datetime, months: int = FIRST_PERIOD_MONTHS) -> datetime:
    """The instant a period of `months` calendar months from receipt expires."""
    return end_of(last_day(received, months))


class ErasureDeadline(BaseSettings):
    """Legal time of a request (env prefix `ERASURE_LEDGER_`, where the ledger reads it)."""

    model_config = SettingsConfigDict(env_prefix="ERASURE_LEDGER_", extra="ignore")

    due_seconds: float | None = Field(
        None, gt=0, description="Deadline in seconds from receipt; replaces the calendar month (tests).")
    internal_due_days: float = Field(
        20, gt=0, description="Days from receipt to the internal due date, which warns before the deadline.")

    def due_at(self, received: datetime, extension_months: int = 0) -> datetime:
        """The deadline of a request received at `received`, extended by `extension_months` further months."""
        if not 0 <= extension_months <= MAX_EXTENSION_MONTHS:
            raise ValueError(f"an extension is 0 to {MAX_EXTENSION_MONTHS} further months")
        if self.due_seconds is not None:
            first = received + timedelta(seconds=self.due_seconds)
            return first + extension_months * timedelta(seconds=self.due_seconds)
        return legal_deadline(received, FIRST_PERIOD_MONTHS + extension_months)

    @property
    def internal_due(self) -> timedelta:
        """Time from receipt to the internal due date."""
        return timedelta(days=self.internal_due_days)

    def internal_due_at(self, received: datetime) -> datetime:
        """The internal due date of a request received at `received`."""
        return received + self.internal_due
