"""Topics are created with their cleanup policies on a real broker (``triage kafka
create-topics``, the compose stack's ``kafka-topics`` service, and local runs)."""

from __future__ import annotations

import json
import uuid

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic
from typer.testing import CliRunner

from connectors.kafka import KafkaSettings, cdc_topics, ensure_topic_specs
from connectors.kafka_config import topic_specs
from triage.cli import app
from triage.kafka_local import LocalKafka, ensure_topics
from triage.services import ServiceError, wait_until

pytestmark = pytest.mark.real_kafka


def topic_config(bootstrap: str, topic: str) -> dict[str, str]:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    entries = admin.describe_configs([resource])[resource].result(timeout=30)
    return {name: entry.value for name, entry in entries.items()}


def compacted(bootstrap: str, topic: str) -> bool:
    """Whether the topic is compacted and kept forever, once the broker applied a change
    (an altered configuration reaches the broker through the metadata log, not at once)."""

    def applied() -> bool:
        settings = topic_config(bootstrap, topic)
        return settings["cleanup.policy"] == "compact" and settings["retention.ms"] == "-1"

    try:
        wait_until(applied, timeout=15, what=f"configuration of {topic}")
    except ServiceError:
        return False
    return True


def test_cdc_and_alert_topics_are_compacted_and_existing_ones_reconfigured(
    kafka_broker: LocalKafka,
) -> None:
    prefix = f"tp{uuid.uuid4().hex[:8]}"
    cdc = cdc_topics(KafkaSettings(topic_prefix=prefix))
    specs = topic_specs(cdc, alerts_topic=f"{prefix}.alerts", partitions=2)
    # Debezium got there first with the broker's defaults (delete after 7 days).
    admin = AdminClient({"bootstrap.servers": kafka_broker.bootstrap})
    admin.create_topics([NewTopic(cdc[0], num_partitions=1)])[cdc[0]].result(timeout=30)
    assert topic_config(kafka_broker.bootstrap, cdc[0])["cleanup.policy"] == "delete"

    config = {"bootstrap.servers": kafka_broker.bootstrap}
    created, configured = ensure_topic_specs(config, specs)
    assert created == [s.name for s in specs[1:]]
    assert configured == [cdc[0]]
    for spec in specs:
        assert compacted(kafka_broker.bootstrap, spec.name), spec.name
    metadata = admin.list_topics(timeout=30).topics
    assert len(metadata[cdc[0]].partitions) == 1  # never repartitioned: keys stay put
    assert len(metadata[cdc[1]].partitions) == 2

    # Idempotent: nothing new, the same settings again.
    assert ensure_topic_specs(config, specs) == ([], [s.name for s in specs])


def test_local_runs_create_cdc_topics_compacted(kafka_broker: LocalKafka) -> None:
    topic = f"tl{uuid.uuid4().hex[:8]}.public.tickets"
    assert ensure_topics(kafka_broker.bootstrap, [topic], partitions=1) == [topic]
    assert compacted(kafka_broker.bootstrap, topic)


def test_the_create_topics_command(
    kafka_broker: LocalKafka, monkeypatch: pytest.MonkeyPatch
) -> None:
    prefix = f"tc{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("TRIAGE_KAFKA__BROKERS", json.dumps([kafka_broker.bootstrap]))
    monkeypatch.setenv("TRIAGE_CDC__MODE", "kafka")
    monkeypatch.setenv("TRIAGE_CDC__TOPIC_PREFIX", prefix)
    monkeypatch.setenv("TRIAGE_KAFKA__ALERTS_TOPIC", f"{prefix}.alerts")
    result = CliRunner().invoke(app, ["kafka", "create-topics", "--partitions", "1"])
    assert result.exit_code == 0, result.output
    for topic in [*cdc_topics(KafkaSettings(topic_prefix=prefix)), f"{prefix}.alerts"]:
        assert compacted(kafka_broker.bootstrap, topic)
