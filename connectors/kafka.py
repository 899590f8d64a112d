"""Kafka inbound path: Debezium's ``triage.public.<table>`` topics as a Bytewax source.

The source is Bytewax's own :class:`~bytewax.connectors.kafka.KafkaSource`; this module only
configures it and turns its messages into the project's :class:`RawChange` (decoded later by
:func:`connectors.debezium.decode_change_event`) and its errors into :class:`DeadLetter`.

Delivery: at-least-once. Offsets are kept in Bytewax recovery snapshots rather than
committed to a consumer group, so after a restart the messages of the resumed epoch are
read again; the sinks are idempotent on the change's LSN, which makes that harmless.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any, Literal, cast

import bytewax.operators as op
from bytewax.connectors.kafka import KafkaError, KafkaSource, KafkaSourceMessage
from bytewax.connectors.kafka.operators import KafkaOpOut
from bytewax.dataflow import Dataflow, Stream, operator
from confluent_kafka import OFFSET_BEGINNING, OFFSET_END
from pydantic import BaseModel, ConfigDict, Field, field_validator

from connectors.kafka_config import KafkaSecuritySettings, TopicSpec
from models.events import DeadLetter, RawChange, SourcePosition
from models.telemetry import report_changes

__all__ = [
    "DEFAULT_TABLES",
    "KafkaSecuritySettings",
    "KafkaSettings",
    "KafkaTopicError",
    "cdc_topics",
    "consumer_config",
    "ensure_topic_specs",
    "kafka_cdc_source",
    "kafka_error_to_dead_letter",
    "read_cdc",
    "to_raw_change",
]

logger = logging.getLogger(__name__)

DEFAULT_TABLES = (
    "customers",
    "agents",
    "tickets",
    "ticket_events",
    "kb_articles",
    "work_outcomes",
)
"""The helpdesk tables Debezium captures (its ``table.include.list``)."""

_PAYLOAD_PREVIEW = 4096
"""Dead letters keep at most this many characters of the raw value, enough to diagnose."""


class KafkaSettings(BaseModel):
    """Where Debezium's change topics live and how to read them.

    The application settings compose this class; only they read the environment.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    brokers: list[str] = Field(
        default_factory=lambda: ["localhost:9092"], min_length=1, description="host:port list"
    )
    topic_prefix: str = Field(default="triage", min_length=1, description="Debezium topic.prefix")
    schema_name: str = Field(default="public", min_length=1, description="PostgreSQL schema")
    tables: list[str] = Field(default_factory=lambda: list(DEFAULT_TABLES), min_length=1)
    starting_offset: Literal["earliest", "latest"] = Field(
        default="earliest", description="Where to start when there is no recovery snapshot"
    )
    tail: bool = Field(
        default=True, description="Keep waiting for new changes; False stops at the end (tests)"
    )
    batch_size: int = Field(default=1000, ge=1, description="Max messages per partition poll")
    security: KafkaSecuritySettings = Field(
        default_factory=KafkaSecuritySettings, description="SASL/TLS of the consumer"
    )
    extra_config: dict[str, str] = Field(
        default_factory=dict,
        description="Additional librdkafka consumer properties (applied last, they win)",
    )

    @field_validator("brokers")
    @classmethod
    def _brokers_are_host_port(cls, brokers: list[str]) -> list[str]:
        for broker in brokers:
            host, sep, port = broker.rpartition(":")
            if not sep or not host or not port.isdigit():
                raise ValueError(f"Kafka broker {broker!r} is not host:port")
        return brokers


def cdc_topics(settings: KafkaSettings) -> list[str]:
    """Debezium's topic names for the captured tables: ``<prefix>.<schema>.<table>``.

    Args:
        settings: Kafka settings.

    Returns:
        One topic per table, in the order of ``settings.tables``.
    """
    return [f"{settings.topic_prefix}.{settings.schema_name}.{table}" for table in settings.tables]


def consumer_config(settings: KafkaSettings) -> dict[str, str]:
    """librdkafka properties the CDC consumer adds to Bytewax's: security, then extras.

    Example:
        >>> consumer_config(KafkaSettings(extra_config={"fetch.max.bytes": "1048576"}))
        {'security.protocol': 'PLAINTEXT', 'fetch.max.bytes': '1048576'}
    """
    return {**settings.security.client_config(), **settings.extra_config}


def kafka_cdc_source(settings: KafkaSettings) -> KafkaSource:
    """A Bytewax source over the CDC topics that emits errors instead of raising.

    Each Kafka partition is one Bytewax source partition, so per-row ordering (Debezium keys
    by primary key) is preserved. With ``raise_on_errors=False`` broker errors arrive in the
    stream as :class:`~bytewax.connectors.kafka.KafkaError` items, which :func:`read_cdc`
    splits off and turns into dead letters so the flow keeps running.

    Args:
        settings: Kafka settings.

    Returns:
        The configured source.
    """
    offset = OFFSET_BEGINNING if settings.starting_offset == "earliest" else OFFSET_END
    return KafkaSource(
        brokers=settings.brokers,
        topics=cdc_topics(settings),
        tail=settings.tail,
        starting_offset=offset,
        add_config=consumer_config(settings),
        batch_size=settings.batch_size,
        raise_on_errors=False,
    )


_Message = KafkaSourceMessage[bytes | None, bytes | None]
_Error = KafkaError[bytes | None, bytes | None]


@operator
def read_cdc(
    step_id: str, flow: Dataflow, settings: KafkaSettings
) -> KafkaOpOut[RawChange, DeadLetter]:
    """Read the CDC topics as undecoded changes, with consumer errors as dead letters.

    Args:
        step_id: Unique id of this step.
        flow: The dataflow to add the input to.
        settings: Kafka settings.

    Returns:
        ``oks``: one :class:`RawChange` per Kafka message (tombstones included);
        ``errs``: one :class:`DeadLetter` per consumer error.
    """
    items = op.input("kafka_input", flow, kafka_cdc_source(settings))
    split = op.branch("split_errors", items, lambda item: isinstance(item, KafkaSourceMessage))
    # branch() cannot narrow the union; the predicate above guarantees these types.
    messages = cast(Stream[_Message], split.trues)
    errors = cast(Stream[_Error], split.falses)
    changes = op.map("to_raw_change", messages, to_raw_change)
    return KafkaOpOut(
        # Changes read per table and the source lag, once per batch (a no-op unless the
        # application installed telemetry).
        op.flat_map_batch("count_changes", changes, _counted),
        op.map("to_dead_letter", errors, kafka_error_to_dead_letter),
    )


def _counted(batch: list[RawChange]) -> list[RawChange]:
    report_changes(batch)
    return batch


def to_raw_change(msg: KafkaSourceMessage[bytes | None, bytes | None]) -> RawChange:
    """Turn a Kafka message into an undecoded :class:`RawChange` with its coordinates.

    Args:
        msg: A message from :func:`kafka_cdc_source`.

    Returns:
        The record, with its topic/partition/offset as the source position.
    """
    topic = msg.topic or ""
    return RawChange(
        topic=topic,
        key=msg.key,
        value=msg.value,
        position=SourcePosition(topic=topic, partition=msg.partition, offset=msg.offset),
    )


def kafka_error_to_dead_letter(
    err: KafkaError[bytes | None, bytes | None], *, now: datetime | None = None
) -> DeadLetter:
    """Describe a consumer error from the source's stream as a dead letter.

    Args:
        err: An error item emitted by :func:`kafka_cdc_source`.
        now: Failure time; defaults to the current UTC time.

    Returns:
        A dead letter naming the librdkafka error and carrying the message it came with.
    """
    error: Any = err.err
    msg = err.msg
    try:
        reason = f"kafka error {error.name()}: {error.str()}"
    except AttributeError:
        # Not a confluent_kafka.KafkaError (a hand-built one in tests, for instance).
        reason = f"kafka error: {error}"
    topic = msg.topic or ""
    logger.warning("dead letter from %s[%s]@%s: %s", topic, msg.partition, msg.offset, reason)
    return DeadLetter(
        stage="kafka_source",
        reason=reason,
        topic=topic,
        key=_text(msg.key),
        payload=_text(msg.value, limit=_PAYLOAD_PREVIEW),
        position=SourcePosition(topic=topic, partition=msg.partition, offset=msg.offset),
        failed_at=now or datetime.now(UTC),
    )


def _text(data: bytes | None, *, limit: int | None = None) -> str | None:
    if data is None:
        return None
    text = data.decode("utf-8", errors="backslashreplace")
    return text if limit is None else text[:limit]


class KafkaTopicError(RuntimeError):
    """The brokers did not answer, or refused to create or configure a topic."""


def ensure_topic_specs(
    config: dict[str, str], specs: list[TopicSpec], *, timeout: float = 30.0
) -> tuple[list[str], list[str]]:
    """Create the missing topics with their configuration and set it on existing ones.

    Idempotent: a second run creates nothing and sets the same values again. Existing
    topics get the spec's configuration with incremental ``SET`` operations (other
    settings are left alone); their partition count is never changed, since that would
    move keys to other partitions.

    Args:
        config: Admin client properties (``bootstrap.servers`` and security).
        specs: The topics (:func:`connectors.kafka_config.topic_specs`).
        timeout: Seconds to wait for each broker answer.

    Returns:
        The names of the topics created and of the existing topics configured.

    Raises:
        KafkaTopicError: The broker did not answer or refused a topic or a setting.
    """
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import (
        AdminClient,
        AlterConfigOpType,
        ConfigEntry,
        ConfigResource,
        NewTopic,
    )

    admin = AdminClient(dict(config))
    try:
        existing = set(admin.list_topics(timeout=timeout).topics)
        missing = [s for s in specs if s.name not in existing]
        present = [s for s in specs if s.name in existing and s.config]
        if missing:
            futures = admin.create_topics(
                [
                    NewTopic(s.name, num_partitions=s.partitions, config=dict(s.config))
                    for s in missing
                ],
                request_timeout=timeout,
            )
            for future in futures.values():
                future.result(timeout=timeout)
        if present:
            resources = [
                ConfigResource(
                    ConfigResource.Type.TOPIC,
                    s.name,
                    incremental_configs=[
                        ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET)
                        for k, v in s.config.items()
                    ],
                )
                for s in present
            ]
            for future in admin.incremental_alter_configs(resources).values():
                future.result(timeout=timeout)
    except KafkaException as exc:
        raise KafkaTopicError(
            f"cannot create or configure Kafka topics on {config.get('bootstrap.servers')}: "
            f"{exc}; check TRIAGE_KAFKA__BROKERS and TRIAGE_KAFKA__SECURITY__*"
        ) from exc
    return [s.name for s in missing], [s.name for s in present]
