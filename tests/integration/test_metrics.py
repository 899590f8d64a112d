"""Prometheus metrics over real stores: sink counters match the rows written, the pipeline's
metrics server answers a scrape, and the API's /metrics stays open when keys are required."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest
from bytewax.testing import TestingSource, run_main
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry
from psycopg import sql

from api.app import create_app
from api.metrics import UNMATCHED
from api.settings import ApiSettings
from connectors.debezium import encode_envelope, encode_key
from connectors.pg_cdc import PgCdcSettings, PgCdcSource, drop_slot
from models.events import RawChange, SourcePosition
from models.telemetry import install_telemetry
from pipelines.flow import build_flow
from pipelines.metrics import PrometheusTelemetry, serve_metrics
from pipelines.settings import PipelineSettings
from sinks.migrations import apply_migrations
from sinks.postgres import PostgresSink
from sinks.redis import RedisSink
from triage.runtime import SQL_DIR
from triage.services import free_port

pytestmark = pytest.mark.integration

TS = 1_772_442_000_000  # 2026-03-02 09:00 UTC


@pytest.fixture
def analytics_dsn(pg_dsn: str) -> str:
    apply_migrations(pg_dsn, SQL_DIR / "analytics", schema="analytics")
    return pg_dsn


@pytest.fixture
def registry() -> Iterator[CollectorRegistry]:
    """A private registry with the pipeline telemetry installed for the test."""
    registry = CollectorRegistry()
    previous = install_telemetry(PrometheusTelemetry(registry))
    try:
        yield registry
    finally:
        install_telemetry(previous)


def record(lsn: int, table: str, after: dict[str, Any]) -> RawChange:
    return RawChange(
        topic=f"triage.public.{table}",
        key=encode_key({"id": after["id"]}, table=table),
        value=encode_envelope(table=table, op="c", lsn=lsn, ts_ms=TS + lsn, after=after),
        position=SourcePosition(lsn=lsn),
    )


def count(dsn: str, table: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier("analytics", table))
        ).fetchone()
    assert row is not None
    return int(row[0])


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    found = registry.get_sample_value(name, labels)
    return 0.0 if found is None else found


def test_sink_counters_match_rows_written(
    analytics_dsn: str, redis_url: str, unique: str, registry: CollectorRegistry
) -> None:
    agent = {"id": 1, "name": "A1", "email": "a@x", "team": "billing",
             "skills": '{"billing": 0.9}', "languages": ["en"], "capacity": 5,
             "status": "online", "shift_start": 0, "shift_end": 24}  # fmt: skip
    customer = {"id": 1, "name": "Acme", "email": "c@x", "tier": "premium", "language": "en",
                "region": "us"}  # fmt: skip
    records = [record(1010, "agents", agent), record(1020, "customers", customer)]
    for n, tid in enumerate((10, 11, 12)):
        records.append(
            record(
                1100 + 10 * n,
                "tickets",
                {
                    "id": tid,
                    "customer_id": 1,
                    "subject": f"Refund for invoice {tid}",
                    "description": "I was charged twice",
                    "channel": "email",
                    "status": "new",
                    "created_at": "2026-03-02T09:00:00Z",
                },
            )
        )
    records.append(
        RawChange(
            topic="triage.public.tickets",
            key=None,
            value=b"{not json",
            position=SourcePosition(lsn=1200),
        )
    )
    flow = build_flow(
        PipelineSettings(),
        source=TestingSource(records),
        analytics_sink=PostgresSink(analytics_dsn),
        decision_sink=RedisSink(redis_url, prefix=unique),
    )
    run_main(flow)

    decisions = count(analytics_dsn, "routing_decision_history")
    assert decisions >= 3
    for table in ("routing_decision_history", "dead_letters", "sla_events"):
        written = sample(registry, "triage_sink_items_total", sink="postgres", kind=table)
        assert written == count(analytics_dsn, table), table
    assert count(analytics_dsn, "dead_letters") == 1
    assert sample(registry, "triage_dead_letters_total", stage="decode_cdc", kind="malformed") == 1
    redis_decisions = sample(
        registry, "triage_sink_items_total", sink="redis", kind="RoutingDecision"
    )
    assert redis_decisions == decisions
    assert sample(registry, "triage_decision_latency_seconds_count") == decisions
    assert sample(registry, "triage_sink_retries_total", sink="postgres") == 0


def test_cdc_source_counts_changes_per_table_and_lag(
    pg_dsn: str, unique: str, registry: CollectorRegistry
) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute((SQL_DIR / "source" / "001_helpdesk.sql").read_text())
    settings = PgCdcSettings(
        dsn=pg_dsn,
        slot_name=f"test_{unique}",
        stop_at_idle=True,
        poll_interval=timedelta(milliseconds=5),
    )
    source = PgCdcSource(settings)
    part = source.build_part("read_cdc", settings.slot_name, None)
    try:
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO customers (name, email) VALUES ('Ada', 'a@x'), ('Bob', 'b@x')"
            )
        read = 0
        for _ in range(10_000):
            awake = part.next_awake()
            if awake is not None:
                time.sleep(max(0.0, (awake - datetime.now(UTC)).total_seconds()))
            try:
                read += len(part.next_batch())
            except StopIteration:
                break
    finally:
        part.close()
        drop_slot(pg_dsn, settings.slot_name)
    assert read == 2
    assert sample(registry, "triage_source_changes_total", table="customers") == 2
    assert 0.0 <= sample(registry, "triage_source_lag_seconds") < 60


def test_pipeline_metrics_server_answers_a_scrape() -> None:
    port = free_port()
    previous = install_telemetry(None)
    server = serve_metrics("127.0.0.1", port, registry=CollectorRegistry())
    try:
        response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
    finally:
        server.shutdown()
        server.server_close()
        install_telemetry(previous)
    assert response.status_code == 200
    for name in (
        "triage_source_lag_seconds",
        "triage_decision_latency_seconds_bucket",
        "triage_flow_events_total",
    ):
        assert name in response.text


def test_api_metrics_open_when_keys_are_required(
    analytics_dsn: str, redis_url: str, unique: str
) -> None:
    settings = ApiSettings(
        redis_url=redis_url,
        analytics_dsn=analytics_dsn,
        key_prefix=f"t{unique}",
        auth_required=True,
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as api:
        assert api.get("/v1/tickets/1/routing").status_code == 401
        assert api.get("/v1/tickets/2/routing").status_code == 401
        assert api.get("/no/such/path").status_code == 404
        assert api.get("/health").status_code in (200, 503)
        response = api.get("/metrics")
    assert response.status_code == 200
    text = response.text
    assert (
        'triage_api_requests_total{method="GET",route="/v1/tickets/{ticket_id}/routing",'
        'status="401"} 2.0' in text
    )
    assert f'route="{UNMATCHED}",status="404"' in text
    assert "/no/such/path" not in text
