"""The Kafka alerts sink against librdkafka's mock cluster, alone and in the triage flow."""

from __future__ import annotations

import gc
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, TestingSource, cluster_main, run_main
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from models.anomaly import AnomalyAlert, Driver
from models.events import DeadLetter, RawChange, SourcePosition
from models.sla import SlaEvent
from pipelines.flow import build_flow
from pipelines.settings import PipelineSettings
from sinks.kafka_alerts import (
    AlertDeliveryError,
    AlertItem,
    KafkaAlertSink,
    KafkaDeadLetterSink,
    alert_to_message,
    dead_letter_to_message,
)
from tests.integration.conftest import MockKafkaCluster
from tests.sinks.test_kafka_alerts import breach_feed

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

ALERTS: list[AlertItem] = [
    AnomalyAlert(
        "volume:category=billing", T0, 42.0, 12.0, 6.5, [Driver("category", "billing", 30, 5, 6)]
    ),
    SlaEvent(10, "first_reply", "breach", T0, T0, "premium/urgent", 2700.0, 0.0, True),
    SlaEvent(10, "next_reply", "breach", T0 + timedelta(hours=3), T0, "premium/urgent", 1.0, 0.0),
    SlaEvent(11, "resolution", "breach", T0 + timedelta(hours=8), None, "standard/low", 9.0, 1.0),
]


def read_topic(bootstrap: str, topic: str, count: int, timeout_s: float = 30.0) -> list[Any]:
    """Every message of ``topic`` from the beginning, once ``count`` have arrived."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"{topic}-reader", "enable.auto.commit": False}
    )
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        messages: list[Any] = []
        deadline = time.monotonic() + timeout_s
        while len(messages) < count and time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is not None and msg.error() is None:
                messages.append(msg)
        # Anything beyond ``count`` would be a duplicate: give it a moment to show up.
        extra_until = time.monotonic() + 1.0
        while time.monotonic() < extra_until:
            msg = consumer.poll(0.2)
            if msg is not None and msg.error() is None:
                messages.append(msg)
        return messages
    finally:
        consumer.close()


def publish(alerts: list[AlertItem], sink: KafkaAlertSink, workers: int = 1) -> None:
    flow = Dataflow("publish_alerts_test")
    op.output("publish_alerts", op.input("alerts", flow, TestingSource(alerts)), sink)
    if workers == 1:
        run_main(flow)
    else:
        cluster_main(flow, [], 0, worker_count_per_proc=workers)


@pytest.fixture
def topic(unique: str) -> str:
    return f"t{unique}.alerts"


@pytest.mark.parametrize("workers", [1, 2])
def test_sink_delivers_exactly_the_alerts_with_their_keys(
    kafka_bootstrap: str, topic: str, workers: int
) -> None:
    publish(ALERTS, KafkaAlertSink([kafka_bootstrap], topic), workers=workers)

    messages = read_topic(kafka_bootstrap, topic, len(ALERTS))
    received = sorted((m.key(), m.value()) for m in messages)
    assert received == sorted(alert_to_message(a) for a in ALERTS)
    by_key = {m.key(): json.loads(m.value()) for m in messages}
    assert by_key[b"anomaly|volume:category=billing|2026-03-02T09:00:00Z"]["type"] == "anomaly"
    breach = by_key[b"sla_breach|10|first_reply|2026-03-02T09:00:00Z"]
    assert (breach["type"], breach["ticket_id"], breach["metric"]) == (
        "sla_breach",
        10,
        "first_reply",
    )


def test_replayed_alerts_repeat_their_keys_on_the_same_partition(
    kafka_bootstrap: str, topic: str
) -> None:
    # A restart replays the resumed epoch: the same alerts are produced again.
    publish(ALERTS, KafkaAlertSink([kafka_bootstrap], topic))
    publish(ALERTS, KafkaAlertSink([kafka_bootstrap], topic))

    messages = read_topic(kafka_bootstrap, topic, 2 * len(ALERTS))
    assert len(messages) == 2 * len(ALERTS)
    partitions: dict[bytes, set[int]] = {}
    for m in messages:
        partitions.setdefault(m.key(), set()).add(m.partition())
    assert sorted(partitions) == sorted(alert_to_message(a)[0] for a in ALERTS)
    assert all(len(p) == 1 for p in partitions.values())  # consumers dedupe per key


@pytest.fixture
def private_cluster() -> Iterator[MockKafkaCluster]:
    cluster = MockKafkaCluster()
    try:
        yield cluster
    finally:
        cluster.close()


def test_delivery_failure_fails_the_batch(private_cluster: MockKafkaCluster, topic: str) -> None:
    sink = KafkaAlertSink([private_cluster.bootstrap], topic, delivery_timeout=1.0)
    partition = sink.build("publish_alerts", 0, 1)
    partition.write_batch(ALERTS[:1])
    assert partition.delivered == 1

    # The mock cluster lives in its host handle: dropping the handle stops the broker.
    private_cluster.close()
    del private_cluster._host
    with pytest.raises(AlertDeliveryError, match="not delivered") as failure:
        partition.write_batch(ALERTS[1:])
    assert len(failure.value.errors) == len(ALERTS) - 1
    assert partition.delivered == 1
    # Destroy the producer now, or it keeps reconnecting to the dead port until exit.
    del partition, failure
    gc.collect()


def test_unreachable_brokers_fail_at_start_up_naming_the_setting() -> None:
    sink = KafkaAlertSink(["127.0.0.1:1"], connect_timeout=0.5)
    with pytest.raises(ConnectionError, match="TRIAGE_KAFKA__BROKERS"):
        sink.build("publish_alerts", 0, 1)


def test_triage_flow_publishes_sla_breaches_to_kafka(kafka_bootstrap: str, topic: str) -> None:
    analytics: list[Any] = []
    flow = build_flow(
        PipelineSettings(),
        source=TestingSource(breach_feed()),
        analytics_sink=TestingSink(analytics),
        decision_sink=TestingSink([]),
        alert_sink=KafkaAlertSink([kafka_bootstrap], topic),
    )
    run_main(flow)

    breaches = [x for x in analytics if isinstance(x, SlaEvent) and x.kind == "breach"]
    assert len(breaches) == 2
    messages = read_topic(kafka_bootstrap, topic, len(breaches))
    assert sorted((m.key(), m.value()) for m in messages) == sorted(
        alert_to_message(b) for b in breaches
    )
    docs = sorted((json.loads(m.value()) for m in messages), key=lambda d: d["metric"])
    assert [(d["type"], d["ticket_id"], d["metric"]) for d in docs] == [
        ("sla_breach", 10, "first_reply"),
        ("sla_breach", 10, "resolution"),
    ]


def test_flow_publishes_its_dead_letters_to_the_dead_letter_topic(
    kafka_bootstrap: str, unique: str
) -> None:
    topic = f"t{unique}.dead_letters"
    bad = [
        RawChange("triage.public.tickets", b'{"id": 7}', b"{not json", SourcePosition(lsn=101)),
        RawChange(
            "triage.public.tickets", b'{"id": 8}', b'{"payload": 3}', SourcePosition(lsn=102)
        ),
    ]
    analytics: list[Any] = []
    flow = build_flow(
        PipelineSettings(),
        source=TestingSource([*breach_feed(), *bad]),
        analytics_sink=TestingSink(analytics),
        decision_sink=TestingSink([]),
        dead_letter_sink=KafkaDeadLetterSink([kafka_bootstrap], topic),
    )
    run_main(flow)

    stored = [x for x in analytics if isinstance(x, DeadLetter)]
    assert {d.position.lsn for d in stored} == {101, 102}  # the store still gets them
    messages = read_topic(kafka_bootstrap, topic, len(stored))
    assert sorted((m.key(), m.value()) for m in messages) == sorted(
        dead_letter_to_message(d) for d in stored
    )
    docs = {json.loads(m.value())["position"]["lsn"]: json.loads(m.value()) for m in messages}
    assert docs[101]["payload"] == "{not json" and docs[101]["stage"] == "decode_cdc"
    assert docs[101]["reason"] and docs[102]["reason"]
    assert docs[101]["source_key"] == '{"id": 7}'
