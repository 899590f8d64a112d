"""Kafka fixtures: librdkafka's built-in mock cluster and a Debezium envelope producer.

The mock cluster lives inside one librdkafka client handle. It listens on a loopback port
that other clients (producers, consumers, Bytewax's ``KafkaSource``) connect to like any
broker, so no JVM or Docker is needed. The port is chosen by librdkafka and only reported
in its ``mock`` debug log, which is where the fixture reads it from.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from confluent_kafka import KafkaException, Message, Producer

from connectors.debezium import encode_envelope, encode_key

_BOOTSTRAP_LINE = re.compile(r"Mock cluster \S+ bootstrap\.servers=(\S+)")
_STARTUP_TIMEOUT_S = 15.0


class _BootstrapCatcher(logging.Handler):
    """Picks the mock cluster's address out of librdkafka's ``mock`` debug lines."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.address: str | None = None
        self.found = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.address is not None:
            return
        match = _BOOTSTRAP_LINE.search(record.getMessage())
        if match:
            self.address = match.group(1)
            self.found.set()


class MockKafkaCluster:
    """Owns the client handle that hosts the mock cluster and keeps it serviced."""

    def __init__(self) -> None:
        self._catcher = _BootstrapCatcher()
        # A private, non-propagating logger: the mock logs every request it serves and
        # that would drown the test output.
        self._log = logging.getLogger(f"tests.kafka_mock.{id(self)}")
        self._log.propagate = False
        self._log.setLevel(logging.DEBUG)
        self._log.addHandler(self._catcher)
        self._host = Producer({"test.mock.num.brokers": 1, "debug": "mock", "logger": self._log})
        self._stop = threading.Event()
        # librdkafka hands log lines to Python only when the handle is polled, so a thread
        # keeps polling for as long as the cluster is in use.
        self._poller = threading.Thread(target=self._poll, name="kafka-mock-poll", daemon=True)
        self._poller.start()
        if not self._catcher.found.wait(_STARTUP_TIMEOUT_S) or self._catcher.address is None:
            self.close()
            raise RuntimeError("librdkafka mock cluster did not report its bootstrap.servers")
        self.bootstrap: str = self._catcher.address

    def _poll(self) -> None:
        while not self._stop.is_set():
            self._host.poll(0.1)

    def close(self) -> None:
        self._stop.set()
        self._poller.join(timeout=5)
        self._log.removeHandler(self._catcher)


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """``host:port`` of a librdkafka mock Kafka cluster shared by the whole session.

    Topics are auto-created with 4 partitions on first produce (``create_topics`` does not
    work on the mock), so tests use unique topic prefixes instead of fresh topics.
    """
    cluster = MockKafkaCluster()
    try:
        yield cluster.bootstrap
    finally:
        cluster.close()


class CdcProducer:
    """Writes Debezium records to ``<prefix>.public.<table>`` like Kafka Connect would."""

    def __init__(self, bootstrap: str, topic_prefix: str) -> None:
        self.topic_prefix = topic_prefix
        self._producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
        self._errors: list[str] = []

    def topic(self, table: str) -> str:
        return f"{self.topic_prefix}.public.{table}"

    def change(
        self,
        table: str,
        op: str,
        *,
        lsn: int,
        ts_ms: int,
        key: Mapping[str, Any] | None = None,
        before: Mapping[str, Any] | None = None,
        after: Mapping[str, Any] | None = None,
        schemas: bool = False,
        snapshot: bool | str = "false",
        tx_id: int | None = None,
    ) -> None:
        """Produce one change event; the key defaults to the row's ``id``."""
        row = after if after is not None else before
        if key is None and row is not None and "id" in row:
            key = {"id": row["id"]}
        value = encode_envelope(
            table=table,
            op=op,
            lsn=lsn,
            ts_ms=ts_ms,
            before=before,
            after=after,
            tx_id=tx_id,
            snapshot=snapshot,
            schemas=schemas,
            topic_prefix=self.topic_prefix,
        )
        raw_key = (
            None
            if key is None
            else encode_key(key, table=table, schemas=schemas, topic_prefix=self.topic_prefix)
        )
        self.raw(table, raw_key, value)

    def tombstone(self, table: str, key: Mapping[str, Any], *, schemas: bool = False) -> None:
        """Produce the tombstone Debezium writes after a delete."""
        raw_key = encode_key(key, table=table, schemas=schemas, topic_prefix=self.topic_prefix)
        self.raw(table, raw_key, None)

    def raw(self, table: str, key: bytes | None, value: bytes | None) -> None:
        """Produce arbitrary bytes (for malformed records)."""
        self._producer.produce(self.topic(table), value=value, key=key, on_delivery=self._ack)
        self._producer.poll(0)

    def flush(self, timeout_s: float = 30.0) -> None:
        """Wait until every record is acknowledged by the broker."""
        deadline = time.monotonic() + timeout_s
        while self._producer.flush(0.5) > 0:
            if time.monotonic() > deadline:
                raise TimeoutError(f"Kafka mock did not acknowledge within {timeout_s} s")
        if self._errors:
            raise KafkaException(f"produce failed: {self._errors}")

    def _ack(self, err: Any, _msg: Message) -> None:
        if err is not None:
            self._errors.append(str(err))


@pytest.fixture
def cdc_producer(kafka_bootstrap: str, unique: str) -> CdcProducer:
    """A producer for this test's own topics (prefix ``t<unique>``)."""
    return CdcProducer(kafka_bootstrap, f"t{unique}")
