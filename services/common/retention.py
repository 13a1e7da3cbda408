"""How long the Bookkeeping Act makes us keep a sale: one rule, used by bookkeeping and payment alike.

Bokföringslagen (1999:1078) 7 kap. 2 §: accounting records are kept "until and including the seventh
year after the end of the calendar year in which the financial year ended". A financial year is twelve
whole calendar months (3 kap. 1 §), so it always ends on the last day of a month; a broken financial
year (e.g. May to April) moves a sale made after the year-end month into the next year's retention.
"""

from __future__ import annotations

import calendar
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

LEGAL_BASIS = "Bokföringslagen (1999:1078) 7 kap. 2 §"
RETENTION_YEARS = 7
# Loggamera keeps its books in Sweden: a sale belongs to the Swedish calendar day it was made on.
ACCOUNTING_TIMEZONE = ZoneInfo("Europe/Stockholm")


def check_fiscal_year_end(month: int, day: int) -> None:
    """Raise ValueError unless (month, day) is the last day of a month (28 or 29 both mean end of February)."""
    if not 1 <= month <= 12:
        raise ValueError(f"fiscal year end month must be 1-12, got {month}")
    # 2001 is no leap year: February is checked on its own, where 28 and 29 both mean its last day.
    valid = day in {28, 29} if month == 2 else day == calendar.monthrange(2001, month)[1]
    if not valid:
        raise ValueError(
            f"a financial year is whole calendar months (Bokföringslagen 3 kap. 1 §): it must end on the last "
            f"day of a month, not on --{month:02d}-{day:02d}"
        )


def _month_end(year: int, month: int) -> date:
    return date(year, month, calendar.monthrange(year, month)[1])


def fiscal_year_end_for(transaction_date: date, fiscal_year_end_month: int = 12, fiscal_year_end_day: int = 31) -> date:
    """The last day of the financial year the transaction date falls in."""
    check_fiscal_year_end(fiscal_year_end_month, fiscal_year_end_day)
    day = _as_date(transaction_date)
    end = _month_end(day.year, fiscal_year_end_month)
    return end if day <= end else _month_end(day.year + 1, fiscal_year_end_month)


def retain_until_for(transaction_date: date, fiscal_year_end_month: int = 12, fiscal_year_end_day: int = 31) -> date:
    """The last day a record of this transaction must be kept: 31 Dec of the 7th year after its year ended."""
    end = fiscal_year_end_for(transaction_date, fiscal_year_end_month, fiscal_year_end_day)
    return date(end.year + RETENTION_YEARS, 12, 31)


def accounting_date(instant: datetime) -> date:
    """The Swedish calendar day of an instant: the date a sale is booked on."""
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=UTC)
    return instant.astimezone(ACCOUNTING_TIMEZONE).date()


def _as_date(value: date) -> date:
    # A datetime is a date too, but comparing one with a date raises; reduce it to its booking day.
    return accounting_date(value) if isinstance(value, datetime) else value
