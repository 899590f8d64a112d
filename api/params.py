"""Date and time query parameters: ISO-8601 text only, within the years the data can hold.

Pydantic on its own also reads numbers as Unix times (``day=0`` is 1970-01-01,
``end=0.5`` half a second later) and accepts every year from 1 to 9999, where date
arithmetic in a query overflows. These types take ISO-8601 text only and refuse years
outside :data:`EARLIEST_YEAR`..:data:`LATEST_YEAR` with a 422 that says so. The range is
also in the OpenAPI document (as a pattern on the year), so clients and schema-driven
tests know it.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated, Any

from pydantic import BeforeValidator, WithJsonSchema

EARLIEST_YEAR = 2000
LATEST_YEAR = 2099
# A year in EARLIEST_YEAR..LATEST_YEAR, at the start of the text.
_YEAR_PATTERN = r"^20[0-9]{2}-"


def _text(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{name} must be ISO-8601 text, not a number")
    return value.strip()


def _check_year(year: int, name: str) -> None:
    if not EARLIEST_YEAR <= year <= LATEST_YEAR:
        raise ValueError(f"{name} must be in the years {EARLIEST_YEAR}..{LATEST_YEAR}")


def parse_day(value: Any) -> date:
    """``YYYY-MM-DD`` → a date in the accepted years.

    Example:
        >>> parse_day("2026-03-02")
        datetime.date(2026, 3, 2)
    """
    if isinstance(value, date) and not isinstance(value, datetime):
        _check_year(value.year, "day")
        return value
    text = _text(value, "day")
    try:
        parsed = date.fromisoformat(text)
    except ValueError:
        raise ValueError("day must be a date as YYYY-MM-DD") from None
    _check_year(parsed.year, "day")
    return parsed


def parse_instant(value: Any) -> datetime:
    """An RFC 3339 date-time (UTC when it has no offset) → an aware UTC datetime.

    Example:
        >>> parse_instant("2026-03-02T10:00:00+01:00")
        datetime.datetime(2026, 3, 2, 9, 0, tzinfo=datetime.timezone.utc)
    """
    if isinstance(value, datetime):
        parsed = value
    else:
        text = _text(value, "end").upper()
        if text.endswith("Z"):
            text = text[:-1] + "+00:00"
        # RFC 3339 allows a leap second (:60); Python's datetime has none.
        if len(text) >= 19 and text[16:19] == ":60":
            text = text[:17] + "59" + text[19:]
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(
                "end must be an ISO-8601 date-time, e.g. 2026-03-02T09:00:00Z"
            ) from None
    _check_year(parsed.year, "end")
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


Day = Annotated[
    date,
    BeforeValidator(parse_day),
    WithJsonSchema({"type": "string", "format": "date", "pattern": _YEAR_PATTERN}),
]
"""A UTC day, ``YYYY-MM-DD``, in the accepted years."""

Instant = Annotated[
    datetime,
    BeforeValidator(parse_instant),
    WithJsonSchema({"type": "string", "format": "date-time", "pattern": _YEAR_PATTERN}),
]
"""An instant (RFC 3339; UTC when it has no offset), in the accepted years."""
