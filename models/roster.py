"""Agent rosters: dated working hours in the agent's own time zone, with breaks and split shifts.

A roster is what an agent's ``roster`` column holds (JSON), for example::

    {"tz": "Europe/Berlin",
     "weekly": {"mon": [["08:00", "12:00"], ["12:30", "16:30"]],
                "sat": []},
     "dates": {"2026-12-24": [["08:00", "12:00"]], "2026-12-25": []}}

* ``tz``: an IANA time zone (default ``UTC``); times are local wall-clock times, so a shift
  keeps its local hours across daylight-saving changes.
* ``weekly``: working intervals per weekday (``mon`` .. ``sun``); a day left out, or an
  empty list, is a day off. Several intervals make a split shift; the gaps between them
  are breaks. An interval whose end is not after its start runs past midnight (``["22:00",
  "06:00"]``), and ``"24:00"`` ends at midnight.
* ``dates``: intervals that replace the weekly ones on a given local date (holidays,
  training days, swapped shifts); an empty list is a day off.

A roster replaces the agent's ``shift_start``/``shift_end`` hours (whole UTC hours, the
helpdesk default) when it is set.

Example:
    >>> from datetime import UTC, datetime
    >>> roster = Roster.from_json({"tz": "Europe/Berlin",
    ...     "weekly": {"mon": [["08:00", "12:00"], ["12:30", "16:30"]]},
    ...     "dates": {"2026-03-09": []}})
    >>> roster.on_shift(datetime(2026, 3, 2, 7, 30, tzinfo=UTC))   # Monday 08:30 in Berlin
    True
    >>> roster.on_shift(datetime(2026, 3, 2, 11, 10, tzinfo=UTC))  # 12:10: the break
    False
    >>> roster.on_shift(datetime(2026, 3, 9, 7, 30, tzinfo=UTC))   # that Monday is off
    False
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

Interval = tuple[time, time | None]
"""Local start and end; an end of None is midnight at the end of the day."""


class RosterError(ValueError):
    """A roster that cannot be read; the message says which part and why."""


def _clock(text: Any, where: str) -> time | None:
    if not isinstance(text, str):
        raise RosterError(f"{where}: expected a time as 'HH:MM', got {text!r}")
    if text == "24:00":
        return None
    try:
        return time.fromisoformat(text)
    except ValueError:
        raise RosterError(f"{where}: {text!r} is not a time as 'HH:MM'") from None


def _intervals(value: Any, where: str) -> tuple[Interval, ...]:
    if not isinstance(value, list):
        raise RosterError(f"{where}: expected a list of [start, end] pairs, got {value!r}")
    out = []
    for i, pair in enumerate(value):
        if not (isinstance(pair, list | tuple) and len(pair) == 2):
            raise RosterError(f"{where}[{i}]: expected [start, end], got {pair!r}")
        start = _clock(pair[0], f"{where}[{i}]")
        if start is None:
            raise RosterError(f"{where}[{i}]: a shift cannot start at 24:00")
        end = _clock(pair[1], f"{where}[{i}]")
        out.append((start, end))
    return tuple(out)


@dataclass(frozen=True)
class Roster:
    """Working intervals per weekday and per date, in one time zone."""

    tz: str = "UTC"
    weekly: Mapping[int, tuple[Interval, ...]] = field(default_factory=dict)
    dates: Mapping[date, tuple[Interval, ...]] = field(default_factory=dict)

    @classmethod
    def from_json(cls, value: Any) -> Roster:
        """Read a roster from its JSON object (or its text); raises :class:`RosterError`."""
        if isinstance(value, str | bytes):
            try:
                value = json.loads(value)
            except ValueError as exc:
                raise RosterError(f"roster is not valid JSON: {exc}") from None
        if not isinstance(value, Mapping):
            raise RosterError(f"roster must be a JSON object, got {type(value).__name__}")
        unknown = set(value) - {"tz", "weekly", "dates"}
        if unknown:
            raise RosterError(f"roster has unknown keys: {sorted(unknown)}")
        tz = value.get("tz") or "UTC"
        try:
            ZoneInfo(str(tz))
        except (ZoneInfoNotFoundError, ValueError):
            raise RosterError(f"roster tz: unknown time zone {tz!r}") from None
        weekly_raw = value.get("weekly") or {}
        dates_raw = value.get("dates") or {}
        if not isinstance(weekly_raw, Mapping) or not isinstance(dates_raw, Mapping):
            raise RosterError("roster 'weekly' and 'dates' must be JSON objects")
        weekly: dict[int, tuple[Interval, ...]] = {}
        for name, intervals in weekly_raw.items():
            key = str(name).lower()[:3]
            if key not in WEEKDAYS:
                raise RosterError(f"roster weekly: {name!r} is not a weekday (mon .. sun)")
            weekly[WEEKDAYS.index(key)] = _intervals(intervals, f"weekly.{name}")
        dates: dict[date, tuple[Interval, ...]] = {}
        for day, intervals in dates_raw.items():
            try:
                when = date.fromisoformat(str(day))
            except ValueError:
                raise RosterError(f"roster dates: {day!r} is not a date (YYYY-MM-DD)") from None
            dates[when] = _intervals(intervals, f"dates.{day}")
        return cls(tz=str(tz), weekly=weekly, dates=dates)

    def intervals_on(self, day: date) -> tuple[Interval, ...]:
        """The local working intervals of ``day``: its date entry, else its weekday's."""
        if day in self.dates:
            return self.dates[day]
        return self.weekly.get(day.weekday(), ())

    def on_shift(self, at: datetime) -> bool:
        """True when ``at`` falls in a working interval (an aware datetime, any zone)."""
        local = at.astimezone(ZoneInfo(self.tz))
        now = local.time().replace(tzinfo=None)
        today = local.date()
        for start, end in self.intervals_on(today):
            if end is None or end > start:
                if start <= now and (end is None or now < end):
                    return True
            elif now >= start:  # runs past midnight: the evening part
                return True
        # The morning part of yesterday's shifts that ran past midnight.
        for start, end in self.intervals_on(today - timedelta(days=1)):
            if end is not None and end <= start and now < end:
                return True
        return False

    def next_start(self, after: datetime, *, days: int = 8) -> datetime | None:
        """The first working interval start strictly after ``after`` (UTC), looking at most
        ``days`` local days ahead; None when the roster has no work in that span.

        Example:
            >>> from datetime import UTC, datetime
            >>> roster = Roster.from_json({"tz": "Europe/Berlin",
            ...     "weekly": {"mon": [["08:00", "12:00"], ["12:30", "16:30"]]}})
            >>> roster.next_start(datetime(2026, 3, 2, 10, 0, tzinfo=UTC))  # after the break
            datetime.datetime(2026, 3, 2, 11, 30, tzinfo=datetime.timezone.utc)
            >>> roster.next_start(datetime(2026, 3, 2, 12, 0, tzinfo=UTC)).date().isoformat()
            '2026-03-09'
        """
        zone = ZoneInfo(self.tz)
        today = after.astimezone(zone).date()
        for offset in range(days + 1):
            day = today + timedelta(days=offset)
            starts = sorted(start for start, _ in self.intervals_on(day))
            for start in starts:
                # A local time that does not exist (skipped by a clock change) resolves
                # through the zone's fold rules; comparisons are in UTC.
                begin = datetime.combine(day, start, tzinfo=zone).astimezone(UTC)
                if begin > after:
                    return begin
        return None
