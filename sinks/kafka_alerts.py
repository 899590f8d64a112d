"""Kafka sinks for alerts (volume anomalies and SLA breaches as JSON on ``triage.alerts``)
and for dead letters (``triage.dead_letters``, :class:`KafkaDeadLetterSink`).

Delivery guarantee: at-least-once. Each ``write_batch`` produces its alerts with an
idempotent producer (``enable.idempotence``: acks from all in-sync replicas, retries
without duplicates or reordering within one producer session) and returns only after
``flush`` has seen every delivery report; a failed or timed-out delivery raises, which
fails the epoch, so Bytewax never commits an epoch whose alerts Kafka does not hold. After
a crash the resumed epoch is processed again and its alerts are produced a second time.

Idempotency key: the message key is the alert's stable id (:func:`alert_id`), the same on
every replay, so consumers drop an id they have already handled (or read a compacted
topic). Equal keys also land on the same partition, so a duplicate follows its original.

Message value (UTF-8 JSON object, times as ISO-8601 UTC with a ``Z`` suffix, numbers that
are not finite as ``null``). Common fields: ``schema_version`` (``1``), ``type``
(``"anomaly"`` or ``"sla_breach"``) and ``id`` (equal to the key). Then, per type:

- ``anomaly``: ``series`` (e.g. ``volume:category=billing``), ``start`` (first anomalous
  bucket), ``observed``, ``expected``, ``score`` (z-score), ``drivers``: a list of
  ``{dimension, value, observed, expected, lift}``, largest contribution first;
- ``sla_breach``: ``ticket_id``, ``metric`` (``first_reply``, ``next_reply`` or
  ``resolution``), ``at`` (when the breach took effect), ``deadline`` (the deadline
  missed, or ``null``), ``policy``, ``business_seconds_elapsed``, ``paused_seconds``.

Example:
    >>> from datetime import UTC, datetime
    >>> from models.sla import SlaEvent
    >>> at = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
    >>> breach = SlaEvent(42, "first_reply", "breach", at, at, "urgent", 3600.0, 0.0, True)
    >>> key, value = alert_to_message(breach)
    >>> key
    b'sla_breach|42|first_reply|2026-03-02T10:00:00Z'
    >>> value[:60]
    b'{"schema_version":1,"type":"sla_breach","id":"sla_breach|42|'

Kept as one module: the alert and dead-letter sinks share the producer, its
security settings and the delivery accounting.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from bytewax.outputs import DynamicSink, StatelessSinkPartition
from confluent_kafka import KafkaError, KafkaException, Message, Producer

from models.anomaly import AnomalyAlert
from models.events import DeadLetter
from models.sla import SlaEvent
from models.telemetry import report_written

log = logging.getLogger(__name__)

__all__ = [
    "ALERT_SCHEMA_VERSION",
    "AlertDeliveryError",
    "AlertItem",
    "KafkaAlertSink",
    "KafkaDeadLetterSink",
    "alert_document",
    "alert_id",
    "alert_to_message",
    "dead_letter_to_message",
    "is_alert",
]

AlertItem = AnomalyAlert | SlaEvent
"""What the sink accepts: anomaly alerts and SLA events of kind ``breach``."""

ALERT_SCHEMA_VERSION = 1
"""Bumped when a field changes meaning or disappears; new fields do not bump it."""

_DECIMALS = 3
"""Model outputs (expected counts, scores, lifts) are rounded as on the Redis stream."""


class AlertDeliveryError(RuntimeError):
    """Kafka did not acknowledge every alert of a batch; the epoch must not commit.

    Attributes:
        errors: The delivery errors reported by librdkafka (empty on a flush timeout).
    """

    def __init__(self, message: str, errors: list[KafkaError] | None = None) -> None:
        super().__init__(message)
        self.errors = errors or []


def is_alert(item: Any) -> bool:
    """True for what the alerts topic carries: anomaly alerts and SLA breaches."""
    return isinstance(item, AnomalyAlert) or (isinstance(item, SlaEvent) and item.kind == "breach")


def _iso_utc(at: datetime) -> str:
    """ISO-8601 in UTC with ``Z``; naive times are taken as UTC (the flow's convention)."""
    at = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
    return at.isoformat().replace("+00:00", "Z")


def _number(value: float, decimals: int | None = None) -> float | None:
    """A JSON-safe float: ``None`` for NaN and infinities, optionally rounded."""
    value = float(value)
    if not math.isfinite(value):
        return None
    return round(value, decimals) if decimals is not None else value


def _check(item: AlertItem) -> None:
    if isinstance(item, SlaEvent):
        if item.kind != "breach":
            raise ValueError(f"only SLA breaches are alerts, not {item.kind!r} events")
    elif not isinstance(item, AnomalyAlert):
        raise TypeError(f"KafkaAlertSink cannot write {type(item).__name__}")


def alert_id(item: AlertItem) -> str:
    """The alert's stable id, used as the Kafka message key.

    ``anomaly|<series>|<bucket start>`` for an anomaly (one alert per episode of a series)
    and ``sla_breach|<ticket id>|<metric>|<at>`` for a breach (a ticket's ``next_reply``
    can breach once per reply cycle, so the ticket and metric alone are not unique). Both
    come from event time, so a replay yields the same id.

    Raises:
        TypeError: For an item that is not an alert.
        ValueError: For an SLA event that is not a breach.
    """
    _check(item)
    if isinstance(item, AnomalyAlert):
        return f"anomaly|{item.series}|{_iso_utc(item.start)}"
    return f"sla_breach|{item.ticket_id}|{item.metric}|{_iso_utc(item.at)}"


def alert_document(item: AlertItem) -> dict[str, Any]:
    """The JSON object of one alert (pure; see the module docstring for the schema).

    Raises:
        TypeError: For an item that is not an alert.
        ValueError: For an SLA event that is not a breach.
    """
    head: dict[str, Any] = {
        "schema_version": ALERT_SCHEMA_VERSION,
        "type": "anomaly" if isinstance(item, AnomalyAlert) else "sla_breach",
        "id": alert_id(item),
    }
    if isinstance(item, AnomalyAlert):
        drivers = [
            {
                "dimension": d.dimension,
                "value": d.value,
                "observed": _number(d.observed),
                "expected": _number(d.expected, _DECIMALS),
                "lift": _number(d.lift, _DECIMALS),
            }
            for d in item.drivers
        ]
        return head | {
            "series": item.series,
            "start": _iso_utc(item.start),
            "observed": _number(item.observed),
            "expected": _number(item.expected, _DECIMALS),
            "score": _number(item.score, _DECIMALS),
            "drivers": drivers,
        }
    return head | {
        "ticket_id": item.ticket_id,
        "metric": item.metric,
        "at": _iso_utc(item.at),
        "deadline": None if item.deadline is None else _iso_utc(item.deadline),
        "policy": item.policy,
        "business_seconds_elapsed": _number(item.business_seconds_elapsed),
        "paused_seconds": _number(item.paused_seconds),
    }


def alert_to_message(item: AlertItem) -> tuple[bytes, bytes]:
    """The Kafka message of one alert: ``(key, value)`` as UTF-8 bytes (pure; no I/O).

    Raises:
        TypeError: For an item that is not an alert.
        ValueError: For an SLA event that is not a breach.
    """
    document = alert_document(item)
    value = json.dumps(document, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return document["id"].encode("utf-8"), value.encode("utf-8")


def dead_letter_to_message(item: DeadLetter) -> tuple[bytes, bytes]:
    """The Kafka message of one dead letter: ``(key, value)`` as UTF-8 bytes (pure).

    The key names the failed record (stage, source topic and position), so a replay's copy
    has its original's key. The value carries the reason and the raw payload as received,
    so the record can be inspected and replayed from the topic alone.

    Example:
        >>> from datetime import UTC, datetime
        >>> from models.events import SourcePosition
        >>> dl = DeadLetter("decode", "bad JSON", "triage.public.tickets", "7", "{",
        ...                 SourcePosition(lsn=99), datetime(2026, 3, 2, tzinfo=UTC))
        >>> dead_letter_to_message(dl)[0]
        b'decode|triage.public.tickets|lsn:99'
    """
    pos = item.position
    where = (
        f"lsn:{pos.lsn}"
        if pos.lsn is not None
        else f"{pos.topic}:{pos.partition}:{pos.offset}"
        if pos.offset is not None
        else f"key:{item.key}"
    )
    key = f"{item.stage}|{item.topic}|{where}"
    document = {
        "schema_version": 1,
        "type": "dead_letter",
        "id": key,
        "stage": item.stage,
        "reason": item.reason,
        "source_topic": item.topic,
        "source_key": item.key,
        "payload": item.payload,
        "position": {
            "lsn": pos.lsn,
            "topic": pos.topic,
            "partition": pos.partition,
            "offset": pos.offset,
        },
        "failed_at": _iso_utc(item.failed_at),
    }
    value = json.dumps(document, separators=(",", ":"), ensure_ascii=False, default=str)
    return key.encode("utf-8"), value.encode("utf-8")


class _FatalErrors:
    """The producer's ``error_cb``: remembers a fatal error for the next batch to raise.

    A separate object rather than a method of the partition, so the producer does not
    reference its own owner and is destroyed (threads, sockets) with the partition.
    """

    def __init__(self) -> None:
        self.fatal: KafkaError | None = None

    def __call__(self, err: KafkaError) -> None:
        # Transport errors are retried by librdkafka (which logs them) and surface as
        # delivery errors if they last; a fatal error (e.g. the idempotent sequence is
        # broken) ends the producer, and the next batch must fail.
        if err.fatal():
            self.fatal = err
            log.error("kafka alert producer failed: %s", err)
        else:
            log.debug("kafka alert producer: %s", err)


class _KafkaAlertPartition(StatelessSinkPartition[Any]):
    """One worker's idempotent producer; each batch is flushed before it returns."""

    def __init__(
        self,
        config: dict[str, Any],
        *,
        topic: str,
        delivery_timeout: float,
        connect_timeout: float,
        encode: Callable[[Any], tuple[bytes, bytes]] = alert_to_message,
        sink: str = "kafka_alerts",
    ) -> None:
        self._topic = topic
        self._encode = encode
        self._sink = sink
        # The producer gives up on a message after message.timeout.ms and reports it, so a
        # flush that waits a little longer always ends with every report in hand.
        self._flush_timeout = delivery_timeout + 5.0
        self._errors = _FatalErrors()
        self._producer = Producer({**config, "error_cb": self._errors})
        # Fail at start-up, not at the first alert, when no broker answers.
        try:
            self._producer.list_topics(timeout=connect_timeout)
        except KafkaException as exc:
            raise ConnectionError(
                f"no Kafka broker at {config['bootstrap.servers']} answered within "
                f"{connect_timeout:g} s ({exc}); check TRIAGE_KAFKA__BROKERS, or set "
                "TRIAGE_KAFKA__PUBLISH_ALERTS=false to run without the alerts and dead-letter "
                "topics"
            ) from exc
        self.delivered = 0
        """Alerts acknowledged by Kafka so far (replays included)."""

    def write_batch(self, items: list[Any]) -> None:
        """Produce the batch in order; returns once Kafka acknowledged every message.

        Raises:
            AlertDeliveryError: A message was not delivered (the epoch must be retried).
        """
        if not items:
            return
        messages = [self._encode(item) for item in items]
        failed: list[KafkaError] = []

        def on_delivery(err: KafkaError | None, _msg: Message) -> None:
            if err is not None:
                failed.append(err)

        for key, value in messages:
            while True:
                try:
                    self._producer.produce(
                        self._topic, value=value, key=key, on_delivery=on_delivery
                    )
                    break
                except BufferError:
                    # The local queue is full: serve delivery reports to make room.
                    self._producer.poll(0.1)
        remaining = self._producer.flush(self._flush_timeout)
        fatal = self._errors.fatal
        if fatal is not None:
            raise AlertDeliveryError(f"Kafka alert producer failed fatally: {fatal}", [fatal])
        if failed:
            raise AlertDeliveryError(
                f"{len(failed)} of {len(messages)} alerts were not delivered to Kafka topic "
                f"{self._topic!r} (first: {failed[0]}); check TRIAGE_KAFKA__BROKERS",
                failed,
            )
        if remaining:
            raise AlertDeliveryError(
                f"{remaining} alerts were not acknowledged by Kafka topic {self._topic!r} "
                f"within {self._flush_timeout:g} s"
            )
        self.delivered += len(messages)
        report_written(self._sink, items)

    def close(self) -> None:
        """Hand over what is left in the queue when the dataflow ends (normally nothing)."""
        self._producer.flush(self._flush_timeout)


class KafkaAlertSink(DynamicSink[AlertItem]):
    """Publish anomaly alerts and SLA breaches as JSON to a Kafka topic.

    Delivery guarantee: at-least-once; a batch returns only when Kafka acknowledged all of
    its messages, and any delivery error raises and fails the epoch. Idempotency key: the
    message key, the alert's stable id (:func:`alert_id`), which consumers deduplicate on
    after a replay. Message schema: see the module docstring.

    Each worker has its own producer; the topic is created by the broker on first produce
    when it allows auto-creation, otherwise it must exist.

    Args:
        brokers: Bootstrap servers, ``host:port``.
        topic: Topic to publish to (default: ``triage.alerts``; ``triage.dead_letters`` for
            :class:`KafkaDeadLetterSink`).
        delivery_timeout: Seconds a message may take to be acknowledged, retries included
            (``message.timeout.ms``); after that the batch fails.
        connect_timeout: Seconds to wait for broker metadata when a worker starts.
        extra_config: More librdkafka producer properties (e.g. security settings); they
            override the defaults.
    """

    _encode: Callable[[Any], tuple[bytes, bytes]] = staticmethod(alert_to_message)
    _sink_name = "kafka_alerts"
    _default_topic = "triage.alerts"

    def __init__(
        self,
        brokers: list[str],
        topic: str | None = None,
        *,
        delivery_timeout: float = 120.0,
        connect_timeout: float = 10.0,
        extra_config: Mapping[str, Any] | None = None,
    ) -> None:
        if not brokers:
            raise ValueError(f"{type(self).__name__} needs at least one broker")
        self._brokers = list(brokers)
        self._topic = topic or self._default_topic
        self._delivery_timeout = delivery_timeout
        self._connect_timeout = connect_timeout
        self._extra_config = dict(extra_config or {})

    @property
    def brokers(self) -> list[str]:
        """The bootstrap servers."""
        return list(self._brokers)

    @property
    def topic(self) -> str:
        """The topic alerts are published to."""
        return self._topic

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _KafkaAlertPartition:
        """Create this worker's producer and check that a broker answers."""
        config: dict[str, Any] = {
            "bootstrap.servers": ",".join(self._brokers),
            "client.id": f"{step_id}-{worker_index}",
            "enable.idempotence": True,
            "acks": "all",
            "message.timeout.ms": int(self._delivery_timeout * 1000),
            # Alerts are few; a short linger still batches the ones of one epoch.
            "linger.ms": 5,
            **self._extra_config,
        }
        return _KafkaAlertPartition(
            config,
            topic=self._topic,
            delivery_timeout=self._delivery_timeout,
            connect_timeout=self._connect_timeout,
            encode=self._encode,
            sink=self._sink_name,
        )


class KafkaDeadLetterSink(KafkaAlertSink):
    """Publish dead letters (:class:`DeadLetter`) as JSON to a Kafka topic
    (:func:`dead_letter_to_message`), with the alert sink's delivery guarantee: a batch
    returns once Kafka acknowledged it, and a failed delivery fails the epoch.

    The analytics store keeps every dead letter as well (``analytics.dead_letters``, read by
    ``triage dead-letters``); the topic is for operators' consumers and alerting. Rows a
    store refused reach the topic through ``triage dead-letters publish``.
    """

    _encode = staticmethod(dead_letter_to_message)
    _sink_name = "kafka_dead_letters"
    _default_topic = "triage.dead_letters"

    def __init__(
        self,
        brokers: list[str],
        topic: str = "triage.dead_letters",
        *,
        delivery_timeout: float = 120.0,
        connect_timeout: float = 10.0,
        extra_config: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(
            brokers,
            topic,
            delivery_timeout=delivery_timeout,
            connect_timeout=connect_timeout,
            extra_config=extra_config,
        )
