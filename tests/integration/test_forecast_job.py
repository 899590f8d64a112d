"""The forecast job reads hourly volumes from the analytics store and writes staffing."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import psycopg
import pytest

from triage.jobs.forecast_job import run_forecast
from triage.runtime import Stack, migrate

pytestmark = pytest.mark.integration

NOW = datetime(2026, 3, 30, 0, 0, tzinfo=UTC)  # a Monday midnight


def test_forecast_job_writes_a_week_of_forecasts_and_staffing(pg_dsn: str) -> None:
    migrate(Stack(source_dsn=pg_dsn, analytics_dsn=pg_dsn, redis_url="redis://unused"))
    rng = np.random.default_rng(3)
    rows = []
    ticket_id = 0
    start = NOW - timedelta(days=28)
    for h in range(28 * 24):
        hour = start + timedelta(hours=h)
        daytime = 9 <= hour.hour < 17 and hour.weekday() < 5
        for category, base in (("billing", 6.0), ("technical", 3.0)):
            for _ in range(rng.poisson(base if daytime else base / 6)):
                ticket_id += 1
                at = hour + timedelta(minutes=int(rng.integers(0, 60)))
                rows.append(
                    (
                        ticket_id,
                        1,
                        1,
                        "standard",
                        "email",
                        "open",
                        "normal",
                        category,
                        category,
                        "en",
                        1.0,
                        "s",
                        at,
                        at,
                        at,
                    )
                )
    with psycopg.connect(pg_dsn) as conn, conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO analytics.ticket_facts (ticket_id, version, customer_id, customer_tier,"
            " channel, status, priority, category, queue, language, language_confidence,"
            " subject, created_at, source_committed_at, enriched_at)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            rows,
        )

    result = run_forecast(pg_dsn, now=NOW, aht_seconds=900, target_seconds=1800)
    assert set(result["series"]) == {"all", "billing", "technical"}
    assert result["rows"] == 3 * 168
    with psycopg.connect(pg_dsn) as conn:
        got = conn.execute(
            "SELECT hour, value, lower, upper, agents_needed FROM analytics.forecasts"
            " WHERE series = 'billing' ORDER BY hour"
        ).fetchall()
    assert len(got) == 168 and got[0][0] == NOW
    assert all(lo >= 0 and lo <= v <= up and agents >= 0 for _, v, lo, up, agents in got)
    monday = got[:24]
    day = np.mean([v for hour, v, *_ in monday if 9 <= hour.hour < 17])
    night = np.mean([v for hour, v, *_ in monday if hour.hour < 6])
    assert day > 3 * night  # the daily rhythm is forecast
    assert math.isclose(day, 6.0, rel_tol=0.35)
    busiest = max(monday, key=lambda r: r[1])
    quietest = min(monday, key=lambda r: r[1])
    assert busiest[4] > quietest[4]  # more volume needs more agents
