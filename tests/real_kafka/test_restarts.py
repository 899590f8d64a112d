"""Kafka Connect killed and the broker restarted while the pipeline runs and the source
keeps changing.

Restarts the session's services (they are up again afterwards). Delivery into Kafka is
at-least-once: after ``kill -9`` of the worker, changes since its last offset flush are
sent again, so every row must arrive at least once and the connector must resume from
its stored offset instead of snapshotting again. The pipeline in Kafka mode reads through
both restarts; its stores must hold every ticket exactly as the source does, with one
decision per ticket version (the sinks are idempotent on the change's position).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
from confluent_kafka import Message

from evaluation.workload import WorkloadConfig, WorkloadWriter
from tests.real_kafka.conftest import (
    PREFIXES,
    KafkaModeRun,
    SourceDb,
    TopicLog,
    register_all,
    value_json,
    wait_decisions,
)
from triage.kafka_local import LocalKafka, LocalKafkaConnect
from triage.tools.report import dead_letter_count

pytestmark = pytest.mark.real_kafka

ROWS_PER_PHASE = 20


def _insert_probes(dsn: str, label: str, count: int) -> list[int]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return [
            int(row[0])
            for row in conn.execute(
                "INSERT INTO type_probe (label) SELECT %s || '-' || g"
                " FROM generate_series(1, %s) AS g RETURNING id",
                (label, count),
            ).fetchall()
        ]


def _creates_of(prefix: str, ids: set[int]) -> Callable[[Message], bool]:
    topic = f"{prefix}.public.type_probe"

    def matches(message: Message) -> bool:
        if message.topic() != topic:
            return False
        payload = value_json(message) or {}
        return payload.get("op") == "c" and (payload.get("after") or {}).get("id") in ids

    return matches


def _snapshot_reads(log: TopicLog) -> int:
    """Snapshot records in the topics, each counted once: after a broker restart the test's
    consumer (no committed offsets) may read everything again from the beginning, whereas
    a new snapshot would write new records."""
    return len(
        {
            (m.topic(), m.partition(), m.offset())
            for m in log.records
            if (value_json(m) or {}).get("op") == "r"
        }
    )


def _assert_all_arrive(logs: dict[str, TopicLog], ids: list[int]) -> None:
    """Every row's insert reaches both connectors' topics (redelivered ones may repeat)."""
    for prefix in PREFIXES:
        predicate = _creates_of(prefix, set(ids))
        deadline = time.monotonic() + 90
        found = logs[prefix].wait_for(predicate, count=len(ids), timeout=90)
        seen = {(value_json(m) or {})["after"]["id"] for m in found}
        # Duplicates count towards ``count``; keep reading until every id is there.
        while seen != set(ids) and time.monotonic() < deadline:
            remaining = max(deadline - time.monotonic(), 0.1)
            found = logs[prefix].wait_for(predicate, count=len(found) + 1, timeout=remaining)
            seen = {(value_json(m) or {})["after"]["id"] for m in found}
        assert seen == set(ids), f"{prefix}: missing {sorted(set(ids) - seen)}"


def test_connect_killed_and_broker_restarted_under_load_lose_and_duplicate_nothing(
    kafka_mode: KafkaModeRun,
    kafka_broker: LocalKafka,
    kafka_connect: LocalKafkaConnect,
    debezium: SourceDb,
    topic_logs: dict[str, TopicLog],
    kafka_state: Path,
) -> None:
    label = f"restart-{uuid.uuid4().hex[:6]}"
    before = _insert_probes(debezium.dsn, label, ROWS_PER_PHASE)
    _assert_all_arrive(topic_logs, before)
    reads = {prefix: _snapshot_reads(topic_logs[prefix]) for prefix in PREFIXES}
    # Tickets (and agents' replies and status changes) until the restarts are over.
    writer = WorkloadWriter(
        debezium.dsn, WorkloadConfig(seed=31, customers=20, agents=8, tickets=None, rate=6)
    )
    writer.seed_reference_data()
    # The topics already hold tickets (the snapshot's, earlier tests'): once those are
    # decided the pipeline is up and has caught up.
    with psycopg.connect(debezium.dsn) as conn:
        earlier = [row[0] for row in conn.execute("SELECT id FROM tickets")]
    kafka_mode.wait_routed(earlier)
    stream = f"{kafka_mode.key_prefix}:decisions"
    created: list[int] = []
    stop = threading.Event()
    load = threading.Thread(
        target=lambda: created.extend(writer.run(stop_event=stop).created_ticket_ids)
    )
    load.start()
    try:
        wait_decisions(kafka_mode, kafka_mode.client.xlen(stream) + 5, timeout=60)
        kafka_broker.stop()
        during_broker = _insert_probes(debezium.dsn, label, ROWS_PER_PHASE)
        kafka_broker.start()

        # Connect's producer and the pipeline's consumers reconnect on their own.
        kafka_connect.kill()
        during_connect = _insert_probes(debezium.dsn, label, ROWS_PER_PHASE)
        kafka_connect.start()
        # A standalone worker keeps connector configs in memory only: register again, as
        # an operator would after a restart. The offsets file makes it resume.
        register_all(kafka_connect.url, debezium, kafka_state)
        after = _insert_probes(debezium.dsn, label, ROWS_PER_PHASE)
        assert kafka_mode.pipeline.alive(), kafka_mode.pipeline.log_tail()
        assert load.is_alive(), "the workload stopped writing during the restarts"
    finally:
        stop.set()
        load.join(timeout=60)
    assert len(created) >= 20, created

    _assert_all_arrive(topic_logs, during_broker + during_connect + after)
    for prefix in PREFIXES:
        assert _snapshot_reads(topic_logs[prefix]) == reads[prefix], f"{prefix} re-snapshotted"
    assert kafka_connect.running()
    kafka_mode.wait_routed(created, timeout=240)
    kafka_mode.assert_facts_equal_source(timeout=120)
    kafka_mode.assert_no_duplicate_decisions(created)
    assert dead_letter_count(kafka_mode.analytics_dsn) == 0, kafka_mode.pipeline.log_tail()
