"""Business calendars: exact business-time arithmetic across weekends, holidays and DST."""

from __future__ import annotations

import pickle
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from models.calendar import (
    ALWAYS_OPEN,
    BusinessCalendar,
    calendar_for_region,
    weekday_hours,
)

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
H = timedelta(hours=1)


@pytest.fixture(scope="module")
def de() -> BusinessCalendar:
    return calendar_for_region("de", range(2024, 2025))


def test_weekend_is_skipped(de: BusinessCalendar) -> None:
    friday_4pm = datetime(2024, 10, 4, 16, tzinfo=BERLIN)
    due = de.add_business_time(friday_4pm, 2 * H)
    assert due == datetime(2024, 10, 7, 10, tzinfo=BERLIN)
    assert due.tzinfo is UTC
    assert de.business_time_between(friday_4pm, due) == 2 * H


def test_german_holiday_is_skipped(de: BusinessCalendar) -> None:
    assert date(2024, 10, 3) in de.holidays  # Tag der Deutschen Einheit, a Thursday
    wednesday_4pm = datetime(2024, 10, 2, 16, tzinfo=BERLIN)
    assert de.add_business_time(wednesday_4pm, 2 * H) == datetime(2024, 10, 4, 10, tzinfo=BERLIN)
    assert (
        de.business_time_between(
            datetime(2024, 10, 2, 9, tzinfo=BERLIN), datetime(2024, 10, 5, 9, tzinfo=BERLIN)
        )
        == 16 * H
    )


def test_business_hours_follow_local_time_across_dst() -> None:
    us = calendar_for_region("us", range(2024, 2025))
    friday_4pm_est = datetime(2024, 3, 8, 16, tzinfo=NEW_YORK)  # DST starts Sunday 10 March
    due = us.add_business_time(friday_4pm_est, 2 * H)
    assert due == datetime(2024, 3, 11, 14, tzinfo=UTC)  # Monday 10:00 EDT
    # Friday 16:00 to Monday 10:00 is 66 wall-clock hours less the hour lost to DST.
    assert due - friday_4pm_est == timedelta(hours=65)


def test_always_open_day_in_a_dst_zone_has_real_length() -> None:
    berlin_24x7 = BusinessCalendar("Europe/Berlin", {d: [(time(0), time(0))] for d in range(7)})
    start = datetime(2024, 10, 27, 0, tzinfo=BERLIN)  # clocks go back at 03:00
    end = datetime(2024, 10, 28, 0, tzinfo=BERLIN)
    assert berlin_24x7.business_time_between(start, end) == 25 * H
    assert berlin_24x7.add_business_time(start, 25 * H) == end


def test_overnight_shift() -> None:
    nights = BusinessCalendar("UTC", weekday_hours(time(22), time(6)))
    monday_11pm = datetime(2024, 3, 4, 23, tzinfo=UTC)
    assert nights.add_business_time(monday_11pm, 3 * H) == datetime(2024, 3, 5, 2, tzinfo=UTC)
    assert nights.add_business_time(monday_11pm, 8 * H) == datetime(2024, 3, 5, 23, tzinfo=UTC)
    # Friday's shift runs into Saturday morning; nothing else opens before Monday night.
    friday_11pm = datetime(2024, 3, 8, 23, tzinfo=UTC)
    assert nights.add_business_time(friday_11pm, 8 * H) == datetime(2024, 3, 11, 23, tzinfo=UTC)
    assert nights.is_open(datetime(2024, 3, 9, 5, tzinfo=UTC))
    assert not nights.is_open(datetime(2024, 3, 11, 3, tzinfo=UTC))


def test_start_outside_hours_and_zero_duration(de: BusinessCalendar) -> None:
    saturday = datetime(2024, 10, 5, 12, tzinfo=BERLIN)
    assert de.add_business_time(saturday, H) == datetime(2024, 10, 7, 10, tzinfo=BERLIN)
    assert de.add_business_time(saturday, timedelta(0)) == saturday
    assert de.business_time_between(saturday, saturday - H) == timedelta(0)


def test_errors(de: BusinessCalendar) -> None:
    with pytest.raises(ValueError, match="naive"):
        de.add_business_time(datetime(2024, 10, 4, 12), H)
    with pytest.raises(ValueError, match="negative"):
        de.add_business_time(datetime(2024, 10, 4, 12, tzinfo=UTC), -H)
    with pytest.raises(ValueError, match="never open"):
        BusinessCalendar("UTC", {}).add_business_time(datetime(2024, 1, 1, tzinfo=UTC), H)


def test_region_factory_and_fallback() -> None:
    gb = calendar_for_region("gb", range(2024, 2025))
    assert gb.timezone == "Europe/London" and date(2024, 12, 25) in gb.holidays
    unknown = calendar_for_region("zz", range(2024, 2025))
    assert unknown.timezone == "UTC" and not unknown.holidays
    monday = datetime(2024, 1, 1, 9, tzinfo=UTC)  # a holiday elsewhere, a workday here
    assert unknown.add_business_time(monday, 8 * H) == datetime(2024, 1, 1, 17, tzinfo=UTC)


def test_always_open_and_pickle(de: BusinessCalendar) -> None:
    start = datetime(2024, 10, 5, 12, tzinfo=UTC)
    assert ALWAYS_OPEN.always_open and not de.always_open
    assert ALWAYS_OPEN.add_business_time(start, 30 * H) == start + 30 * H
    copy = pickle.loads(pickle.dumps(de))
    assert copy == de
    assert copy.add_business_time(start, H) == de.add_business_time(start, H)
