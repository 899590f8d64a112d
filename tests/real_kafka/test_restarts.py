"""Kafka Connect killed and the broker restarted while the source keeps changing.

Runs after the other real-Kafka tests (it restarts the session's services). Delivery on
this path is at-least-once: after ``kill -9`` of the worker, changes since its last
offset flush are sent again, so every row must arrive at least once, none may be lost,
and the connector must resume from its stored offset instead of snapshotting again.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
from confluent_kafka import Message

from tests.real_kafka.conftest import (
    PREFIXES,
    SourceDb,
    TopicLog,
    register_all,
    value_json,
)
from triage.kafka_local import LocalKafka, LocalKafkaConnect

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
    return sum(1 for m in log.records if (value_json(m) or {}).get("op") == "r")


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


def test_connect_killed_mid_stream_resumes_from_its_offsets(
    kafka_connect: LocalKafkaConnect,
    debezium: SourceDb,
    topic_logs: dict[str, TopicLog],
    kafka_state: Path,
) -> None:
    label = f"connect-{uuid.uuid4().hex[:6]}"
    before = _insert_probes(debezium.dsn, label, ROWS_PER_PHASE)
    _assert_all_arrive(topic_logs, before)
    reads = {prefix: _snapshot_reads(topic_logs[prefix]) for prefix in PREFIXES}

    kafka_connect.kill()
    during = _insert_probes(debezium.dsn, label, ROWS_PER_PHASE)
    kafka_connect.start()
    # A standalone worker keeps connector configs in memory only: register again, as an
    # operator would after a restart. The offsets file makes it resume, not re-snapshot.
    register_all(kafka_connect.url, debezium, kafka_state)
    after = _insert_probes(debezium.dsn, label, ROWS_PER_PHASE)

    _assert_all_arrive(topic_logs, during + after)
    for prefix in PREFIXES:
        assert _snapshot_reads(topic_logs[prefix]) == reads[prefix], f"{prefix} re-snapshotted"


def test_broker_restart_mid_stream_loses_nothing(
    kafka_broker: LocalKafka,
    kafka_connect: LocalKafkaConnect,
    debezium: SourceDb,
    topic_logs: dict[str, TopicLog],
) -> None:
    label = f"broker-{uuid.uuid4().hex[:6]}"
    kafka_broker.stop()
    during = _insert_probes(debezium.dsn, label, ROWS_PER_PHASE)
    kafka_broker.start()
    after = _insert_probes(debezium.dsn, label, ROWS_PER_PHASE)

    # Connect's producer and the test's consumer reconnect on their own.
    _assert_all_arrive(topic_logs, during + after)
    assert kafka_connect.running()
