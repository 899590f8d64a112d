"""Reading the dead letters back (``triage dead-letters list``).

Every record a step could not process and every row a store refused is kept in the
analytics store's ``dead_letters`` table with its stage, the reason and the record (see
``sinks/dead_letters.py``). This lists them, newest first, and counts them per stage,
sends records that came from Kafka through the flow again once the cause is fixed, and
relays the stores' refusals to the dead-letter topic (the flow publishes its own there).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

COLUMNS = (
    "id",
    "stage",
    "reason",
    "topic",
    "key",
    "payload",
    "failed_at",
    "recorded_at",
    "replayed_at",
)


def list_dead_letters(
    dsn: str,
    *,
    stage: str | None = None,
    since: datetime | None = None,
    limit: int = 50,
    schema: str = "analytics",
) -> list[dict[str, Any]]:
    """The newest dead letters, optionally of one stage and failed at or after ``since``."""
    query = sql.SQL(
        "SELECT {cols} FROM {table}"
        " WHERE (%(stage)s::text IS NULL OR stage = %(stage)s)"
        " AND (%(since)s::timestamptz IS NULL OR failed_at >= %(since)s)"
        " ORDER BY failed_at DESC, id DESC LIMIT %(limit)s"
    ).format(
        cols=sql.SQL(", ").join(map(sql.Identifier, COLUMNS)),
        table=sql.Identifier(schema, "dead_letters"),
    )
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(query, {"stage": stage, "since": since, "limit": limit}).fetchall()
    return [dict(zip(COLUMNS, row, strict=True)) for row in rows]


def count_by_stage(dsn: str, *, schema: str = "analytics") -> dict[str, int]:
    """How many dead letters each stage has, most first."""
    query = sql.SQL(
        "SELECT stage, count(*) FROM {} GROUP BY stage ORDER BY count(*) DESC, stage"
    ).format(sql.Identifier(schema, "dead_letters"))
    with psycopg.connect(dsn) as conn:
        return {stage: count for stage, count in conn.execute(query).fetchall()}


@dataclass(frozen=True)
class ReplayResult:
    """What :func:`replay_kafka_dead_letters` did, by dead-letter id."""

    replayed: list[int]
    gone: list[int]  # the record is no longer in its topic (compacted or expired)


def replay_kafka_dead_letters(
    dsn: str,
    client_config: Mapping[str, str],
    *,
    stage: str | None = None,
    ids: list[int] | None = None,
    schema: str = "analytics",
    timeout: float = 10.0,
) -> ReplayResult:
    """Send dead-lettered Kafka records through the flow again, after a fix.

    Each pending dead letter with a Kafka coordinate (topic, partition, offset) has its
    original record read back from the topic and produced to the same topic and partition
    again, with its key, value and headers: the pipeline consumes it as a new message. The
    sinks keep only newer versions (the record's LSN), so a record older than what the
    stores hold changes nothing. Replayed dead letters get ``replayed_at``, so a second
    run skips them. Records of the embedded reader (an LSN, no Kafka coordinate) cannot be
    read back.

    Args:
        dsn: The analytics database.
        client_config: Kafka client properties: ``bootstrap.servers`` and security.
        stage: Only dead letters of this stage.
        ids: Only these dead letters.
        schema: Schema of ``dead_letters``.
        timeout: Seconds to wait for each record and for the deliveries.
    """
    from confluent_kafka import Consumer, Producer, TopicPartition

    table = sql.Identifier(schema, "dead_letters")
    query = sql.SQL(
        "SELECT id, kafka_topic, kafka_partition, kafka_offset FROM {} WHERE replayed_at IS NULL"
        " AND kafka_topic IS NOT NULL AND kafka_offset IS NOT NULL"
        " AND (%(stage)s::text IS NULL OR stage = %(stage)s)"
        " AND (%(ids)s::bigint[] IS NULL OR id = ANY(%(ids)s)) ORDER BY id"
    ).format(table)
    with psycopg.connect(dsn) as conn:
        pending = conn.execute(query, {"stage": stage, "ids": ids}).fetchall()
    replayed: list[int] = []
    gone: list[int] = []
    if not pending:
        return ReplayResult(replayed, gone)
    consumer = Consumer(
        {**client_config, "group.id": "triage-dead-letter-replay", "enable.auto.commit": False}
    )
    producer = Producer({**client_config, "enable.idempotence": True, "acks": "all"})
    failed: list[str] = []
    try:
        for letter_id, topic, partition, offset in pending:
            consumer.assign([TopicPartition(topic, partition, offset)])
            msg = consumer.poll(timeout)
            if msg is None or msg.error() is not None or msg.offset() != offset:
                gone.append(letter_id)
                continue
            producer.produce(
                topic,
                # The original's partition: Debezium (Java) and librdkafka hash keys
                # differently, and a key's records must stay on one partition, in order.
                partition=partition,
                key=msg.key(),
                value=msg.value(),
                headers=msg.headers(),
                on_delivery=lambda err, _m: failed.append(str(err)) if err else None,
            )
            replayed.append(letter_id)
        if producer.flush(timeout) or failed:
            raise RuntimeError(
                f"Kafka did not acknowledge every replayed record ({failed[:1] or 'timeout'}); "
                "nothing was marked replayed, run the replay again"
            )
    finally:
        consumer.close()
    with psycopg.connect(dsn) as conn:
        conn.execute(
            sql.SQL("UPDATE {} SET replayed_at = now() WHERE id = ANY(%s)").format(table),
            (replayed,),
        )
    return ReplayResult(replayed, gone)


REFUSAL_STAGES = ("write_analytics", "write_search", "write_live")
"""Stages of the dead letters that a store's sink wrote itself (not through the flow)."""


def publish_store_refusals(
    dsn: str,
    client_config: Mapping[str, str],
    topic: str,
    *,
    schema: str = "analytics",
    batch: int = 1000,
    timeout: float = 30.0,
) -> int:
    """Relay the rows the stores refused to the dead-letter topic; returns how many.

    The flow publishes its own dead letters to ``topic`` as it stores them; rows a store
    refused are dead-lettered inside that store's sink and reach only the table. This
    publishes those (stages :data:`REFUSAL_STAGES`) after the relay's cursor, in id
    order, as the flow does (:func:`sinks.kafka_alerts.dead_letter_to_message`), and
    moves the cursor only once Kafka acknowledged them: each row is published at least
    once, with a stable key. Run it again at any time.
    """
    from confluent_kafka import Producer

    from models.events import DeadLetter, SourcePosition
    from sinks.kafka_alerts import dead_letter_to_message

    relay = sql.Identifier(schema, "dead_letter_relay")
    letters = sql.Identifier(schema, "dead_letters")
    select = sql.SQL(
        "SELECT id, stage, reason, topic, key, payload, lsn, kafka_topic, kafka_partition,"
        " kafka_offset, failed_at FROM {} WHERE id > %s AND stage = ANY(%s)"
        " ORDER BY id LIMIT %s"
    ).format(letters)
    producer = Producer({**client_config, "enable.idempotence": True, "acks": "all"})
    published = 0
    failed: list[str] = []

    def delivered(err: Any, _msg: Any) -> None:
        if err is not None:
            failed.append(str(err))

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            sql.SQL("INSERT INTO {} (topic) VALUES (%s) ON CONFLICT DO NOTHING").format(relay),
            (topic,),
        )
        row = conn.execute(
            sql.SQL("SELECT last_id FROM {} WHERE topic = %s").format(relay), (topic,)
        ).fetchone()
        cursor = int(row[0]) if row else 0
        while True:
            rows = conn.execute(select, (cursor, list(REFUSAL_STAGES), batch)).fetchall()
            if not rows:
                return published
            failed: list[str] = []
            for _, stage, reason, source, key, payload, lsn, k_topic, k_part, k_off, at in rows:
                letter = DeadLetter(
                    stage, reason, source, key, payload,
                    SourcePosition(lsn=lsn, topic=k_topic, partition=k_part, offset=k_off),
                    at,
                )  # fmt: skip
                message_key, value = dead_letter_to_message(letter)
                producer.produce(
                    topic,
                    key=message_key,
                    value=value,
                    on_delivery=delivered,
                )
            if producer.flush(timeout) or failed:
                raise RuntimeError(
                    f"Kafka did not acknowledge every dead letter ({failed[:1] or 'timeout'});"
                    f" the relay stays at id {cursor}, run it again"
                )
            cursor = int(rows[-1][0])
            conn.execute(
                sql.SQL("UPDATE {} SET last_id = %s, updated_at = now() WHERE topic = %s").format(
                    relay
                ),
                (cursor, topic),
            )
            published += len(rows)
