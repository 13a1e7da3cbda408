"""Legal time: the deadline counted as Regulation 1182/71 counts a month, on Swedish working days."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from services.common.deadline import (
    ErasureDeadline,
    is_working_day,
    last_day,
    legal_deadline,
)

STOCKHOLM = ZoneInfo("Europe/Stockholm")


def _local(*args: int) -> datetime:
    return datetime(*args, tzinfo=STOCKHOLM)


@pytest.mark.parametrize(("received", "due_day", "why"), [
    (_local(2027, 1, 31, 12), date(2027, 3, 1), "28 February 2027 is a Sunday: moved to Monday"),
    (_local(2028, 1, 31, 12), date(2028, 2, 29), "leap year: the month's last day, a Tuesday"),
    (_local(2028, 5, 6, 12), date(2028, 6, 7), "6 June 2028 is National Day (a Tuesday): moved"),
    (_local(2027, 4, 6, 12), date(2027, 5, 7), "6 May 2027 is Ascension Day: moved to Friday"),
    (_local(2027, 3, 31, 9), date(2027, 4, 30), "30 April has no 31st: its last day, a Friday"),
    (_local(2027, 8, 31, 9), date(2027, 9, 30), "a month end on a Thursday"),
    (_local(2027, 11, 25, 9), date(2027, 12, 27), "Christmas Day, then the Second Day of Christmas"),
    (_local(2027, 3, 10, 9), date(2027, 4, 12), "10 April 2027 is a Saturday: moved to Monday"),
])
def test_the_deadline_is_one_calendar_month_on_a_working_day(received: datetime, due_day: date, why: str) -> None:
    assert last_day(received, 1) == due_day, why
    assert is_working_day(due_day)


def test_the_deadline_is_the_end_of_its_last_day_in_stockholm() -> None:
    deadline = legal_deadline(_local(2028, 5, 6, 12))
    assert deadline == datetime(2028, 6, 7, 22, 0, tzinfo=UTC)  # midnight after 7 June, summer time
    assert deadline.astimezone(STOCKHOLM) == _local(2028, 6, 8)
    # Winter time: midnight after 1 March 2027 in Stockholm is 23:00 UTC.
    assert legal_deadline(_local(2027, 1, 31, 12)) == datetime(2027, 3, 1, 23, 0, tzinfo=UTC)


def test_the_day_of_receipt_is_the_day_in_stockholm_not_in_utc() -> None:
    late_on_the_5th = _local(2028, 5, 5, 23, 30)  # 21:30 UTC on 5 May
    early_on_the_6th = _local(2028, 5, 6, 0, 30)  # 22:30 UTC on 5 May, the same UTC date
    assert late_on_the_5th.astimezone(UTC).date() == early_on_the_6th.astimezone(UTC).date()
    assert last_day(late_on_the_5th, 1) == date(2028, 6, 5)  # a Monday
    assert last_day(early_on_the_6th, 1) == date(2028, 6, 7)  # 6 June is National Day
    with pytest.raises(ValueError, match="timezone-aware"):
        last_day(datetime(2028, 5, 6), 1)


def test_an_extension_counts_further_months_from_the_day_of_receipt() -> None:
    settings = ErasureDeadline(due_seconds=None)
    received = _local(2027, 1, 31, 12)
    assert settings.due_at(received, 2).astimezone(STOCKHOLM) == _local(2027, 5, 1)  # 30 April, a Friday
    assert last_day(received, 2) == date(2027, 3, 31)
    with pytest.raises(ValueError, match="0 to 2 further months"):
        settings.due_at(received, 3)


def test_the_seconds_override_replaces_the_calendar_for_tests() -> None:
    received = datetime(2027, 1, 31, 12, tzinfo=UTC)
    settings = ErasureDeadline(due_seconds=5)
    assert (settings.due_at(received) - received).total_seconds() == 5
    assert (settings.due_at(received, 1) - received).total_seconds() == 10
    assert ErasureDeadline(due_seconds=None).internal_due_at(received) == datetime(2027, 2, 20, 12, tzinfo=UTC)
