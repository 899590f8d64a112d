"""Kafka client settings shared by every Kafka client of the project, and the topics.

Pure configuration (pydantic only, no client library): the typed security settings that
the CDC consumer, the alerts producer and the topic administration all apply, and the one
definition of which topics exist with which cleanup policy, used by ``triage kafka
create-topics`` (the compose stack's ``kafka-topics`` service) and by local runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

__all__ = [
    "ALERTS_TOPIC_CONFIG",
    "CDC_TOPIC_CONFIG",
    "DEAD_LETTER_TOPIC_CONFIG",
    "KafkaSecuritySettings",
    "TopicSpec",
    "client_config",
    "topic_specs",
]

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


class KafkaSecuritySettings(BaseModel):
    """How clients authenticate to the brokers and verify them (librdkafka properties).

    ``protocol`` ``SASL_SSL`` with a SCRAM mechanism is the usual choice for a managed or
    shared cluster; ``SSL`` alone encrypts and verifies the brokers; ``PLAINTEXT`` (the
    default) suits a private network such as the compose stack's.

    Example:
        >>> s = KafkaSecuritySettings(protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512",
        ...                           username="triage", password="s3cret")
        >>> sorted(s.client_config())
        ['sasl.mechanism', 'sasl.password', 'sasl.username', 'security.protocol']
        >>> s
        KafkaSecuritySettings(protocol='SASL_SSL', sasl_mechanism='SCRAM-SHA-512', username='triage', password=SecretStr('**********'), ca_file=None)
    """  # noqa: E501

    model_config = ConfigDict(frozen=True, extra="forbid")

    protocol: SecurityProtocol = Field(default="PLAINTEXT", description="security.protocol")
    sasl_mechanism: SaslMechanism | None = Field(default=None, description="sasl.mechanism")
    username: str | None = Field(default=None, description="sasl.username")
    password: SecretStr | None = Field(default=None, description="sasl.password")
    ca_file: Path | None = Field(
        default=None, description="ssl.ca.location: CA bundle that signed the brokers' certs"
    )

    @model_validator(mode="after")
    def _consistent(self) -> KafkaSecuritySettings:
        sasl = self.protocol.startswith("SASL_")
        if sasl and (self.sasl_mechanism is None or not self.username or self.password is None):
            raise ValueError(
                f"security protocol {self.protocol} needs sasl_mechanism, username and password "
                "(TRIAGE_KAFKA__SECURITY__SASL_MECHANISM, __USERNAME, __PASSWORD)"
            )
        if not sasl and (self.sasl_mechanism or self.username or self.password is not None):
            raise ValueError(
                f"SASL credentials are set but security protocol is {self.protocol}; use "
                "SASL_SSL (or SASL_PLAINTEXT on a trusted network)"
            )
        if self.ca_file is not None and not self.protocol.endswith("SSL"):
            raise ValueError(f"ca_file needs an SSL protocol (SSL, SASL_SSL), not {self.protocol}")
        return self

    def client_config(self) -> dict[str, str]:
        """The librdkafka properties of these settings (the password in clear: pass it to
        the client only, never log it)."""
        config: dict[str, str] = {"security.protocol": self.protocol}
        if self.sasl_mechanism is not None:
            config["sasl.mechanism"] = self.sasl_mechanism
        if self.username is not None:
            config["sasl.username"] = self.username
        if self.password is not None:
            config["sasl.password"] = self.password.get_secret_value()
        if self.ca_file is not None:
            config["ssl.ca.location"] = str(self.ca_file)
        return config


def client_config(
    brokers: list[str],
    security: KafkaSecuritySettings,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Properties every client starts from: brokers, security, then ``extra`` (which wins).

    Example:
        >>> client_config(["kafka:9092"], KafkaSecuritySettings(), {"client.id": "x"})
        {'bootstrap.servers': 'kafka:9092', 'security.protocol': 'PLAINTEXT', 'client.id': 'x'}
    """
    return {"bootstrap.servers": ",".join(brokers), **security.client_config(), **(extra or {})}


CDC_TOPIC_CONFIG: Mapping[str, str] = {
    # Debezium keys each record by primary key: compaction keeps the newest row of every
    # key forever (snapshot rows included), so a new consumer or a replay rebuilds state;
    # delete tombstones stay a day so consumers see deletes before they are compacted away.
    "cleanup.policy": "compact",
    "retention.ms": "-1",
    "delete.retention.ms": "86400000",
    "min.compaction.lag.ms": "3600000",
}
"""Configuration of the ``<prefix>.<schema>.<table>`` CDC topics."""

ALERTS_TOPIC_CONFIG: Mapping[str, str] = {
    # Keyed by the alert's stable id: a replay's duplicate replaces its original.
    "cleanup.policy": "compact",
    "retention.ms": "-1",
}
"""Configuration of the alerts topic (``triage.alerts``)."""


@dataclass(frozen=True)
class TopicSpec:
    """A topic the project relies on, with the configuration it must have."""

    name: str
    partitions: int
    config: Mapping[str, str] = field(default_factory=dict)


DEAD_LETTER_TOPIC_CONFIG: Mapping[str, str] = {
    # Every dead letter is its own record (a replay's copy has the same key); they are
    # kept 30 days for inspection and replay, the analytics store keeps them for good.
    "cleanup.policy": "delete",
    "retention.ms": str(30 * 24 * 3600 * 1000),
}
"""Configuration of the dead-letter topic (``triage.dead_letters``)."""


def topic_specs(
    cdc_topics: list[str],
    *,
    alerts_topic: str | None,
    dead_letter_topic: str | None = None,
    partitions: int = 4,
) -> list[TopicSpec]:
    """Every topic with its configuration: the CDC topics, and the alerts and dead-letter
    topics when used.

    Example:
        >>> [(s.name, s.config["cleanup.policy"]) for s in topic_specs(
        ...     ["triage.public.tickets"], alerts_topic="triage.alerts")]
        [('triage.public.tickets', 'compact'), ('triage.alerts', 'compact')]
    """
    specs = [TopicSpec(t, partitions, dict(CDC_TOPIC_CONFIG)) for t in cdc_topics]
    if alerts_topic:
        specs.append(TopicSpec(alerts_topic, partitions, dict(ALERTS_TOPIC_CONFIG)))
    if dead_letter_topic:
        specs.append(TopicSpec(dead_letter_topic, partitions, dict(DEAD_LETTER_TOPIC_CONFIG)))
    return specs
