"""The production path end to end: PostgreSQL → Debezium → Kafka → the pipeline → stores.

The pipeline runs as ``triage pipeline`` in Kafka mode (``TRIAGE_CDC__MODE=kafka``) against
the session's real broker and reads the topics the production connector writes; the
workload generator writes helpdesk activity into the source database. Each test has its
own analytics database and Redis key prefix and reads the topics from the beginning, so
every ticket in the source database must end up in its stores.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
import redis

from connectors.kafka import KafkaSettings, cdc_topics
from connectors.workload import WorkloadConfig, WorkloadWriter
from tests.real_kafka.conftest import PLAIN_PREFIX, SourceDb
from triage.kafka_local import LocalKafka, ensure_topics
from triage.report import dead_letter_count, routed_summary
from triage.runtime import PipelineProcess, Stack
from triage.services import LocalPostgres, LocalRedis

pytestmark = pytest.mark.real_kafka


@dataclass
class KafkaModeRun:
    """A pipeline in Kafka mode with its own stores, and the helpers to check them."""

    pipeline: PipelineProcess
    source_dsn: str
    analytics_dsn: str
    key_prefix: str
    client: redis.Redis

    def wait_routed(self, ticket_ids: list[int], *, timeout: float = 150.0) -> None:
        deadline = time.monotonic() + timeout
        summary = routed_summary(self.client, self.key_prefix, ticket_ids)
        while summary["tickets_routed"] < len(ticket_ids) and time.monotonic() < deadline:
            assert self.pipeline.alive(), self.pipeline.log_tail()
            time.sleep(0.25)
            summary = routed_summary(self.client, self.key_prefix, ticket_ids)
        assert summary["tickets_routed"] == len(ticket_ids), (summary, self.pipeline.log_tail())
        assert set(summary["routed_by_status"]) <= {"assigned", "queued", "released"}

    def assert_facts_equal_source(self, *, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            with psycopg.connect(self.source_dsn) as conn:
                source = dict(conn.execute("SELECT id, status FROM tickets").fetchall())
            with psycopg.connect(self.analytics_dsn) as conn:
                facts = dict(
                    conn.execute("SELECT ticket_id, status FROM analytics.ticket_facts").fetchall()
                )
            if facts == source or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert facts == source

    def assert_no_duplicate_decisions(self, ticket_ids: list[int]) -> None:
        versions: dict[int, list[int]] = defaultdict(list)
        for _, raw in self.client.xrange(f"{self.key_prefix}:decisions"):
            versions[int(raw[b"ticket_id"])].append(int(raw[b"version"]))
        assert set(ticket_ids) <= set(versions)
        for ticket_id, seen in versions.items():
            assert seen == sorted(set(seen)), (ticket_id, seen)
        with psycopg.connect(self.analytics_dsn) as conn:
            history = conn.execute(
                "SELECT ticket_id, version, count(*) FROM analytics.routing_decision_history"
                " GROUP BY ticket_id, version HAVING count(*) > 1"
            ).fetchall()
        assert history == []


@pytest.fixture
def kafka_mode(
    request: pytest.FixtureRequest,
    postgres: LocalPostgres,
    redis_server: LocalRedis,
    kafka_broker: LocalKafka,
    debezium: SourceDb,
    tmp_path: Path,
) -> Iterator[KafkaModeRun]:
    """Start ``triage pipeline`` in Kafka mode (``processes`` from the test's parameter)."""
    processes = getattr(request, "param", 1)
    analytics_dsn = postgres.create_database(f"rk_analytics_{uuid.uuid4().hex[:6]}")
    stack = Stack(source_dsn=debezium.dsn, analytics_dsn=analytics_dsn, redis_url=redis_server.url)
    key_prefix = f"rk{uuid.uuid4().hex[:6]}"
    # Debezium creates a table's topic with its first change, but Bytewax's KafkaSource
    # refuses to start on a topic that does not exist yet (a table without rows so far).
    # Production needs the same step before the pipeline starts.
    ensure_topics(kafka_broker.bootstrap, cdc_topics(KafkaSettings(topic_prefix=PLAIN_PREFIX)))
    pipeline = PipelineProcess(
        stack,
        tmp_path / "pipeline",
        extra_env={
            "TRIAGE_CDC__MODE": "kafka",
            "TRIAGE_CDC__TOPIC_PREFIX": PLAIN_PREFIX,
            "TRIAGE_KAFKA__BROKERS": json.dumps([kafka_broker.bootstrap]),
            "TRIAGE_REDIS__KEY_PREFIX": key_prefix,
            "TRIAGE_JOBS__ENABLED": "false",
            "TRIAGE_CLUSTER__PROCESSES": str(processes),
        },
    ).start()
    client = redis.Redis.from_url(redis_server.url)
    try:
        yield KafkaModeRun(pipeline, debezium.dsn, analytics_dsn, key_prefix, client)
    finally:
        pipeline.stop()
        client.close()


def test_pipeline_in_kafka_mode_routes_every_ticket_debezium_captured(
    kafka_mode: KafkaModeRun,
) -> None:
    writer = WorkloadWriter(
        kafka_mode.source_dsn, WorkloadConfig(seed=11, customers=15, agents=6, tickets=40, rate=40)
    )
    writer.seed_reference_data()
    created = writer.run().created_ticket_ids
    assert len(created) == 40

    kafka_mode.wait_routed(created)
    kafka_mode.assert_facts_equal_source()
    # Tombstones and the probe table's changes are skipped or ignored, never dead-lettered.
    assert dead_letter_count(kafka_mode.analytics_dsn) == 0, kafka_mode.pipeline.log_tail()


def _wait_decisions(run: KafkaModeRun, count: int, *, timeout: float) -> None:
    stream = f"{run.key_prefix}:decisions"
    deadline = time.monotonic() + timeout
    while run.client.xlen(stream) < count and time.monotonic() < deadline:
        assert run.pipeline.alive(), run.pipeline.log_tail()
        time.sleep(0.05)
    assert run.client.xlen(stream) >= count, run.pipeline.log_tail()


@pytest.mark.parametrize("kafka_mode", [2], indirect=True, ids=["2_processes"])
def test_pipeline_processes_killed_mid_stream_lose_and_duplicate_nothing(
    kafka_mode: KafkaModeRun,
) -> None:
    writer = WorkloadWriter(
        kafka_mode.source_dsn,
        WorkloadConfig(seed=23, customers=20, agents=8, tickets=100, rate=10),
    )
    writer.seed_reference_data()
    client, stream = kafka_mode.client, f"{kafka_mode.key_prefix}:decisions"
    # The topics already hold tickets (the snapshot's, earlier tests'): once those are
    # decided the cluster is up and has caught up.
    with psycopg.connect(kafka_mode.source_dsn) as conn:
        earlier = [row[0] for row in conn.execute("SELECT id FROM tickets")]
    kafka_mode.wait_routed(earlier)
    created: list[int] = []
    load = threading.Thread(target=lambda: created.extend(writer.run().created_ticket_ids))
    load.start()
    try:
        # Kill every pipeline process once this test's tickets are being decided, while
        # the rest are still being written (10 s of writing in all).
        _wait_decisions(kafka_mode, client.xlen(stream) + 10, timeout=60)
        assert load.is_alive(), "the workload ended before the kill; the test proves less"
        kafka_mode.pipeline.kill()
        kafka_mode.pipeline.start()
    finally:
        load.join(timeout=120)
    assert len(created) == 100

    kafka_mode.wait_routed(created)
    kafka_mode.assert_facts_equal_source()
    kafka_mode.assert_no_duplicate_decisions(created)
    assert dead_letter_count(kafka_mode.analytics_dsn) == 0, kafka_mode.pipeline.log_tail()
