"""apply_timescale: a no-op on plain PostgreSQL; hypertables and continuous aggregates on
TimescaleDB (only when ``TRIAGE_TIMESCALE_DSN`` points at one)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from sinks.migrations import apply_migrations
from sinks.timescale import CONTINUOUS_AGGREGATES, HYPERTABLES, NOT_AVAILABLE, apply_timescale

pytestmark = pytest.mark.integration

ANALYTICS_SQL = Path(__file__).resolve().parents[2] / "sql" / "analytics"
TIMESCALE_DSN_VAR = "TRIAGE_TIMESCALE_DSN"


def _catalog(dsn: str) -> dict[str, Any]:
    """Everything apply_timescale could touch: relations, functions, views, extensions."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        return {
            "relations": conn.execute(
                "SELECT c.relname, c.relkind FROM pg_class AS c"
                " JOIN pg_namespace AS n ON n.oid = c.relnamespace"
                " WHERE n.nspname = 'analytics' ORDER BY 1"
            ).fetchall(),
            "functions": conn.execute(
                "SELECT p.oid::regprocedure::text FROM pg_proc AS p"
                " JOIN pg_namespace AS n ON n.oid = p.pronamespace"
                " WHERE n.nspname = 'analytics' ORDER BY 1"
            ).fetchall(),
            "views": conn.execute(
                "SELECT viewname, definition FROM pg_views"
                " WHERE schemaname = 'analytics' ORDER BY 1"
            ).fetchall(),
            "extensions": conn.execute("SELECT extname FROM pg_extension ORDER BY 1").fetchall(),
        }


def test_plain_postgres_reports_not_available_and_changes_nothing(pg_dsn: str) -> None:
    apply_migrations(pg_dsn, ANALYTICS_SQL)
    before = _catalog(pg_dsn)

    report = apply_timescale(pg_dsn)

    assert not report.available
    assert report.actions == ()
    assert report.reason is not None and report.reason.startswith(NOT_AVAILABLE)
    assert _catalog(pg_dsn) == before
    # The shim stays, so analysts' time_bucket queries keep working.
    assert ("analytics.time_bucket(interval,timestamp with time zone)",) in before["functions"]


@pytest.fixture
def timescale_dsn() -> Iterator[str]:
    """A fresh database on the TimescaleDB server named by ``TRIAGE_TIMESCALE_DSN``."""
    admin_dsn = os.environ.get(TIMESCALE_DSN_VAR)
    if not admin_dsn:
        pytest.skip(f"set {TIMESCALE_DSN_VAR} to a TimescaleDB to run")
    name = f"triage_ts_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_dsn, autocommit=True) as admin:
        try:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        except psycopg.errors.InsufficientPrivilege:
            pytest.skip(f"the role of {TIMESCALE_DSN_VAR} may not create databases")
    try:
        yield make_conninfo(admin_dsn, dbname=name)
    finally:
        with psycopg.connect(admin_dsn, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.mark.timescale
def test_timescale_hypertables_and_continuous_aggregates(timescale_dsn: str) -> None:
    apply_migrations(timescale_dsn, ANALYTICS_SQL)
    with psycopg.connect(timescale_dsn, autocommit=True) as conn:
        # Rows written before the upgrade must survive it (migrate_data).
        conn.execute(
            "INSERT INTO analytics.metrics_minute (bucket, dimension, created, backlog) VALUES"
            " ('2024-05-01 10:00+00', 'all', 3, 10), ('2024-05-01 10:30+00', 'all', 2, 12)"
        )

    report = apply_timescale(timescale_dsn)

    assert report.available, report.reason
    assert report.actions
    with psycopg.connect(timescale_dsn, autocommit=True) as conn:
        hypertables = {
            r[0]
            for r in conn.execute(
                "SELECT hypertable_name FROM timescaledb_information.hypertables"
                " WHERE hypertable_schema = 'analytics'"
            )
        }
        caggs = {
            r[0]
            for r in conn.execute(
                "SELECT view_name FROM timescaledb_information.continuous_aggregates"
                " WHERE view_schema = 'analytics'"
            )
        }
        rollup = conn.execute(
            "SELECT created, backlog_last FROM analytics.metrics_hourly"
            " WHERE dimension = 'all' AND bucket = '2024-05-01 10:00+00'"
        ).fetchall()
        bucket = conn.execute("SELECT time_bucket('1 week', '2024-05-01 10:37+00'::timestamptz)")
        week = bucket.fetchone()
        shim = conn.execute(
            "SELECT count(*) FROM pg_proc AS p JOIN pg_namespace AS n ON n.oid = p.pronamespace"
            " WHERE n.nspname = 'analytics' AND p.proname = 'time_bucket'"
        ).fetchone()
    assert hypertables == {t.table for t in HYPERTABLES}
    assert caggs == {c.name for c in CONTINUOUS_AGGREGATES}
    assert rollup == [(5, 12)]
    assert week is not None and week[0].isoformat() == "2024-04-29T00:00:00+00:00"
    assert shim == (0,)

    again = apply_timescale(timescale_dsn)
    assert again.available and again.actions == ()

    # The dashboard's queries run unchanged on TimescaleDB (its own time_bucket, the
    # continuous aggregates in place of the rollup tables), for both query branches.
    from datetime import UTC, datetime, timedelta

    from api.panels import PANELS

    end = datetime(2024, 5, 2, tzinfo=UTC)
    with psycopg.connect(timescale_dsn, options="-c search_path=analytics,public") as conn:
        for panel in PANELS:
            for span in (timedelta(days=1), timedelta(days=30)):
                query, params = panel.bind(end - span, end)
                rows = conn.execute(query, params).fetchall()
                if panel.id == "volume":
                    assert sum(r[1] for r in rows) == 5
