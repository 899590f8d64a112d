"""The time-series migrations on plain PostgreSQL: idempotent DDL, the time_bucket shim,
report views and the hourly rollups."""

from __future__ import annotations

import shutil
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from sinks.migrations import apply_migrations

pytestmark = pytest.mark.integration

ANALYTICS_SQL = Path(__file__).resolve().parents[2] / "sql" / "analytics"


@pytest.fixture
def analytics_dsn(pg_dsn: str) -> str:
    apply_migrations(pg_dsn, ANALYTICS_SQL)
    return pg_dsn


def _one(dsn: str, query: str, params: tuple[Any, ...] = ()) -> Any:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(query, params).fetchone()
    assert row is not None
    return row[0]


def test_migration_applies_and_is_idempotent(pg_dsn: str, tmp_path: Path) -> None:
    applied = apply_migrations(pg_dsn, ANALYTICS_SQL)
    assert {"003_timeseries", "006_dashboard_rollups"} <= set(applied)
    assert apply_migrations(pg_dsn, ANALYTICS_SQL) == []
    # Running a file itself again (not only skipping it) must also succeed, in the state
    # the files after it have not changed yet: 006 turns 003's rollup views into tables.
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("DROP SCHEMA analytics CASCADE")
    early = tmp_path / "through_005"
    early.mkdir()
    for path in sorted(ANALYTICS_SQL.glob("*.sql")):
        if path.name < "006":
            shutil.copy(path, early / path.name)
    apply_migrations(pg_dsn, early)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        for _ in range(2):
            conn.execute((ANALYTICS_SQL / "003_timeseries.sql").read_bytes())
    later = [p.stem for p in sorted(ANALYTICS_SQL.glob("*.sql")) if p.name >= "006"]
    assert apply_migrations(pg_dsn, ANALYTICS_SQL) == later
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        for _ in range(2):
            conn.execute((ANALYTICS_SQL / "006_dashboard_rollups.sql").read_bytes())
        tables = {
            r[0]
            for r in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'analytics'"
            )
        }
        kinds = dict(
            conn.execute(
                "SELECT relname, relkind::text FROM pg_class WHERE relname = ANY(%s)"
                " AND relnamespace = 'analytics'::regnamespace",
                (["metrics_hourly", "agent_load_hourly", "sla_hourly", "volume_hourly"],),
            ).fetchall()
        )
    assert kinds == {
        "metrics_hourly": "r",
        "agent_load_hourly": "r",
        "sla_hourly": "r",
        "volume_hourly": "v",
    }
    assert {
        "metrics_minute",
        "agent_load",
        "anomalies",
        "forecasts",
        "volume_hourly",
        "volume_daily",
        "response_times_daily",
        "agent_performance_daily",
        "sla_compliance_daily",
        "metrics_hourly",
        "agent_load_hourly",
        "sla_hourly",
    } <= tables


@pytest.mark.parametrize(
    ("width", "ts", "expected"),
    [
        ("1 hour", "2024-05-01 10:37+00", "2024-05-01 10:00+00"),
        ("15 minutes", "2024-05-01 10:37:59+00", "2024-05-01 10:30+00"),
        ("15 minutes", "2024-05-01 10:45+00", "2024-05-01 10:45+00"),
        ("5 seconds", "2024-05-01 10:37:58.999+00", "2024-05-01 10:37:55+00"),
        ("1 day", "2024-05-01 23:59:59.999999+00", "2024-05-01 00:00+00"),
        # A timestamptz is bucketed in UTC whatever its offset.
        ("1 day", "2024-05-02 01:00+02", "2024-05-01 00:00+00"),
        # 2024-05-01 is a Wednesday; weeks start on Monday (origin 2000-01-03).
        ("1 week", "2024-05-01 10:37+00", "2024-04-29 00:00+00"),
        ("7 days", "2024-05-05 23:00+00", "2024-04-29 00:00+00"),
        ("1 week", "2000-01-03 00:00+00", "2000-01-03 00:00+00"),
        ("1 week", "2000-01-02 23:59+00", "1999-12-27 00:00+00"),
        # Before the origin times are floored, not truncated towards it.
        ("1 hour", "1999-12-31 23:30+00", "1999-12-31 23:00+00"),
        ("1 day", "1969-07-20 20:17+00", "1969-07-20 00:00+00"),
        ("3 days", "2000-01-02 12:00+00", "1999-12-31 00:00+00"),
        ("1 month", "2024-05-31 23:00+00", "2024-05-01 00:00+00"),
        ("1 month", "1999-02-15 00:00+00", "1999-02-01 00:00+00"),
        ("3 months", "2024-05-17 00:00+00", "2024-04-01 00:00+00"),
        ("3 months", "1999-12-31 00:00+00", "1999-10-01 00:00+00"),
        ("1 year", "2024-05-17 00:00+00", "2024-01-01 00:00+00"),
    ],
)
def test_time_bucket_matches_timescaledb(
    analytics_dsn: str, width: str, ts: str, expected: str
) -> None:
    got = _one(
        analytics_dsn,
        "SELECT analytics.time_bucket(%s::interval, %s::timestamptz) = %s::timestamptz",
        (width, ts, expected),
    )
    assert got, f"time_bucket({width}, {ts}) != {expected}"


def test_time_bucket_origin_offset_timezone_and_types(analytics_dsn: str) -> None:
    checks = {
        # Explicit origin: 15-minute buckets starting at :05.
        "SELECT analytics.time_bucket('15 minutes', '2024-05-01 10:37+00'::timestamptz,"
        " '2024-01-01 00:05+00'::timestamptz)": datetime(2024, 5, 1, 10, 35, tzinfo=UTC),
        # Weeks starting on Sunday.
        "SELECT analytics.time_bucket('1 week', '2024-05-01 10:37+00'::timestamptz,"
        " '2000-01-02 00:00+00'::timestamptz)": datetime(2024, 4, 28, tzinfo=UTC),
        # Origin after the time: still floored.
        "SELECT analytics.time_bucket('1 hour', '2024-05-01 10:37+00'::timestamptz,"
        " '2030-01-01 00:30+00'::timestamptz)": datetime(2024, 5, 1, 10, 30, tzinfo=UTC),
        "SELECT analytics.time_bucket('1 day', '2024-05-01 10:37+00'::timestamptz,"
        " '2 hours'::interval)": datetime(2024, 5, 1, 2, tzinfo=UTC),
        # Local midnight in Berlin (UTC+2 in May).
        "SELECT analytics.time_bucket('1 day', '2024-05-01 23:30+00'::timestamptz,"
        " 'Europe/Berlin')": datetime(2024, 5, 1, 22, tzinfo=UTC),
        "SELECT analytics.time_bucket('1 hour', '2024-05-01 10:37'::timestamp)": datetime(
            2024, 5, 1, 10
        ),
        "SELECT analytics.time_bucket('1 month', '2024-05-17'::date)": date(2024, 5, 1),
        "SELECT analytics.time_bucket('1 week', '2024-05-01'::date)": date(2024, 4, 29),
    }
    with psycopg.connect(analytics_dsn, autocommit=True) as conn:
        conn.execute("SET TimeZone = 'America/New_York'")  # results must not depend on it
        for query, expected in checks.items():
            row = conn.execute(query).fetchone()
            assert row is not None
            assert row[0] == expected, query


def test_time_bucket_untyped_literal_and_search_path(analytics_dsn: str) -> None:
    with psycopg.connect(analytics_dsn, autocommit=True) as conn:
        conn.execute("SET search_path TO analytics, public")
        row = conn.execute("SELECT time_bucket('1 hour', '2024-05-01 10:37+00')").fetchone()
    assert row is not None
    assert row[0] == datetime(2024, 5, 1, 10, tzinfo=UTC)


@pytest.mark.parametrize(
    ("width", "message"),
    [
        ("0 seconds", "period must be greater than 0"),
        ("-1 hour", "period must be greater than 0"),
        ("1 month 2 days", "month intervals cannot have day or time component"),
    ],
)
def test_time_bucket_rejects_bad_widths(analytics_dsn: str, width: str, message: str) -> None:
    with pytest.raises(psycopg.errors.InvalidParameterValue, match=message):
        _one(analytics_dsn, "SELECT analytics.time_bucket(%s::interval, now())", (width,))


def _fact(
    ticket_id: int,
    created: datetime,
    *,
    category: str = "billing",
    priority: str = "normal",
    channel: str = "email",
    status: str = "open",
    agent: int | None = None,
    first_reply: datetime | None = None,
    solved: datetime | None = None,
    csat: int | None = None,
    deleted: bool = False,
) -> tuple[Any, ...]:
    return (
        ticket_id,
        1,
        100 + ticket_id,
        "standard",
        channel,
        status,
        priority,
        category,
        category,
        "en",
        0.9,
        agent,
        f"ticket {ticket_id}",
        created,
        first_reply,
        solved,
        csat,
        created,
        created,
        deleted,
    )


_INSERT_FACT = (
    "INSERT INTO analytics.ticket_facts (ticket_id, version, customer_id, customer_tier,"
    " channel, status, priority, category, queue, language, language_confidence,"
    " assigned_agent_id, subject, created_at, first_reply_at, solved_at, csat,"
    " source_committed_at, enriched_at, deleted)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
)


def _at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2024, 5, day, hour, minute, tzinfo=UTC)


def test_views_on_inserted_facts(analytics_dsn: str) -> None:
    facts = [
        _fact(
            1,
            _at(1, 10, 5),
            first_reply=_at(1, 10, 15),
            solved=_at(1, 12, 5),
            status="solved",
            agent=7,
            csat=5,
        ),
        _fact(
            2,
            _at(1, 10, 40),
            first_reply=_at(1, 11, 10),
            solved=_at(1, 14, 40),
            status="solved",
            agent=7,
            csat=3,
        ),
        _fact(3, _at(1, 11, 0), priority="urgent", channel="chat", agent=8),
        _fact(4, _at(1, 10, 59), category="technical", deleted=True),
        _fact(5, _at(2, 9, 0), first_reply=_at(2, 9, 30)),
    ]
    with psycopg.connect(analytics_dsn, autocommit=True) as conn:
        with conn.cursor() as cur:
            cur.executemany(_INSERT_FACT, facts)
        conn.execute(
            "INSERT INTO analytics.routing_decision_history (ticket_id, version, queue, status,"
            " agent_id, score, confidence, priority, model_version, decided_at,"
            " source_committed_at) VALUES"
            " (1, 1, 'billing', 'assigned', 7, 1, 1, 'normal', 'm1', %(d)s, %(d)s),"
            " (1, 2, 'billing', 'assigned', 7, 1, 1, 'normal', 'm1', %(d)s, %(d)s),"
            " (2, 1, 'billing', 'assigned', 7, 1, 1, 'normal', 'm1', %(d)s, %(d)s),"
            " (3, 1, 'billing', 'assigned', 8, 1, 1, 'urgent', 'm1', %(d)s, %(d)s)",
            {"d": _at(1, 11)},
        )
        hourly = conn.execute(
            "SELECT bucket, category, priority, channel, created, solved, open"
            " FROM analytics.volume_hourly ORDER BY 1, 2, 3, 4"
        ).fetchall()
        daily = conn.execute(
            "SELECT date, sum(created), sum(solved), sum(open)"
            " FROM analytics.volume_daily GROUP BY 1 ORDER BY 1"
        ).fetchall()
        times = conn.execute(
            "SELECT date, metric, priority, tickets, p50_seconds, p90_seconds"
            " FROM analytics.response_times_daily ORDER BY 1, 2, 3"
        ).fetchall()
        agents = conn.execute(
            "SELECT date, agent_id, assigned, solved, resolution_p50_seconds, csat_responses,"
            " csat_avg FROM analytics.agent_performance_daily ORDER BY 1, 2"
        ).fetchall()

    assert hourly == [
        (_at(1, 10), "billing", "normal", "email", 2, 2, 0),
        (_at(1, 10), "technical", "normal", "email", 1, 0, 0),
        (_at(1, 11), "billing", "urgent", "chat", 1, 0, 1),
        (_at(2, 9), "billing", "normal", "email", 1, 0, 1),
    ]
    assert daily == [(date(2024, 5, 1), 4, 2, 1), (date(2024, 5, 2), 1, 0, 1)]
    # Day 1: first replies after 10 and 30 minutes, resolutions after 2 and 4 hours.
    assert times == [
        (date(2024, 5, 1), "first_reply", "all", 2, 1200.0, 1680.0),
        (date(2024, 5, 1), "first_reply", "normal", 2, 1200.0, 1680.0),
        (date(2024, 5, 1), "resolution", "all", 2, 10800.0, 13680.0),
        (date(2024, 5, 1), "resolution", "normal", 2, 10800.0, 13680.0),
        (date(2024, 5, 2), "first_reply", "all", 1, 1800.0, 1800.0),
        (date(2024, 5, 2), "first_reply", "normal", 1, 1800.0, 1800.0),
    ]
    assert agents == [
        (date(2024, 5, 1), 7, 2, 2, 10800.0, 2, 4.0),
        (date(2024, 5, 1), 8, 1, 0, None, 0, None),
    ]


def test_hourly_rollups_recompute_touched_hours(analytics_dsn: str) -> None:
    with psycopg.connect(analytics_dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO analytics.metrics_minute (bucket, dimension, created, solved, backlog,"
            " first_reply_p50_seconds, first_reply_p90_seconds, breaches, late_events) VALUES"
            " ('2024-05-01 10:00+00', 'all', 3, 1, 10, 30, 60, 0, 0),"
            " ('2024-05-01 10:59+00', 'all', 2, 2, 12, 50, 90, 1, 1),"
            " ('2024-05-01 11:00+00', 'all', 1, 0, 13, NULL, NULL, 0, 0)"
        )
        conn.execute(
            "INSERT INTO analytics.agent_load (bucket, agent_id, queue, assigned, capacity,"
            " burnout_risk) VALUES"
            " ('2024-05-01 10:00+00', 7, 'billing', 2, 4, 20),"
            " ('2024-05-01 10:30+00', 7, 'billing', 4, 4, 55)"
        )
        conn.execute(
            "INSERT INTO analytics.sla_events (ticket_id, metric, kind, at, policy,"
            " business_seconds_elapsed, paused_seconds, breached) VALUES"
            " (1, 'first_reply', 'fulfill', '2024-05-01 10:10+00', 'p', 60, 0, false),"
            " (2, 'first_reply', 'breach', '2024-05-01 10:20+00', 'p', 60, 0, true),"
            # Fulfilled late: already counted as missed at its breach.
            " (2, 'first_reply', 'fulfill', '2024-05-01 10:40+00', 'p', 90, 0, true),"
            " (3, 'first_reply', 'apply', '2024-05-01 10:50+00', 'p', 0, 0, false)"
        )
        # Nothing is rolled up until the hours are refreshed (the sink does it).
        assert conn.execute("SELECT count(*) FROM analytics.metrics_hourly").fetchone() == (0,)
        written = conn.execute(
            "SELECT analytics.refresh_rollups(ARRAY['2024-05-01 10:30+00',"
            " '2024-05-01 11:05+00']::timestamptz[])"
        ).fetchone()
        metrics = conn.execute(
            "SELECT bucket, created, solved, backlog_last, backlog_max,"
            " first_reply_p90_max_seconds, breaches, late_events,"
            " first_reply_p50_sum_seconds, first_reply_minutes"
            " FROM analytics.metrics_hourly ORDER BY 1"
        ).fetchall()
        load = conn.execute(
            "SELECT bucket, assigned_max, assigned_avg, utilisation_max, assigned_sum,"
            " capacity_sum, samples, burnout_risk_max FROM analytics.agent_load_hourly"
        ).fetchall()
        sla = conn.execute(
            "SELECT bucket, metric, met, missed FROM analytics.sla_hourly"
        ).fetchall()
        # A late minute row changes its hour only once that hour is refreshed again, and
        # refreshing twice gives the same rows (recomputed, not added).
        conn.execute(
            "INSERT INTO analytics.metrics_minute (bucket, dimension, created, backlog)"
            " VALUES ('2024-05-01 10:30+00', 'all', 4, 11)"
        )
        for _ in range(2):
            conn.execute(
                "SELECT analytics.refresh_rollups(ARRAY['2024-05-01 10:00+00']::timestamptz[])"
            )
        created_10 = conn.execute(
            "SELECT created FROM analytics.metrics_hourly WHERE bucket = '2024-05-01 10:00+00'"
        ).fetchone()
    assert written == (4,)
    assert metrics == [
        (_at(1, 10), 5, 3, 12, 12, 90.0, 1, 1, 80.0, 2),
        (_at(1, 11), 1, 0, 13, 13, None, 0, 0, None, 0),
    ]
    assert load == [(_at(1, 10), 4, 3.0, 1.0, 6, 8, 2, 55.0)]
    assert sla == [(_at(1, 10), "first_reply", 1, 1)]
    assert created_10 == (9,)


def test_anomalies_and_forecasts_ignore_replays(analytics_dsn: str) -> None:
    with psycopg.connect(analytics_dsn, autocommit=True) as conn:
        for _ in range(2):
            conn.execute(
                "INSERT INTO analytics.anomalies (detected_at, series, bucket_start, observed,"
                " expected, score, drivers) VALUES (now(), 'volume:all', %s, 40, 12, 4.2,"
                " '{\"category:billing\": 0.7}') ON CONFLICT (series, bucket_start) DO NOTHING",
                (_at(1, 10),),
            )
            conn.execute(
                "INSERT INTO analytics.forecasts VALUES (%s, 'volume:all', %s, 12, 8, 16, 3)"
                " ON CONFLICT DO NOTHING",
                (_at(1, 0), _at(1, 10)),
            )
        assert _one(analytics_dsn, "SELECT count(*) FROM analytics.anomalies") == 1
        assert _one(analytics_dsn, "SELECT count(*) FROM analytics.forecasts") == 1
