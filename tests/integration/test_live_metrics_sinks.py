"""Window metrics and anomaly alerts reach PostgreSQL and Redis, once each."""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg
import pytest
import redis

from models.anomaly import AnomalyAlert, Driver
from models.windows import WindowResult
from sinks.postgres import PostgresSink
from sinks.redis import RedisSink
from triage.runtime import Stack, migrate

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def window(created: int) -> WindowResult:
    counts = {"created": created, "solved": 1, "reopened": 0, "first_reply": 2, "breach": 1}
    return WindowResult(
        start=T0,
        end=T0.replace(minute=1),
        dimension="all",
        counts=counts,
        first_reply_p50=30.0,
        first_reply_p90=50.0,
        resolution_p50=None,
        resolution_p90=None,
        backlog=7,
        late_merged=0,
        too_late=1,
    )


ALERT = AnomalyAlert(
    series="volume:category=billing",
    start=T0,
    observed=40.0,
    expected=4.0,
    score=9.5,
    drivers=(Driver("channel", "chat", 36.0, 1.0, 36.0),),
)


def test_windows_upsert_and_anomalies_insert_once(pg_dsn: str) -> None:
    migrate(Stack(source_dsn=pg_dsn, analytics_dsn=pg_dsn, redis_url="redis://unused"))
    part = PostgresSink(pg_dsn).build("write_analytics", 0, 1)
    part.write_batch([window(3), ALERT])
    part.write_batch([window(5), ALERT])  # a replay with a recomputed window
    part.close()
    with psycopg.connect(pg_dsn) as conn:
        rows = conn.execute(
            "SELECT dimension, created, solved, breaches, backlog, late_events,"
            " first_reply_p50_seconds FROM analytics.metrics_minute"
        ).fetchall()
        anomalies = conn.execute(
            "SELECT series, observed, drivers FROM analytics.anomalies"
        ).fetchall()
        # The sink refreshes the hour's rollup in the same transaction: the replayed
        # window replaces, not adds to, the first one.
        hourly = conn.execute(
            "SELECT bucket, dimension, created, breaches FROM analytics.metrics_hourly"
        ).fetchall()
    assert rows == [("all", 5, 1, 1, 7, 1, 30.0)]
    assert hourly == [(T0, "all", 5, 1)]
    assert anomalies == [("volume:category=billing", 40.0, {"channel:chat": 36.0})]


def test_anomaly_alert_is_published_once_on_the_alerts_stream(redis_url: str, unique: str) -> None:
    part = RedisSink(redis_url, prefix=unique).build("write_live", 0, 1)
    part.write_batch([ALERT])
    part.write_batch([ALERT])
    part.close()
    entries = redis.Redis.from_url(redis_url).xrange(f"{unique}:alerts")
    assert len(entries) == 1
    fields = entries[0][1]
    assert fields[b"type"] == b"anomaly" and fields[b"series"] == b"volume:category=billing"
    assert b"chat" in fields[b"drivers"]


def test_daily_report_endpoint_reads_the_analytics_store(pg_dsn: str, redis_url: str) -> None:
    from fastapi.testclient import TestClient

    from api.app import create_app
    from api.settings import ApiSettings

    migrate(Stack(source_dsn=pg_dsn, analytics_dsn=pg_dsn, redis_url=redis_url))
    part = PostgresSink(pg_dsn).build("write_analytics", 0, 1)
    part.write_batch([ALERT])
    part.close()
    app = create_app(ApiSettings(redis_url=redis_url, analytics_dsn=pg_dsn, auth_required=False))
    with TestClient(app) as client:
        md = client.get("/v1/reports/daily", params={"day": "2026-03-02"})
        assert md.status_code == 200 and md.headers["content-type"].startswith("text/markdown")
        assert "volume:category=billing" in md.text and "channel:chat" in md.text
        data = client.get("/v1/reports/daily", params={"day": "2026-03-02", "format": "json"})
        assert data.json()["created"] == 0 and len(data.json()["anomalies"]) == 1
        assert client.get("/v1/reports/daily", params={"day": "not-a-day"}).status_code == 422


def test_agent_load_samples_carry_burnout_risk(pg_dsn: str) -> None:
    from models.burnout import WorkloadScore

    migrate(Stack(source_dsn=pg_dsn, analytics_dsn=pg_dsn, redis_url="redis://unused"))
    part = PostgresSink(pg_dsn).build("write_analytics", 0, 1)
    sample = WorkloadScore(7, "billing", T0, 4, 5, 52.0, ("load 80%", "negative 40%"))
    part.write_batch([sample, sample])
    part.close()
    with psycopg.connect(pg_dsn) as conn:
        rows = conn.execute(
            "SELECT agent_id, queue, assigned, capacity, burnout_risk, burnout_reasons"
            " FROM analytics.agent_load"
        ).fetchall()
        hourly = conn.execute(
            "SELECT bucket, agent_id, assigned_sum, capacity_sum, burnout_risk_max"
            " FROM analytics.agent_load_hourly"
        ).fetchall()
    assert rows == [(7, "billing", 4, 5, 52.0, ["load 80%", "negative 40%"])]
    assert hourly == [(T0, 7, 4, 5, 52.0)]
