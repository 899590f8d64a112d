"""Kafka SASL/TLS settings reach every client: the CDC consumer, the alerts producer and the
topic administration, from ``TRIAGE_KAFKA__SECURITY__*`` to the librdkafka properties.

The clients are replaced by recorders of the configuration they are built with (no broker
is needed to check what a client would be given).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from bytewax.connectors.kafka import KafkaSource
from pydantic import ValidationError

import sinks.kafka_alerts
from connectors.kafka import KafkaSettings, consumer_config, kafka_cdc_source
from connectors.kafka_config import KafkaSecuritySettings, client_config
from sinks.kafka_alerts import KafkaAlertSink, KafkaDeadLetterSink
from triage.runtime import Stack, build_pipeline
from triage.settings import AppSettings

SASL = {
    "security.protocol": "SASL_SSL",
    "sasl.mechanism": "SCRAM-SHA-512",
    "sasl.username": "triage",
    "sasl.password": "pa55-word",
    "ssl.ca.location": "/etc/kafka/ca.pem",
}
SASL_ENV = {
    "TRIAGE_CDC__MODE": "kafka",
    "TRIAGE_KAFKA__BROKERS": '["broker-1:9093"]',
    "TRIAGE_KAFKA__SECURITY__PROTOCOL": "SASL_SSL",
    "TRIAGE_KAFKA__SECURITY__SASL_MECHANISM": "SCRAM-SHA-512",
    "TRIAGE_KAFKA__SECURITY__USERNAME": "triage",
    "TRIAGE_KAFKA__SECURITY__PASSWORD": "pa55-word",
    "TRIAGE_KAFKA__SECURITY__CA_FILE": "/etc/kafka/ca.pem",
    "TRIAGE_KAFKA__EXTRA_CONFIG": '{"client.rack": "eu-1a"}',
}


class _Recorder:
    """Stands in for a confluent_kafka client and keeps the configuration it got."""

    configs: list[dict[str, Any]] = []

    def __init__(self, config: dict[str, Any]) -> None:
        type(self).configs.append(dict(config))

    def list_topics(self, timeout: float | None = None) -> None:
        return None

    def assign(self, partitions: list[Any]) -> None:
        return None


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> type[_Recorder]:
    _Recorder.configs = []
    import bytewax.connectors.kafka as bytewax_kafka

    monkeypatch.setattr(bytewax_kafka, "Consumer", _Recorder)
    monkeypatch.setattr(sinks.kafka_alerts, "Producer", _Recorder)
    return _Recorder


def test_settings_from_the_environment_keep_the_password_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in SASL_ENV.items():
        monkeypatch.setenv(name, value)
    settings = AppSettings()
    security = settings.kafka.security
    assert security.protocol == "SASL_SSL"
    assert "pa55-word" not in repr(settings) and "pa55-word" not in str(security)
    assert settings.kafka.client_config() == {**SASL, "client.rack": "eu-1a"}


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"protocol": "SASL_SSL", "sasl_mechanism": "PLAIN", "username": "u"}, "password"),
        ({"protocol": "SASL_SSL", "username": "u", "password": "p"}, "sasl_mechanism"),
        ({"protocol": "PLAINTEXT", "username": "u", "password": "p"}, "SASL credentials"),
        ({"protocol": "PLAINTEXT", "ca_file": "/ca.pem"}, "ca_file"),
        ({"protocol": "SASL_SSL ", "sasl_mechanism": "PLAIN"}, "protocol"),
    ],
)
def test_inconsistent_security_settings_are_refused(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        KafkaSecuritySettings(**fields)


def test_plaintext_default_adds_only_the_protocol() -> None:
    assert KafkaSecuritySettings().client_config() == {"security.protocol": "PLAINTEXT"}
    assert client_config(["a:1", "b:2"], KafkaSecuritySettings()) == {
        "bootstrap.servers": "a:1,b:2",
        "security.protocol": "PLAINTEXT",
    }


def test_the_cdc_consumer_is_built_with_security_and_extra_config(
    recorder: type[_Recorder],
) -> None:
    security = KafkaSecuritySettings(
        protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        username="triage",
        password="pa55-word",
        ca_file=Path("/etc/kafka/ca.pem"),
    )
    settings = KafkaSettings(
        brokers=["broker-1:9093"], security=security, extra_config={"sasl.username": "override"}
    )
    # Extra properties are applied last: an operator can override anything.
    assert consumer_config(settings)["sasl.username"] == "override"
    source = kafka_cdc_source(settings)
    source.build_part("read", "0-triage.public.tickets", None)
    (config,) = recorder.configs
    assert config["bootstrap.servers"] == "broker-1:9093"
    assert {k: config[k] for k in SASL} == {**SASL, "sasl.username": "override"}


def test_the_alerts_producer_is_built_with_the_extra_config(recorder: type[_Recorder]) -> None:
    sink = KafkaAlertSink(["broker-1:9093"], "triage.alerts", extra_config=SASL)
    sink.build("publish_alerts", 0, 1)
    (config,) = recorder.configs
    assert {k: config[k] for k in SASL} == SASL
    assert config["enable.idempotence"] is True


def _steps(flow: Any) -> list[Any]:
    found = []
    pending = list(flow.substeps)
    while pending:
        step = pending.pop()
        found.append(step)
        pending.extend(getattr(step, "substeps", []))
    return found


def test_the_pipeline_gives_the_security_settings_to_consumer_and_producer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, recorder: type[_Recorder]
) -> None:
    for name, value in SASL_ENV.items():
        monkeypatch.setenv(name, value)
    settings = AppSettings(state_dir=tmp_path)
    dsn = "postgresql://triage@localhost/none"
    flow = build_pipeline(settings, Stack(dsn, dsn, "redis://localhost:1"), tmp_path / "recovery")
    steps = _steps(flow)
    sinks = [s.sink for s in steps if isinstance(getattr(s, "sink", None), KafkaAlertSink)]
    (alerts,) = [s for s in sinks if type(s) is KafkaAlertSink]
    (dead_letters,) = [s for s in sinks if isinstance(s, KafkaDeadLetterSink)]
    assert dead_letters.topic == "triage.dead_letters"
    (source,) = [s.source for s in steps if isinstance(getattr(s, "source", None), KafkaSource)]
    alerts.build("publish_alerts", 0, 1)
    dead_letters.build("publish_dead_letters", 0, 1)
    source.build_part("read", "0-triage.public.tickets", None)
    producer, dead_letter_producer, consumer = recorder.configs
    expected = {**SASL, "client.rack": "eu-1a"}
    assert {k: producer[k] for k in expected} == expected
    assert {k: dead_letter_producer[k] for k in expected} == expected
    assert {k: consumer[k] for k in expected} == expected
    assert consumer["bootstrap.servers"] == producer["bootstrap.servers"] == "broker-1:9093"
