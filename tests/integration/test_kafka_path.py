"""The Kafka inbound path against librdkafka's mock cluster, through a real Bytewax flow."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import bytewax.operators as op
import pytest
from bytewax.connectors.kafka import KafkaError, KafkaSourceMessage
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, cluster_main, run_main
from confluent_kafka import KafkaError as ConfluentKafkaError

from connectors.debezium import DecodeError, decode_change_event
from connectors.kafka import (
    KafkaSettings,
    cdc_topics,
    kafka_error_to_dead_letter,
    read_cdc,
    to_raw_change,
)
from models.events import ChangeEvent, DeadLetter, RawChange, SourcePosition

if TYPE_CHECKING:
    from tests.integration.conftest import CdcProducer

pytestmark = pytest.mark.integration

TS_MS = 1_714_564_800_000
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


@dataclass
class FlowResult:
    events: list[ChangeEvent] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    tombstones: list[RawChange] = field(default_factory=list)


def _decode_or_dead_letter(raw: RawChange) -> tuple[str, Any]:
    try:
        event = decode_change_event(raw)
    except DecodeError as exc:
        letter = DeadLetter(
            stage="decode_cdc",
            reason=str(exc),
            topic=raw.topic,
            key=None if raw.key is None else raw.key.decode(errors="replace"),
            payload=None if raw.value is None else raw.value.decode(errors="replace"),
            position=raw.position,
            failed_at=datetime.now(UTC),
        )
        return ("dead", letter)
    return ("tombstone", raw) if event is None else ("event", event)


def _build_flow(settings: KafkaSettings, result: FlowResult) -> Dataflow:
    flow = Dataflow("kafka_cdc_test")
    changes = read_cdc("read_cdc", flow, settings)
    outcomes = op.map("decode_cdc", changes.oks, _decode_or_dead_letter)
    events = op.filter_map("keep_events", outcomes, lambda o: o[1] if o[0] == "event" else None)
    dead = op.filter_map("keep_dead", outcomes, lambda o: o[1] if o[0] == "dead" else None)
    tombs = op.filter_map("keep_tombs", outcomes, lambda o: o[1] if o[0] == "tombstone" else None)
    all_dead = op.merge("all_dead", dead, changes.errs)
    op.output("collect_events", events, TestingSink(result.events))
    op.output("collect_dead", all_dead, TestingSink(result.dead_letters))
    op.output("collect_tombstones", tombs, TestingSink(result.tombstones))
    return flow


def _produce_helpdesk_changes(producer: CdcProducer) -> None:
    """Schemas-enabled and schemaless changes, a tombstone, a truncate and a bad record."""
    customer = {"id": 1, "name": "Acme", "tier": "premium", "created_at": T0}
    producer.change(
        "customers", "r", lsn=100, ts_ms=TS_MS, after=customer, schemas=True, snapshot="last"
    )
    agent = {"id": 7, "team": "billing", "skills": {"billing": 0.9}, "languages": ["en", "de"]}
    producer.change("agents", "c", lsn=110, ts_ms=TS_MS + 1, after=agent, schemas=True, tx_id=5)

    ticket = {"id": 10, "subject": "Refund", "status": "new", "created_at": "2024-05-01T12:00Z"}
    updated = {**ticket, "status": "open"}
    producer.change("tickets", "c", lsn=200, ts_ms=TS_MS + 2, after=ticket, tx_id=6)
    producer.change("tickets", "u", lsn=210, ts_ms=TS_MS + 3, before=ticket, after=updated)
    producer.change("tickets", "d", lsn=220, ts_ms=TS_MS + 4, before=updated)
    producer.tombstone("tickets", {"id": 10})
    producer.raw("tickets", b'{"id": 12}', b'{"op": "c", "after": {"id": 12')
    producer.change("ticket_events", "t", lsn=300, ts_ms=TS_MS + 5)
    producer.flush()


def _settings(producer: CdcProducer, bootstrap: str) -> KafkaSettings:
    return KafkaSettings(
        brokers=[bootstrap],
        topic_prefix=producer.topic_prefix,
        tables=["customers", "agents", "tickets", "ticket_events"],
        tail=False,
        batch_size=100,
    )


def _check(result: FlowResult, producer: CdcProducer) -> None:
    by_version = {event.version: event for event in result.events}
    assert sorted(by_version) == [100, 110, 200, 210, 220, 300]
    assert len(result.events) == 6

    customer = by_version[100]
    assert (customer.table, customer.op, customer.key) == ("customers", "r", {"id": 1})
    assert customer.snapshot is True
    assert customer.after is not None
    assert customer.after["created_at"] == T0  # schema says MicroTimestamp

    agent = by_version[110]
    assert (agent.table, agent.op, agent.key, agent.txid) == ("agents", "c", {"id": 7}, 5)
    assert agent.after is not None
    assert agent.after["skills"] == {"billing": 0.9}
    assert agent.after["languages"] == ["en", "de"]

    assert [by_version[v].op for v in (200, 210, 220)] == ["c", "u", "d"]
    assert all(by_version[v].key == {"id": 10} for v in (200, 210, 220))
    assert by_version[210].after == {
        "id": 10,
        "subject": "Refund",
        "status": "open",
        "created_at": "2024-05-01T12:00Z",  # schemaless: left as delivered
    }
    assert by_version[220].after is None
    assert by_version[200].committed_at == T0 + timedelta(milliseconds=2)

    truncate = by_version[300]
    assert (truncate.table, truncate.op, truncate.key) == ("ticket_events", "t", {})

    for event in result.events:
        position = event.position
        assert position.topic == producer.topic(event.table)
        assert position.partition is not None and 0 <= position.partition < 4
        assert position.offset is not None and position.offset >= 0

    # Ticket 10's changes share a key, hence a partition, hence their order.
    ticket_offsets = [by_version[v].position.offset or 0 for v in (200, 210, 220)]
    assert ticket_offsets == sorted(ticket_offsets)

    assert len(result.tombstones) == 1
    assert result.tombstones[0].key == b'{"id": 10}'

    assert len(result.dead_letters) == 1
    letter = result.dead_letters[0]
    assert letter.stage == "decode_cdc"
    assert "not valid JSON" in letter.reason
    assert letter.topic == producer.topic("tickets")
    assert letter.key == '{"id": 12}'
    assert letter.position.offset is not None


def test_kafka_cdc_flow_decodes_every_record(
    cdc_producer: CdcProducer, kafka_bootstrap: str
) -> None:
    _produce_helpdesk_changes(cdc_producer)
    result = FlowResult()
    run_main(_build_flow(_settings(cdc_producer, kafka_bootstrap), result))
    _check(result, cdc_producer)


def test_kafka_source_reports_changes_per_table(
    cdc_producer: CdcProducer, kafka_bootstrap: str
) -> None:
    from prometheus_client import CollectorRegistry

    from models.telemetry import install_telemetry
    from pipelines.metrics import PrometheusTelemetry

    registry = CollectorRegistry()
    previous = install_telemetry(PrometheusTelemetry(registry))
    try:
        _produce_helpdesk_changes(cdc_producer)
        run_main(_build_flow(_settings(cdc_producer, kafka_bootstrap), FlowResult()))
    finally:
        install_telemetry(previous)

    def read(table: str) -> float | None:
        return registry.get_sample_value("triage_source_changes_total", {"table": table})

    # Every message counts, tombstones and undecodable ones included.
    assert (read("customers"), read("agents"), read("tickets"), read("ticket_events")) == (
        1.0,
        1.0,
        5.0,
        1.0,
    )
    assert registry.get_sample_value("triage_source_lag_seconds") is not None


def test_kafka_cdc_flow_with_two_workers_gives_the_same_result(
    cdc_producer: CdcProducer, kafka_bootstrap: str
) -> None:
    _produce_helpdesk_changes(cdc_producer)
    result = FlowResult()
    flow = _build_flow(_settings(cdc_producer, kafka_bootstrap), result)
    cluster_main(flow, [], 0, worker_count_per_proc=2)
    _check(result, cdc_producer)


# ------------------------------------------------------------- pure helpers, no cluster


def test_cdc_topics_follow_debezium_naming() -> None:
    settings = KafkaSettings(brokers=["localhost:9092"])
    assert cdc_topics(settings) == [
        "triage.public.customers",
        "triage.public.agents",
        "triage.public.tickets",
        "triage.public.ticket_events",
        "triage.public.kb_articles",
        "triage.public.work_outcomes",
    ]


def test_settings_reject_a_broker_without_port() -> None:
    with pytest.raises(ValueError, match="not host:port"):
        KafkaSettings(brokers=["localhost"])


def test_to_raw_change_keeps_coordinates() -> None:
    msg: KafkaSourceMessage[bytes | None, bytes | None] = KafkaSourceMessage(
        key=b"k", value=b"v", topic="triage.public.tickets", partition=3, offset=42
    )
    assert to_raw_change(msg) == RawChange(
        topic="triage.public.tickets",
        key=b"k",
        value=b"v",
        position=SourcePosition(topic="triage.public.tickets", partition=3, offset=42),
    )


def test_kafka_error_becomes_a_dead_letter() -> None:
    msg: KafkaSourceMessage[bytes | None, bytes | None] = KafkaSourceMessage(
        key=None, value=b"\xff payload", topic="triage.public.tickets", partition=1, offset=9
    )
    error = ConfluentKafkaError(ConfluentKafkaError._MSG_TIMED_OUT, "broker went away")
    letter = kafka_error_to_dead_letter(KafkaError(error, msg), now=T0)
    assert letter.stage == "kafka_source"
    assert "broker went away" in letter.reason
    assert "_MSG_TIMED_OUT" in letter.reason
    assert letter.key is None
    assert letter.payload == "\\xff payload"
    assert letter.position == SourcePosition(topic="triage.public.tickets", partition=1, offset=9)
    assert letter.failed_at == T0
