"""Alerts as Kafka messages: exact keys and JSON, settings, and the flow's alert output."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Literal

import pytest
from bytewax.testing import TestingSink, TestingSource, run_main

from connectors.debezium import encode_envelope, encode_key
from models.anomaly import AnomalyAlert, Driver
from models.events import RawChange, SourcePosition
from models.sla import SlaEvent
from pipelines.flow import build_flow
from pipelines.settings import PipelineSettings
from sinks.kafka_alerts import (
    KafkaAlertSink,
    alert_document,
    alert_id,
    alert_to_message,
    is_alert,
)
from triage.runtime import Stack, build_pipeline
from triage.settings import AppSettings, CdcSettings, KafkaAppSettings

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

ANOMALY = AnomalyAlert(
    series="volume:category=billing",
    # 10:00 in UTC+1 is 09:00 UTC: the message carries UTC.
    start=datetime(2026, 3, 2, 10, 0, tzinfo=timezone(timedelta(hours=1))),
    observed=42.0,
    expected=12.34567,
    score=6.78912,
    drivers=[Driver("category", "billing", 30.0, 5.0004, 6.0), Driver("channel", "chat", 9, 3, 3)],
)

BREACH = SlaEvent(
    ticket_id=42,
    metric="first_reply",
    kind="breach",
    at=T0 + timedelta(hours=1),
    deadline=T0 + timedelta(hours=1),
    policy="premium/urgent",
    business_seconds_elapsed=3600.0,
    paused_seconds=120.5,
    breached=True,
)


def test_anomaly_message_is_exact() -> None:
    key, value = alert_to_message(ANOMALY)
    assert key == b"anomaly|volume:category=billing|2026-03-02T09:00:00Z"
    assert value == (
        b'{"schema_version":1,"type":"anomaly",'
        b'"id":"anomaly|volume:category=billing|2026-03-02T09:00:00Z",'
        b'"series":"volume:category=billing","start":"2026-03-02T09:00:00Z",'
        b'"observed":42.0,"expected":12.346,"score":6.789,"drivers":['
        b'{"dimension":"category","value":"billing","observed":30.0,"expected":5.0,"lift":6.0},'
        b'{"dimension":"channel","value":"chat","observed":9.0,"expected":3.0,"lift":3.0}]}'
    )


def test_sla_breach_message_is_exact() -> None:
    key, value = alert_to_message(BREACH)
    assert key == b"sla_breach|42|first_reply|2026-03-02T10:00:00Z"
    assert json.loads(value) == {
        "schema_version": 1,
        "type": "sla_breach",
        "id": "sla_breach|42|first_reply|2026-03-02T10:00:00Z",
        "ticket_id": 42,
        "metric": "first_reply",
        "at": "2026-03-02T10:00:00Z",
        "deadline": "2026-03-02T10:00:00Z",
        "policy": "premium/urgent",
        "business_seconds_elapsed": 3600.0,
        "paused_seconds": 120.5,
    }
    assert value.startswith(b'{"schema_version":1,"type":"sla_breach","id":')


def test_breach_without_deadline_and_microseconds() -> None:
    at = T0.replace(microsecond=250_000)
    event = SlaEvent(7, "resolution", "breach", at, None, "standard/low", 1.0, 0.0, True)
    doc = alert_document(event)
    assert doc["deadline"] is None
    assert doc["at"] == "2026-03-02T09:00:00.250000Z"


def test_key_is_stable_and_tells_breach_cycles_apart() -> None:
    assert alert_to_message(BREACH) == alert_to_message(BREACH)
    first = SlaEvent(5, "next_reply", "breach", T0, T0, "p", 60.0, 0.0, True)
    second = SlaEvent(5, "next_reply", "breach", T0 + timedelta(days=1), T0, "p", 60.0, 0.0)
    assert alert_id(first) != alert_id(second)
    assert alert_to_message(first)[0] == alert_id(first).encode()


def test_naive_times_are_taken_as_utc() -> None:
    naive = AnomalyAlert("volume", datetime(2026, 3, 2, 9, 0), 10.0, 2.0, 5.0)
    assert alert_id(naive) == "anomaly|volume|2026-03-02T09:00:00Z"


def test_non_finite_numbers_become_null() -> None:
    alert = AnomalyAlert("volume", T0, 10.0, float("nan"), float("inf"))
    doc = json.loads(alert_to_message(alert)[1])
    assert (doc["expected"], doc["score"]) == (None, None)


def test_only_alerts_are_accepted() -> None:
    apply = SlaEvent(1, "first_reply", "apply", T0, T0, "p", 0.0, 0.0)
    assert is_alert(ANOMALY) and is_alert(BREACH)
    assert not is_alert(apply) and not is_alert("breach")
    with pytest.raises(ValueError, match="not 'apply' events"):
        alert_to_message(apply)
    with pytest.raises(TypeError, match="cannot write str"):
        alert_to_message("breach")  # type: ignore[arg-type]


def test_sink_needs_a_broker() -> None:
    with pytest.raises(ValueError, match="at least one broker"):
        KafkaAlertSink([])


# ----------------------------------------------------------------------------- settings


KAFKA_MODE = {"TRIAGE_CDC__MODE": "kafka"}


@pytest.mark.parametrize(
    ("env", "publishes", "topic"),
    [
        ({}, False, "triage.alerts"),
        (KAFKA_MODE, True, "triage.alerts"),
        (KAFKA_MODE | {"TRIAGE_KAFKA__PUBLISH_ALERTS": "false"}, False, "triage.alerts"),
        ({"TRIAGE_KAFKA__PUBLISH_ALERTS": "true"}, True, "triage.alerts"),
        (KAFKA_MODE | {"TRIAGE_KAFKA__ALERTS_TOPIC": "ops.alerts"}, True, "ops.alerts"),
    ],
)
def test_alerts_go_to_kafka_in_kafka_mode_unless_told_otherwise(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], publishes: bool, topic: str
) -> None:
    for name in ("TRIAGE_CDC__MODE", "TRIAGE_KAFKA__PUBLISH_ALERTS", "TRIAGE_KAFKA__ALERTS_TOPIC"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = AppSettings()
    assert settings.publishes_alerts is publishes
    assert settings.kafka.alerts_topic == topic


# ------------------------------------------------------------------- the flow's output


def _record(
    table: str,
    op: str,
    lsn: int,
    at: datetime,
    row: dict[str, Any],
    before: dict[str, Any] | None = None,
) -> RawChange:
    return RawChange(
        topic=f"triage.public.{table}",
        key=encode_key({"id": row["id"]}, table=table),
        value=encode_envelope(
            table=table,
            op=op,
            lsn=lsn,
            ts_ms=int(at.timestamp() * 1000),
            before=before,
            after=row,
        ),
        position=SourcePosition(lsn=lsn),
    )


def breach_feed() -> list[RawChange]:
    """One ticket left unanswered for 30 days, then solved: its clocks breach, then fulfil."""
    agent = {
        "id": 1,
        "name": "A1",
        "email": "a@x",
        "team": "billing",
        "skills": json.dumps({"billing": 0.9}),
        "languages": ["en"],
        "capacity": 5,
        "status": "online",
        "shift_start": 0,
        "shift_end": 24,
    }
    customer = {"id": 1, "name": "Acme", "email": "c@x", "tier": "premium", "language": "en",
                "region": "us"}  # fmt: skip
    ticket = {
        "id": 10,
        "customer_id": 1,
        "subject": "Refund for invoice 10",
        "description": "I was charged twice on my credit card",
        "channel": "email",
        "status": "new",
        "created_at": T0.isoformat(),
    }
    solved = {**ticket, "status": "solved"}
    return [
        _record("agents", "r", 1010, T0, agent),
        _record("customers", "r", 1020, T0, customer),
        _record("tickets", "c", 1030, T0, ticket),
        _record("tickets", "u", 1040, T0 + timedelta(days=30), solved, before=ticket),
    ]


def test_flow_sends_sla_breaches_and_nothing_else_to_the_alert_sink() -> None:
    analytics: list[Any] = []
    alerts: list[Any] = []
    flow = build_flow(
        PipelineSettings(),
        source=TestingSource(breach_feed()),
        analytics_sink=TestingSink(analytics),
        decision_sink=TestingSink([]),
        alert_sink=TestingSink(alerts),
    )
    run_main(flow)

    sla = [x for x in analytics if isinstance(x, SlaEvent)]
    assert {e.kind for e in sla} >= {"apply", "breach", "fulfill"}
    breaches = [e for e in sla if e.kind == "breach"]
    assert sorted((e.ticket_id, e.metric) for e in breaches) == [
        (10, "first_reply"),
        (10, "resolution"),
    ]
    assert sorted(alerts, key=alert_id) == sorted(breaches, key=alert_id)


def _output_sinks(flow: Any) -> dict[str, Any]:
    return {s.step_id.split(".")[-1]: s.sink for s in flow.substeps if hasattr(s, "sink")}


@pytest.mark.parametrize(("mode", "publishes"), [("kafka", True), ("embedded", False)])
def test_pipeline_publishes_alerts_to_the_configured_topic_in_kafka_mode(
    tmp_path: Path, mode: Literal["kafka", "embedded"], publishes: bool
) -> None:
    settings = AppSettings(
        cdc=CdcSettings(mode=mode),
        kafka=KafkaAppSettings(brokers=["kafka:9092"], alerts_topic="ops.alerts"),
        state_dir=tmp_path,
    )
    dsn = "postgresql://triage@localhost/none"
    flow = build_pipeline(settings, Stack(dsn, dsn, "redis://localhost:1"), tmp_path / "recovery")
    sinks = _output_sinks(flow)
    assert "write_live" in sinks and "write_analytics" in sinks
    if publishes:
        sink = sinks["publish_alerts"]
        assert isinstance(sink, KafkaAlertSink)
        assert (sink.brokers, sink.topic) == (["kafka:9092"], "ops.alerts")
    else:
        assert "publish_alerts" not in sinks
