"""Late rows reach TimescaleDB's continuous aggregates (only when ``TRIAGE_TIMESCALE_DSN``
points at a TimescaleDB; the choice of hours is checked without one in
``tests/sinks/test_timescale_late_data.py``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from models.windows import WindowResult
from sinks.migrations import apply_migrations
from sinks.postgres import PostgresSink
from sinks.retry import RetryPolicy
from sinks.timescale import apply_timescale
from tests.integration.test_timescale import timescale_dsn  # noqa: F401 (fixture)

pytestmark = [pytest.mark.integration, pytest.mark.timescale]

ANALYTICS_SQL = Path(__file__).resolve().parents[2] / "sql" / "analytics"


def window(start: datetime, created: int) -> WindowResult:
    counts = {"created": created, "solved": 0, "reopened": 0, "first_reply": 0, "breach": 0}
    return WindowResult(
        start=start,
        end=start + timedelta(minutes=1),
        dimension="all",
        counts=counts,
        first_reply_p50=None,
        first_reply_p90=None,
        resolution_p50=None,
        resolution_p90=None,
        backlog=0,
        late_merged=0,
        too_late=0,
    )


def test_a_back_filled_minute_reaches_the_hourly_aggregate(timescale_dsn: str) -> None:  # noqa: F811
    apply_migrations(timescale_dsn, ANALYTICS_SQL)
    assert apply_timescale(timescale_dsn).available
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    recent, late = now - timedelta(hours=2), now - timedelta(days=10)
    part = PostgresSink(timescale_dsn, retry=RetryPolicy(max_retries=2)).build(
        "write_analytics", 0, 1
    )
    try:
        part.write_batch([window(recent, 3)])
        # Materialise up to now: from here on, the aggregate answers old hours from its
        # materialisation only, as in production once the policy has run.
        with psycopg.connect(timescale_dsn, autocommit=True) as conn:
            conn.execute(
                "CALL refresh_continuous_aggregate('analytics.metrics_hourly', NULL, NULL)"
            )
        part.write_batch([window(late, 5)])
    finally:
        part.close()
    with psycopg.connect(timescale_dsn) as conn:
        row = conn.execute(
            "SELECT created FROM analytics.metrics_hourly WHERE dimension = 'all' AND bucket = %s",
            (late.replace(minute=0),),
        ).fetchone()
    assert row == (5,)
