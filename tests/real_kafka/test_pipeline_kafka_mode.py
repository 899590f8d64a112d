"""The production path end to end: PostgreSQL → Debezium → Kafka → the pipeline → stores.

The pipeline runs as ``triage pipeline`` in Kafka mode (``TRIAGE_CDC__MODE=kafka``) against
the session's real broker and reads the topics the production connector writes; the
workload generator writes helpdesk activity into the source database.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import psycopg
import pytest
import redis
from confluent_kafka.admin import AdminClient, NewTopic

from connectors.kafka import KafkaSettings, cdc_topics
from connectors.workload import WorkloadConfig, WorkloadWriter
from tests.real_kafka.conftest import PLAIN_PREFIX, SourceDb
from triage.kafka_local import LocalKafka
from triage.report import dead_letter_count, routed_summary
from triage.runtime import PipelineProcess, Stack
from triage.services import LocalPostgres, LocalRedis

pytestmark = pytest.mark.real_kafka

TICKETS = 40


def _create_topics(bootstrap: str, topics: list[str]) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    existing = set(admin.list_topics(timeout=10).topics)
    missing = [NewTopic(topic, num_partitions=1) for topic in topics if topic not in existing]
    for future in admin.create_topics(missing).values():
        future.result(timeout=30)


def test_pipeline_in_kafka_mode_routes_every_ticket_debezium_captured(
    postgres: LocalPostgres,
    redis_server: LocalRedis,
    kafka_broker: LocalKafka,
    debezium: SourceDb,
    tmp_path: Path,
) -> None:
    analytics_dsn = postgres.create_database(f"rk_analytics_{uuid.uuid4().hex[:6]}")
    stack = Stack(source_dsn=debezium.dsn, analytics_dsn=analytics_dsn, redis_url=redis_server.url)
    key_prefix = f"rk{uuid.uuid4().hex[:6]}"
    writer = WorkloadWriter(
        debezium.dsn, WorkloadConfig(seed=11, customers=15, agents=6, tickets=TICKETS, rate=40)
    )
    writer.seed_reference_data()
    # Debezium creates a table's topic with its first change, but Bytewax's KafkaSource
    # refuses to start on a topic that does not exist yet (ticket_events has no rows so
    # far). Production needs the same step before the pipeline starts.
    _create_topics(kafka_broker.bootstrap, cdc_topics(KafkaSettings(topic_prefix=PLAIN_PREFIX)))

    pipeline = PipelineProcess(
        stack,
        tmp_path / "pipeline",
        extra_env={
            "TRIAGE_CDC__MODE": "kafka",
            "TRIAGE_CDC__TOPIC_PREFIX": PLAIN_PREFIX,
            "TRIAGE_KAFKA__BROKERS": json.dumps([kafka_broker.bootstrap]),
            "TRIAGE_REDIS__KEY_PREFIX": key_prefix,
            "TRIAGE_JOBS__ENABLED": "false",
        },
    ).start()
    client = redis.Redis.from_url(redis_server.url)
    try:
        created = writer.run().created_ticket_ids
        assert len(created) == TICKETS
        deadline = time.monotonic() + 150
        summary = routed_summary(client, key_prefix, created)
        while summary["tickets_routed"] < len(created) and time.monotonic() < deadline:
            assert pipeline.alive(), pipeline.log_tail()
            time.sleep(0.25)
            summary = routed_summary(client, key_prefix, created)
        assert summary["tickets_routed"] == len(created), (summary, pipeline.log_tail())
        assert set(summary["routed_by_status"]) <= {"assigned", "queued", "released"}

        # The analytics facts converge to the source's tickets, through Kafka.
        deadline = time.monotonic() + 60
        while True:
            with psycopg.connect(debezium.dsn) as conn:
                source = dict(conn.execute("SELECT id, status FROM tickets").fetchall())
            with psycopg.connect(analytics_dsn) as conn:
                facts = dict(
                    conn.execute("SELECT ticket_id, status FROM analytics.ticket_facts").fetchall()
                )
            if facts == source or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert facts == source
        # Tombstones, heartbeats' messages and the probe table's truncates are skipped,
        # never dead-lettered.
        assert dead_letter_count(analytics_dsn) == 0, pipeline.log_tail()
    finally:
        pipeline.stop()
