"""The decoder against what real Debezium writes to a real Kafka broker.

Every test changes the source database with values of its own and waits for the records
both connectors (JSON without schemas, and with schemas) produce, then decodes them with
:func:`connectors.debezium.decode_record` exactly as the pipeline's Kafka path does.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from confluent_kafka import Message

from connectors.debezium import (
    SKIPPED_RECORDS,
    SkippedRecord,
    decode_change_event,
    decode_key,
    decode_record,
)
from models.events import ChangeEvent
from models.helpdesk import (
    UNAVAILABLE,
    Agent,
    Ticket,
    WorkOutcome,
    parse_json,
    parse_timestamp,
)
from tests.real_kafka.conftest import (
    PREFIXES,
    SCHEMA_PREFIX,
    SourceDb,
    TopicLog,
    raw_change,
    toast_text,
    value_json,
)

pytestmark = pytest.mark.real_kafka


def _row_change(prefix: str, table: str, row_id: int, op: str) -> Callable[[Message], bool]:
    topic = f"{prefix}.public.{table}"

    def matches(message: Message) -> bool:
        if message.topic() != topic:
            return False
        payload = value_json(message)
        if payload is None or payload.get("op") != op:
            return False
        row = payload.get("after") or payload.get("before") or {}
        return row.get("id") == row_id

    return matches


def _decoded(message: Message) -> ChangeEvent:
    event = decode_record(raw_change(message))
    assert isinstance(event, ChangeEvent), event
    return event


def _one(log: TopicLog, predicate: Callable[[Message], bool]) -> ChangeEvent:
    [message] = log.wait_for(predicate)
    return _decoded(message)


def _execute(dsn: str, query: str, params: tuple[Any, ...] = ()) -> Any:
    """Run one statement in its own transaction; returns the first column of its row."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        cursor = conn.execute(query, params)  # type: ignore[arg-type]
        row = cursor.fetchone() if cursor.description else None
    return row[0] if row else None


@pytest.mark.parametrize("prefix", PREFIXES)
def test_rows_present_before_the_connector_started_arrive_as_snapshot_reads(
    prefix: str, topic_logs: dict[str, TopicLog], debezium: SourceDb
) -> None:
    log = topic_logs[prefix]
    for table, row_id in debezium.snapshot_ids.items():
        event = _one(log, _row_change(prefix, table, row_id, "r"))
        assert (event.table, event.op, event.key, event.snapshot) == (
            table,
            "r",
            {"id": row_id},
            True,
        )
        assert event.after is not None and event.after["id"] == row_id
        assert event.version > 0 and event.position.topic == f"{prefix}.public.{table}"
    markers = [
        (value_json(m) or {})["source"]["snapshot"]
        for m in log.records
        if (value_json(m) or {}).get("op") == "r"
    ]
    # Debezium marks the snapshot's last record (records of different topics arrive in no
    # fixed order, so only its presence is checked).
    assert markers.count("last") == 1, markers


@pytest.mark.parametrize("prefix", PREFIXES)
def test_every_column_type_of_an_insert_update_and_delete_decodes(
    prefix: str, topic_logs: dict[str, TopicLog], debezium: SourceDb
) -> None:
    log = topic_logs[prefix]
    label = f"types-{prefix}-{uuid.uuid4().hex[:6]}"
    payload = {"nested": {"a": [1, 2]}, "s": "grüße", "n": None}
    probe_id = _execute(
        debezium.dsn,
        "INSERT INTO type_probe (label, amount, ratio, mood, moods, tags, scores, payload,"
        " flag, small, at, note) VALUES (%s, 12345.67, 3.14159265358979, 'angry',"
        " ARRAY['calm', 'delighted']::probe_mood[], ARRAY['x', 'y z'], ARRAY[1, 2, 3], %s,"
        " true, 7, '2026-03-02 10:15:30.123456+02', 'hello') RETURNING id",
        (label, json.dumps(payload)),
    )
    created = _one(log, _row_change(prefix, "type_probe", probe_id, "c"))
    after = created.after
    assert after is not None
    assert created.key == {"id": probe_id} and not created.snapshot
    # decimal.handling.mode=string: numerics stay exact strings, with and without schemas.
    assert (after["amount"], after["ratio"]) == ("12345.67", "3.14159265358979")
    assert (after["mood"], after["moods"]) == ("angry", ["calm", "delighted"])
    assert (after["tags"], after["scores"]) == (["x", "y z"], [1, 2, 3])
    assert parse_json(after["payload"]) == payload
    assert parse_timestamp(after["at"]) == datetime(2026, 3, 2, 8, 15, 30, 123456, tzinfo=UTC)
    assert (after["flag"], after["small"], after["note"], after["label"]) == (
        True,
        7,
        "hello",
        label,
    )
    if prefix == SCHEMA_PREFIX:
        # The schema lets the decoder restore the Python types itself.
        assert isinstance(after["at"], datetime) and isinstance(after["payload"], dict)
    else:
        assert isinstance(after["at"], str) and isinstance(after["payload"], str)
    assert created.committed_at.tzinfo is not None

    _execute(
        debezium.dsn,
        "UPDATE type_probe SET amount = amount + 1, mood = 'delighted', tags = NULL"
        " WHERE id = %s RETURNING id",
        (probe_id,),
    )
    updated = _one(log, _row_change(prefix, "type_probe", probe_id, "u"))
    assert updated.after is not None
    assert (updated.after["amount"], updated.after["mood"], updated.after["tags"]) == (
        "12346.67",
        "delighted",
        None,
    )
    assert updated.version > created.version

    _execute(debezium.dsn, "DELETE FROM type_probe WHERE id = %s RETURNING id", (probe_id,))
    deleted = _one(log, _row_change(prefix, "type_probe", probe_id, "d"))
    assert deleted.after is None and deleted.before is not None
    assert deleted.key == {"id": probe_id} and deleted.version > updated.version
    # tombstones.on.delete: a null value with the row's key follows the delete.
    [tombstone] = log.wait_for(
        lambda m: (
            m.topic() == f"{prefix}.public.type_probe"
            and m.value() is None
            and decode_key(m.key()) == {"id": probe_id}
        )
    )
    assert decode_record(raw_change(tombstone)) == SkippedRecord("tombstone")


@pytest.mark.parametrize("prefix", PREFIXES)
def test_helpdesk_rows_parse_into_domain_entities(
    prefix: str, topic_logs: dict[str, TopicLog], debezium: SourceDb
) -> None:
    log = topic_logs[prefix]
    agent_id = _execute(
        debezium.dsn,
        "INSERT INTO agents (name, email, team, skills, languages, capacity)"
        " VALUES ('Bo', 'bo@example.com', 'technical', '{\"technical\": 0.75, \"billing\": 0.5}',"
        " ARRAY['en', 'fr'], 4) RETURNING id",
    )
    ticket_id = _execute(
        debezium.dsn,
        "INSERT INTO tickets (customer_id, subject, description, channel, priority)"
        " VALUES (%s, 'Card declined', 'twice today', 'chat', 'high') RETURNING id",
        (debezium.snapshot_ids["customers"],),
    )
    created_at = _execute(
        debezium.dsn, "SELECT created_at FROM tickets WHERE id = %s", (ticket_id,)
    )

    agent = Agent.from_row(_one(log, _row_change(prefix, "agents", agent_id, "c")).after or {})
    assert (agent.team, dict(agent.skills), agent.languages, agent.capacity) == (
        "technical",
        {"technical": 0.75, "billing": 0.5},
        ("en", "fr"),
        4,
    )
    ticket = Ticket.from_row(_one(log, _row_change(prefix, "tickets", ticket_id, "c")).after or {})
    assert (ticket.subject, ticket.channel, ticket.priority, ticket.status) == (
        "Card declined",
        "chat",
        "high",
        "new",
    )
    assert ticket.created_at == created_at

    # REPLICA IDENTITY FULL on tickets: the update carries the complete previous row.
    _execute(
        debezium.dsn,
        "UPDATE tickets SET status = 'open', assigned_agent_id = %s WHERE id = %s RETURNING id",
        (agent_id, ticket_id),
    )
    update = _one(log, _row_change(prefix, "tickets", ticket_id, "u"))
    assert update.before is not None and update.after is not None
    assert (update.before["status"], update.after["status"]) == ("new", "open")
    assert update.after["assigned_agent_id"] == agent_id


@pytest.mark.parametrize("prefix", PREFIXES)
def test_unchanged_toasted_column_arrives_as_unavailable(
    prefix: str, topic_logs: dict[str, TopicLog], debezium: SourceDb
) -> None:
    log = topic_logs[prefix]
    body = toast_text(f"toast-{prefix}")
    article_id = _execute(
        debezium.dsn,
        "INSERT INTO kb_articles (title, body) VALUES ('Before', %s) RETURNING id",
        (body,),
    )
    inserted = _one(log, _row_change(prefix, "kb_articles", article_id, "c"))
    assert inserted.after is not None and inserted.after["body"] == body

    _execute(
        debezium.dsn,
        "UPDATE kb_articles SET title = 'After' WHERE id = %s RETURNING id",
        (article_id,),
    )
    updated = _one(log, _row_change(prefix, "kb_articles", article_id, "u"))
    assert updated.after is not None
    assert updated.after["title"] == "After"
    # kb_articles has REPLICA IDENTITY DEFAULT: PostgreSQL does not log the unchanged
    # out-of-line body, and Debezium says so with its placeholder.
    assert updated.after["body"] == UNAVAILABLE


def test_truncate_arrives_as_a_table_event(
    topic_logs: dict[str, TopicLog], debezium: SourceDb
) -> None:
    # One truncate for both connectors: the only one of the session, so each topic's
    # first truncate record is this one.
    _execute(debezium.dsn, "INSERT INTO type_probe (label) VALUES ('to be truncated')")
    _execute(debezium.dsn, "TRUNCATE type_probe")
    for prefix in PREFIXES:
        [message] = topic_logs[prefix].wait_for(
            lambda m, p=prefix: (
                m.topic() == f"{p}.public.type_probe" and (value_json(m) or {}).get("op") == "t"
            )
        )
        event = _decoded(message)
        assert (event.table, event.op, event.key, event.before, event.after) == (
            "type_probe",
            "t",
            {},
            None,
            None,
        )
        assert not event.snapshot and event.version > 0


@pytest.mark.parametrize("prefix", PREFIXES)
def test_logical_decoding_messages_and_heartbeats_are_skipped_and_counted(
    prefix: str, topic_logs: dict[str, TopicLog], debezium: SourceDb
) -> None:
    log = topic_logs[prefix]
    token = uuid.uuid4().hex[:6]
    with psycopg.connect(debezium.dsn) as conn:
        # A transactional message travels with its transaction's row changes.
        conn.execute("SELECT pg_logical_emit_message(true, %s, 'inside')", (f"tx-{token}",))
        conn.execute("INSERT INTO type_probe (label) VALUES (%s)", (f"msg-{token}",))
    _execute(
        debezium.dsn, "SELECT pg_logical_emit_message(false, %s, 'outside')", (f"nontx-{token}",)
    )

    message_topic = f"{prefix}.message"
    for message_prefix in (f"tx-{token}", f"nontx-{token}"):
        [record] = log.wait_for(
            lambda m, p=message_prefix: (
                m.topic() == message_topic
                and ((value_json(m) or {}).get("message") or {}).get("prefix") == p
            )
        )
        raw = raw_change(record)
        assert decode_record(raw) == SkippedRecord("message", message_prefix)
        before = SKIPPED_RECORDS["message"]
        assert decode_change_event(raw) is None
        assert SKIPPED_RECORDS["message"] == before + 1

    # The connector's heartbeat action query writes a message of its own...
    [action] = log.wait_for(
        lambda m: (
            m.topic() == message_topic
            and ((value_json(m) or {}).get("message") or {}).get("prefix") == "triage-heartbeat"
        )
    )[:1]
    assert decode_record(raw_change(action)) == SkippedRecord("message", "triage-heartbeat")
    # ...and Debezium's own heartbeats go to their topic.
    heartbeats = log.wait_for(lambda m: m.topic() == f"__debezium-heartbeat.{prefix}", count=2)
    for heartbeat in heartbeats:
        assert decode_record(raw_change(heartbeat)) == SkippedRecord("heartbeat")


@pytest.mark.parametrize("prefix", PREFIXES)
def test_every_record_the_connector_wrote_decodes(
    prefix: str, topic_logs: dict[str, TopicLog], debezium: SourceDb
) -> None:
    """Runs last: nothing Debezium produced during the session is a decode error."""
    log = topic_logs[prefix]
    marker = f"final-{prefix}-{uuid.uuid4().hex[:6]}"
    probe_id = _execute(
        debezium.dsn, "INSERT INTO type_probe (label) VALUES (%s) RETURNING id", (marker,)
    )
    log.wait_for(_row_change(prefix, "type_probe", probe_id, "c"))
    kinds: Counter[str] = Counter()
    for message in log.records:
        decoded = decode_record(raw_change(message))  # raises DecodeError on anything bad
        kinds[decoded.kind if isinstance(decoded, SkippedRecord) else decoded.op] += 1
    assert {"r", "c", "u", "d", "t", "tombstone", "message", "heartbeat"} <= set(kinds), kinds


@pytest.mark.parametrize("prefix", PREFIXES)
def test_a_work_outcome_row_reads_as_the_router_s_outcome(
    prefix: str, topic_logs: dict[str, TopicLog], debezium: SourceDb
) -> None:
    # Debezium's encodings of the outcome columns: bigint, double precision, NULL and
    # timestamptz (an ISO string).
    outcome_id = _execute(
        debezium.dsn,
        "INSERT INTO work_outcomes (ticket_id, agent_id, queue, handling_seconds, quality,"
        " completed_at) VALUES (41, 7, 'calls', 184.25, 0.8, '2026-03-02 09:15:00+00')"
        " RETURNING id",
    )
    event = _one(topic_logs[prefix], _row_change(prefix, "work_outcomes", outcome_id, "c"))
    assert event.after is not None
    outcome = WorkOutcome.from_row(event.after)
    assert (outcome.ticket_id, outcome.agent_id, outcome.queue, outcome.work_type) == (
        41,
        7,
        "calls",
        "",
    )
    assert outcome.handling_seconds == 184.25 and outcome.wait_seconds is None
    assert outcome.quality == 0.8
    assert outcome.completed_at == datetime(2026, 3, 2, 9, 15, tzinfo=UTC)
