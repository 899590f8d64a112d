"""Business calendars: opening hours in a time zone, public holidays, business-time arithmetic.

SLA targets are usually measured in business time (the clock only runs while the support
team is open) and sometimes in calendar time (urgent tickets, 24×7). Both are a
``BusinessCalendar``: calendar time is simply a calendar that is always open.

Opening hours are local wall-clock times, so a 09:00–17:00 day is eight real hours even on
the days the clocks change; an always-open day in a zone with daylight saving is 23 or 25
real hours long. Every function takes aware datetimes and returns UTC.

Example:
    >>> from datetime import UTC, datetime, timedelta
    >>> cal = calendar_for_region("de", range(2024, 2025))
    >>> friday_4pm = datetime(2024, 10, 4, 14, 0, tzinfo=UTC)  # 16:00 in Berlin
    >>> cal.add_business_time(friday_4pm, timedelta(hours=2))  # Monday 10:00 Berlin
    datetime.datetime(2024, 10, 7, 8, 0, tzinfo=datetime.timezone.utc)
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import holidays as holiday_data

_DAY_MINUTES = 24 * 60
# A calendar with opening hours but with every day a holiday for this long is treated as
# never open (rather than looping forever looking for the next opening).
_MAX_CLOSED_DAYS = 3 * 366
# Business-time arithmetic walks the calendar day by day (about 8 µs a day). No SLA
# target or ticket lifetime comes near this many days, so a walk that would go further
# is refused instead of running for seconds or to the end of the calendar (year 9999).
MAX_SCAN_DAYS = 20 * 366


class CalendarRangeError(ValueError):
    """Business-time arithmetic asked for instants beyond what a calendar can answer.

    Raised, with the reason, for results past year 9999 (or before year 1) and for walks
    longer than :data:`MAX_SCAN_DAYS`, instead of an ``OverflowError`` or an unbounded loop.
    """


REGION_CALENDARS: dict[str, tuple[str, str]] = {
    "us": ("US", "America/New_York"),
    "de": ("DE", "Europe/Berlin"),
    "fr": ("FR", "Europe/Paris"),
    "es": ("ES", "Europe/Madrid"),
    "gb": ("GB", "Europe/London"),
}
"""Region code (as stored on customers) → (holiday country code, IANA time zone)."""

OpenHours = Mapping[int, Sequence[tuple[time, time]]]
"""Weekday (Monday = 0) → local opening intervals ``(start, end)``.

An ``end`` at or before ``start`` runs past midnight into the next day, so
``(time(22), time(6))`` is a night shift and ``(time(0), time(0))`` a whole day.
"""


@lru_cache(maxsize=64)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def _minutes(t: time) -> int:
    return t.hour * 60 + t.minute


def _normalise(open_hours: OpenHours) -> tuple[tuple[tuple[int, int], ...], ...]:
    """Split opening hours into non-overlapping minute ranges per local weekday.

    An interval running past midnight is cut at midnight and its tail is attached to the
    next weekday, so that each piece belongs to exactly one local date (which is what a
    holiday closes).
    """
    days: list[list[tuple[int, int]]] = [[] for _ in range(7)]
    for weekday, intervals in open_hours.items():
        if not 0 <= weekday <= 6:
            raise ValueError(f"weekday must be 0 (Monday) .. 6 (Sunday), got {weekday}")
        for start_t, end_t in intervals:
            start, end = _minutes(start_t), _minutes(end_t)
            if end > start:
                days[weekday].append((start, end))
            else:
                days[weekday].append((start, _DAY_MINUTES))
                if end > 0:
                    days[(weekday + 1) % 7].append((0, end))
    merged: list[tuple[tuple[int, int], ...]] = []
    for pieces in days:
        out: list[tuple[int, int]] = []
        for start, end in sorted(pieces):
            if out and start <= out[-1][1]:
                out[-1] = (out[-1][0], max(out[-1][1], end))
            else:
                out.append((start, end))
        merged.append(tuple(out))
    return tuple(merged)


def weekday_hours(
    start: time, end: time, days: Iterable[int] = range(5)
) -> dict[int, list[tuple[time, time]]]:
    """Opening hours with the same interval on each of ``days`` (default Monday–Friday)."""
    return {d: [(start, end)] for d in days}


@dataclass(frozen=True)
class BusinessCalendar:
    """When a support team is open: local opening hours per weekday, minus holidays.

    Args:
        timezone: IANA zone name the opening hours and holidays are expressed in.
        open_hours: Weekday → local opening intervals (see ``OpenHours``).
        holidays: Local dates on which the team is closed all day.
        name: A label for reports and SLA events.

    Example:
        >>> from datetime import UTC, date, datetime, time, timedelta
        >>> cal = BusinessCalendar("UTC", weekday_hours(time(9), time(17)), {date(2024, 1, 1)})
        >>> cal.business_time_between(datetime(2023, 12, 29, 16, tzinfo=UTC),
        ...                           datetime(2024, 1, 2, 10, tzinfo=UTC))
        datetime.timedelta(seconds=7200)
    """

    timezone: str
    open_hours: OpenHours
    holidays: frozenset[date] = field(default_factory=frozenset)
    name: str = ""
    _days: tuple[tuple[tuple[int, int], ...], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _zone(self.timezone)  # fail at construction on an unknown zone name
        object.__setattr__(self, "holidays", frozenset(self.holidays))
        object.__setattr__(self, "open_hours", {d: tuple(v) for d, v in self.open_hours.items()})
        object.__setattr__(self, "_days", _normalise(self.open_hours))
        object.__setattr__(self, "_day_cache", {})

    @property
    def always_open(self) -> bool:
        """True when every minute of every day is business time."""
        return not self.holidays and all(d == ((0, _DAY_MINUTES),) for d in self._days)

    def _local_instant(self, day: date, minute: int) -> datetime:
        # Local wall time → UTC. Minute 1440 is the next day's midnight. On a DST gap the
        # zone's fold=0 rule picks one consistent instant, so intervals never overlap.
        if minute >= _DAY_MINUTES:
            day, minute = day + timedelta(days=1), minute - _DAY_MINUTES
        local = datetime(
            day.year, day.month, day.day, minute // 60, minute % 60, tzinfo=_zone(self.timezone)
        )
        return local.astimezone(UTC)

    def _intervals_from(self, start: datetime) -> Iterator[tuple[datetime, datetime]]:
        """Open intervals (UTC) that end after ``start``, in order, clipped to ``start``."""
        try:
            day = start.astimezone(_zone(self.timezone)).date() - timedelta(days=1)
        except OverflowError:
            raise CalendarRangeError(
                f"{self._label()}: {start} is at the start of the calendar"
            ) from None
        closed_run = 0
        for _ in range(MAX_SCAN_DAYS + 2):
            pieces = () if day in self.holidays else self._days[day.weekday()]
            if not pieces:
                closed_run += 1
                if closed_run > _MAX_CLOSED_DAYS:
                    raise ValueError(f"calendar {self._label()} is never open")
            else:
                closed_run = 0
            try:
                intervals = self._day_intervals(day, pieces)
                day += timedelta(days=1)
            except OverflowError:
                raise CalendarRangeError(
                    f"{self._label()}: business time from {start} runs past the year 9999"
                ) from None
            for a, b in intervals:
                if b > start:
                    yield max(a, start), b
        raise CalendarRangeError(
            f"{self._label()}: business time from {start} spans more than {MAX_SCAN_DAYS} days"
        )

    def _label(self) -> str:
        return repr(self.name or self.timezone)

    def _day_intervals(
        self, day: date, pieces: tuple[tuple[int, int], ...]
    ) -> list[tuple[datetime, datetime]]:
        # Converting local wall times to UTC dominated SLA scheduling; a day's intervals
        # never change, so they are computed once (a few hundred days per year at most).
        cache: dict[date, list[tuple[datetime, datetime]]] = self._day_cache  # type: ignore[attr-defined]
        found = cache.get(day)
        if found is None:
            found = [
                (self._local_instant(day, lo), self._local_instant(day, hi)) for lo, hi in pieces
            ]
            if len(cache) > 4096:
                cache.clear()
            cache[day] = found
        return found

    def add_business_time(self, start: datetime, duration: timedelta) -> datetime:
        """The instant at which ``duration`` of business time has passed since ``start``.

        A zero duration returns ``start`` itself, even outside opening hours.

        Raises:
            ValueError: ``start`` is naive or ``duration`` is negative.
            CalendarRangeError: the result lies past the year 9999 or more than
                :data:`MAX_SCAN_DAYS` after ``start``.
        """
        start = _utc(start)
        if duration < timedelta(0):
            raise ValueError("duration must not be negative")
        if duration == timedelta(0):
            return start
        if self.always_open:
            try:
                return start + duration
            except OverflowError:
                raise CalendarRangeError(
                    f"{self._label()}: {start} + {duration} is past the year 9999"
                ) from None
        remaining = duration
        for a, b in self._intervals_from(start):
            if b - a >= remaining:
                return a + remaining
            remaining -= b - a
        raise AssertionError("unreachable: the interval generator is endless")

    def business_time_between(self, a: datetime, b: datetime) -> timedelta:
        """Business time in ``[a, b)``; zero when ``b`` is not after ``a``.

        Raises:
            CalendarRangeError: ``b`` is more than :data:`MAX_SCAN_DAYS` after ``a`` on a
                calendar that is not always open.
        """
        a, b = _utc(a), _utc(b)
        if b <= a:
            return timedelta(0)
        if self.always_open:
            return b - a
        total = timedelta(0)
        for lo, hi in self._intervals_from(a):
            if lo >= b:
                break
            total += min(hi, b) - lo
        return total

    def is_open(self, at: datetime) -> bool:
        """True when ``at`` falls in business time."""
        at = _utc(at)
        try:
            after = at + timedelta(seconds=1)
        except OverflowError:
            raise CalendarRangeError(
                f"{self._label()}: {at} is at the end of the calendar"
            ) from None
        return self.business_time_between(at, after) > timedelta(0)


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value!r}: pass an aware datetime")
    return value.astimezone(UTC)


ALWAYS_OPEN = BusinessCalendar("UTC", {d: [(time(0), time(0))] for d in range(7)}, name="24x7")
"""Calendar time: every minute counts (used for 24×7 targets such as urgent tickets)."""


def calendar_for_region(
    region: str,
    years: range,
    *,
    opens: time = time(9),
    closes: time = time(17),
) -> BusinessCalendar:
    """Weekday business hours in the region's zone with its national public holidays.

    Unknown regions get UTC weekdays with no holidays, so a ticket from an unexpected
    region still has a deadline rather than none.

    Example:
        >>> cal = calendar_for_region("us", range(2024, 2025))
        >>> cal.timezone, date(2024, 7, 4) in cal.holidays
        ('America/New_York', True)
    """
    return _region_calendar(region, years, opens, closes)


@lru_cache(maxsize=256)
def _region_calendar(region: str, years: range, opens: time, closes: time) -> BusinessCalendar:
    # Cached: every queue's SLA tracker asks for the same few calendars, and the first
    # call of the process imports the holiday tables (~0.1 s even from bytecode).
    hours = weekday_hours(opens, closes)
    known = REGION_CALENDARS.get(region.lower())
    if known is None:
        return BusinessCalendar("UTC", hours, frozenset(), name=f"{region}:default")
    country, zone = known
    days = frozenset(holiday_data.country_holidays(country, years=years).keys())
    return BusinessCalendar(zone, hours, days, name=region.lower())


def warm_region_calendars(years: range) -> None:
    """Build every known region's calendar now, so the first ticket of a region does not
    pay for loading the holiday tables on the hot path."""
    for region in REGION_CALENDARS:
        calendar_for_region(region, years)
