"""``triage dead-letters replay``: dead-lettered Kafka records go through the flow again
after a fix (librdkafka mock cluster and real PostgreSQL)."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from models.events import DeadLetter, SourcePosition
from sinks.migrations import apply_migrations
from sinks.postgres import DeadLetterWriter
from sinks.retry import RetryPolicy
from tests.integration.test_postgres_sink import T0
from triage.jobs.dead_letters import list_dead_letters, replay_kafka_dead_letters

pytestmark = pytest.mark.integration

ANALYTICS_SQL = Path(__file__).resolve().parents[2] / "sql" / "analytics"


def letter(topic: str, offset: int) -> DeadLetter:
    return DeadLetter(
        stage="decode_cdc",
        reason="not JSON",
        topic=topic,
        key='{"id":1}',
        payload="{bad",
        position=SourcePosition(topic=topic, partition=0, offset=offset),
        failed_at=T0,
    )


def read_all(bootstrap: str, topic: str) -> list[tuple[int, bytes | None, bytes | None, object]]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "t", "log_level": 0})
    consumer.assign([TopicPartition(topic, 0, 0)])
    found = []
    try:
        while (msg := consumer.poll(3.0)) is not None:
            if msg.error() is None:
                found.append((msg.offset(), msg.key(), msg.value(), msg.headers()))
    finally:
        consumer.close()
    return found


def test_replay_produces_the_original_record_again_once(
    pg_dsn: str, kafka_bootstrap: str, unique: str
) -> None:
    apply_migrations(pg_dsn, ANALYTICS_SQL)
    topic = f"rp{unique}.public.tickets"
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    producer.produce(topic, key=b'{"id":1}', value=b"{bad", partition=0, headers=[("h", b"1")])
    assert producer.flush(10) == 0
    (original,) = read_all(kafka_bootstrap, topic)
    writer = DeadLetterWriter(pg_dsn, retry=RetryPolicy(max_retries=2))
    try:
        writer.write([letter(topic, original[0]), letter(topic, 999)])  # 999: not in Kafka
    finally:
        writer.close()
    ids = sorted(d["id"] for d in list_dead_letters(pg_dsn))

    config = {"bootstrap.servers": kafka_bootstrap}
    result = replay_kafka_dead_letters(pg_dsn, config, stage="decode_cdc", timeout=3)
    assert (result.replayed, result.gone) == ([ids[0]], [ids[1]])
    records = read_all(kafka_bootstrap, topic)
    assert len(records) == 2
    assert records[1][1:] == original[1:]  # same key, value and headers, at a new offset
    with psycopg.connect(pg_dsn) as conn:
        marked = conn.execute(
            "SELECT id FROM analytics.dead_letters WHERE replayed_at IS NOT NULL"
        ).fetchall()
    assert marked == [(ids[0],)]

    # Done once: a second run sends nothing again.
    again = replay_kafka_dead_letters(pg_dsn, config, timeout=3)
    assert again.replayed == []
    assert len(read_all(kafka_bootstrap, topic)) == 2


def test_store_refusals_are_relayed_to_the_dead_letter_topic_once(
    pg_dsn: str, kafka_bootstrap: str, unique: str
) -> None:
    """Rows a store refused reach the dead-letter topic through the relay, each once; the
    flow's own dead letters (published by its sink) are not sent again."""
    import json

    from triage.jobs.dead_letters import publish_store_refusals

    apply_migrations(pg_dsn, ANALYTICS_SQL)
    topic = f"dl{unique}"
    refused = [
        DeadLetter("write_analytics", "value too long", "EnrichedTicket", "7@10", "x",
                   SourcePosition(), T0),
        DeadLetter("write_live", "redis: assignment without an agent", "RoutingDecision",
                   "8@11", "y", SourcePosition(), T0),
    ]  # fmt: skip
    writer = DeadLetterWriter(pg_dsn, retry=RetryPolicy(max_retries=2))
    try:
        writer.write([letter(f"src{unique}", 5), *refused])  # decode_cdc: the flow's own
    finally:
        writer.close()
    config = {"bootstrap.servers": kafka_bootstrap}

    def topic_messages() -> list[tuple[bytes, dict]]:  # type: ignore[type-arg]
        consumer = Consumer({**config, "group.id": "t", "log_level": 0})
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        found = []
        try:
            while (msg := consumer.poll(3.0)) is not None:
                if msg.error() is None:
                    found.append((msg.key(), json.loads(msg.value())))
        finally:
            consumer.close()
        return sorted(found, key=lambda kv: kv[0])

    assert publish_store_refusals(pg_dsn, config, topic, timeout=5) == 2
    messages = topic_messages()
    assert [(key, v["stage"], v["reason"]) for key, v in messages] == [
        (b"write_analytics|EnrichedTicket|key:7@10", "write_analytics", "value too long"),
        (
            b"write_live|RoutingDecision|key:8@11",
            "write_live",
            "redis: assignment without an agent",
        ),
    ]
    # Its place is kept: nothing again, and only a new refusal next time.
    assert publish_store_refusals(pg_dsn, config, topic, timeout=5) == 0
    writer = DeadLetterWriter(pg_dsn, retry=RetryPolicy(max_retries=2))
    try:
        writer.write([DeadLetter("write_search", "mapping", "SearchDocument", "9", "z",
                                 SourcePosition(), T0)])  # fmt: skip
    finally:
        writer.close()
    assert publish_store_refusals(pg_dsn, config, topic, timeout=5) == 1
    assert len(topic_messages()) == 3
