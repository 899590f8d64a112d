"""Late rows on TimescaleDB: which hours of which continuous aggregate get refreshed.

The policy of each aggregate refreshes only its recent window; a row older than that must
refresh its own hour, or the dashboards keep the old numbers forever. The calls are checked
against a connection that records them (TimescaleDB itself: the gated live test).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sinks.postgres import SLA_EVENTS, rollup_hours
from sinks.timescale import CONTINUOUS_AGGREGATES, late_refresh_windows, refresh_late_hours

NOW = datetime(2026, 3, 10, 12, 30, tzinfo=UTC)
DAY3 = timedelta(days=3)


def hour(day: int, h: int) -> datetime:
    return datetime(2026, 3, day, h, tzinfo=UTC)


def test_only_hours_before_the_policy_window_are_refreshed() -> None:
    horizon = NOW - DAY3  # 2026-03-07 12:30
    hours = [hour(7, 13), hour(7, 12), hour(7, 11), hour(10, 11)]
    # 12:00 starts before the horizon: its 12:00-12:30 part is outside the policy window.
    assert late_refresh_windows(hours, now=NOW, start_offset=DAY3) == [(hour(7, 11), hour(7, 13))]
    assert all(
        start < horizon for start, _ in late_refresh_windows(hours, now=NOW, start_offset=DAY3)
    )


def test_consecutive_hours_merge_and_duplicates_collapse() -> None:
    hours = [hour(1, 5), hour(1, 3), hour(1, 4), hour(1, 3), hour(2, 0), hour(1, 23)]
    assert late_refresh_windows(hours, now=NOW, start_offset=DAY3) == [
        (hour(1, 3), hour(1, 6)),
        (hour(1, 23), hour(2, 1)),
    ]
    assert late_refresh_windows([], now=NOW, start_offset=DAY3) == []


class RecordingConnection:
    """Answers the extension-schema lookup and records the refresh calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def execute(self, query: Any, params: tuple[Any, ...] = ()) -> RecordingConnection:
        text = query if isinstance(query, str) else query.as_string(None)
        self.calls.append((text, params))
        return self

    def fetchone(self) -> tuple[str]:
        return ("public",)


def test_each_aggregate_refreshes_its_own_late_hours_with_its_own_window() -> None:
    sla_offset = {c.name: c.start_offset for c in CONTINUOUS_AGGREGATES}["sla_hourly"]
    assert sla_offset == timedelta(days=7)
    five_days_ago = hour(5, 9)
    rows: dict[str, list[tuple[Any, ...]]] = {
        "metrics_minute": [(five_days_ago.replace(minute=17),)],
        "agent_load": [],
        SLA_EVENTS: [
            # outcomes count in sla_hourly; 5 days is inside its 7-day policy window
            (1, "first_reply", "breach", five_days_ago, None, "p", 0.0, 0.0, True),
            (2, "first_reply", "breach", hour(1, 8), None, "p", 0.0, 0.0, True),
            # an `apply` is not an outcome: no refresh for it
            (3, "first_reply", "apply", hour(1, 2), None, "p", 0.0, 0.0, False),
        ],
    }
    metric_hours, load_hours, sla_hours = rollup_hours(rows)
    conn = RecordingConnection()
    done = refresh_late_hours(
        conn,  # type: ignore[arg-type]
        "analytics",
        {"metrics_hourly": metric_hours, "agent_load_hourly": load_hours, "sla_hourly": sla_hours},
        now=NOW,
    )
    assert done == [
        ("metrics_hourly", hour(5, 9), hour(5, 10)),
        ("sla_hourly", hour(1, 8), hour(1, 9)),
    ]
    refreshes = [(q, p) for q, p in conn.calls if "refresh_continuous_aggregate" in q]
    assert [p for _, p in refreshes] == [
        ("analytics.metrics_hourly", hour(5, 9), hour(5, 10)),
        ("analytics.sla_hourly", hour(1, 8), hour(1, 9)),
    ]
    assert all(q.startswith('CALL "public".refresh_continuous_aggregate') for q, _ in refreshes)
