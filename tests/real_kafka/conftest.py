"""Real Kafka and real Debezium: a KRaft broker and Kafka Connect started once per session.

The broker and the Connect worker run from the jars ``make setup`` fetched (see
``infra/jvm/pom.xml``); when they are missing the tests fail and say so, they never skip.
The production connector file ``infra/debezium/helpdesk-connector.json`` is registered
with ``triage connect register``, twice: as it is (JSON without schemas, topic prefix
``triage``) and with schemas enabled (prefix ``triage_s``). Only what must differ on this
machine is overridden: the database address, a secrets file for the ``file`` config
provider, unique slot names, a short heartbeat interval, and one extra table
(``type_probe``) with the column types the helpdesk schema does not use itself.

Rows inserted before the connectors start are the snapshot the tests expect as ``op: r``.
``kafka_mode`` runs ``triage pipeline`` in Kafka mode on the plain connector's topics, with
its own analytics database and Redis key prefix (``processes`` by indirect parameter).
Logs of the broker and the worker stay in the session's temporary directory; a failing
test's report names it and shows the end of the Connect log.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
from confluent_kafka import Consumer, KafkaError, Message

from connectors.kafka import KafkaSettings, cdc_topics
from models.events import RawChange, SourcePosition
from triage.kafka_local import (
    CONNECTOR_FILE,
    LocalKafka,
    LocalKafkaConnect,
    ensure_topics,
    jvm_classpath,
    local_connector_overrides,
)
from triage.runtime import PipelineProcess, Stack
from triage.services import LocalPostgres, LocalRedis, ServiceError
from triage.tools.report import routed_summary

REPO = Path(__file__).resolve().parents[2]

PLAIN_PREFIX = "triage"
SCHEMA_PREFIX = "triage_s"
PREFIXES = (PLAIN_PREFIX, SCHEMA_PREFIX)

# The column types the helpdesk tables use (text, bigint, smallint, boolean, timestamptz,
# jsonb, text[]) plus numeric and an enum type, which Debezium encodes in their own ways.
PROBE_DDL = """
CREATE TYPE probe_mood AS ENUM ('calm', 'angry', 'delighted');
CREATE TABLE type_probe (
    id         bigserial PRIMARY KEY,
    label      text NOT NULL,
    amount     numeric(12, 2),
    ratio      numeric,
    mood       probe_mood,
    moods      probe_mood[],
    tags       text[],
    scores     integer[],
    payload    jsonb,
    flag       boolean,
    small      smallint,
    at         timestamptz,
    note       text
);
ALTER PUBLICATION triage_cdc ADD TABLE type_probe;
"""

# Incompressible text larger than the TOAST threshold, so PostgreSQL stores it out of line
# and leaves it out of the WAL record of an update that does not touch it.
_TOAST_CHARS = 12_000


def toast_text(seed: str) -> str:
    """Text that PostgreSQL TOASTs out of line (random, so compression cannot shrink it)."""
    return f"{seed} {secrets.token_hex(_TOAST_CHARS // 2)}"


@pytest.fixture(scope="session")
def jvm_ready() -> str:
    """The jars' classpath; fails (never skips) when ``make setup`` has not fetched them."""
    try:
        return jvm_classpath()
    except ServiceError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def kafka_state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the broker and Connect keep data and logs (kept after the session)."""
    return tmp_path_factory.mktemp("real_kafka")


@pytest.fixture(scope="session")
def kafka_broker(jvm_ready: str, kafka_state: Path) -> Iterator[LocalKafka]:
    """A single-node KRaft broker on a free loopback port.

    Four partitions per auto-created topic, as in the compose stack, so that ordering per
    row (Debezium keys records by primary key) and pipeline processes sharing a topic's
    partitions are both exercised.
    """
    broker = LocalKafka(kafka_state / "kafka", heap="384m", num_partitions=4)
    try:
        broker.start()
    except ServiceError as exc:
        broker.stop()
        pytest.fail(str(exc), pytrace=False)
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def kafka_connect(kafka_broker: LocalKafka, kafka_state: Path) -> Iterator[LocalKafkaConnect]:
    """A standalone Kafka Connect worker with the Debezium PostgreSQL connector."""
    connect = LocalKafkaConnect(
        kafka_state / "connect", heap="384m", bootstrap=kafka_broker.bootstrap
    )
    try:
        connect.start()
    except ServiceError as exc:
        connect.stop()
        pytest.fail(str(exc), pytrace=False)
    try:
        yield connect
    finally:
        connect.stop()


@dataclass(frozen=True)
class SourceDb:
    """The helpdesk database Debezium reads, with what was in it before it started."""

    dsn: str
    name: str
    port: int
    snapshot_ids: dict[str, int]
    slots: dict[str, str]


@pytest.fixture(scope="session")
def source_db(postgres: LocalPostgres) -> SourceDb:
    """A fresh helpdesk database with the probe table and one row per table."""
    from sinks.migrations import apply_migrations
    from triage.runtime import SQL_DIR

    name = f"rk_{uuid.uuid4().hex[:8]}"
    dsn = postgres.create_database(name)
    apply_migrations(dsn, SQL_DIR / "source", schema="public")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(PROBE_DDL)
        ids = {
            "customers": _insert_id(
                conn,
                "INSERT INTO customers (name, email, tier, language)"
                " VALUES ('Snap Shot', 'snap@example.com', 'premium', 'de') RETURNING id",
            ),
            "agents": _insert_id(
                conn,
                "INSERT INTO agents (name, email, team, skills, languages)"
                " VALUES ('Ada', 'ada@example.com', 'billing', '{\"billing\": 0.9}',"
                " ARRAY['en', 'de']) RETURNING id",
            ),
            "kb_articles": _insert_id(
                conn,
                "INSERT INTO kb_articles (title, body) VALUES ('Reset a password', %s)"
                " RETURNING id",
                (toast_text("snapshot"),),
            ),
            "type_probe": _insert_id(
                conn,
                "INSERT INTO type_probe (label, amount, mood, tags, payload)"
                " VALUES ('snapshot', 1.50, 'calm', ARRAY['a'], '{\"k\": 1}') RETURNING id",
            ),
        }
        ids["tickets"] = _insert_id(
            conn,
            "INSERT INTO tickets (customer_id, subject)"
            " VALUES (%s, 'Snapshot ticket') RETURNING id",
            (ids["customers"],),
        )
    token = uuid.uuid4().hex[:6]
    slots = {prefix: f"rk_{token}_{prefix}" for prefix in PREFIXES}
    return SourceDb(dsn=dsn, name=name, port=postgres.port, snapshot_ids=ids, slots=slots)


def _insert_id(conn: psycopg.Connection[Any], query: str, params: tuple[Any, ...] = ()) -> int:
    row = conn.execute(query, params).fetchone()  # type: ignore[arg-type]
    assert row is not None
    return int(row[0])


def connector_overrides(source: SourceDb, prefix: str, secrets: Path) -> dict[str, str]:
    """What differs from the production connector file on this machine, per connector."""
    schemas = "true" if prefix == SCHEMA_PREFIX else "false"
    tables = json.loads(CONNECTOR_FILE.read_text())["config"]["table.include.list"]
    return local_connector_overrides(
        source.dsn,
        secrets,
        slot_name=source.slots[prefix],
        topic_prefix=prefix,
        extra={
            "table.include.list": f"{tables},public.type_probe",
            # Heartbeats every second, so the tests see some without waiting long.
            "heartbeat.interval.ms": "1000",
            "key.converter.schemas.enable": schemas,
            "value.converter.schemas.enable": schemas,
        },
    )


def register(connect_url: str, connector_file: Path) -> None:
    """``triage connect register`` against the local worker, as an operator would run it."""
    env = {**os.environ, "TRIAGE_KAFKA__CONNECT_URL": connect_url}
    result = subprocess.run(
        [sys.executable, "-m", "triage", "connect", "register", "--connector", str(connector_file)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    if result.returncode != 0 or "RUNNING" not in result.stdout + result.stderr:
        pytest.fail(
            f"triage connect register failed ({result.returncode}):\n"
            f"{result.stdout}\n{result.stderr}",
            pytrace=False,
        )


def register_production_connector(
    connect_url: str, name: str, overrides: dict[str, str], state: Path
) -> None:
    """Write the production connector file with ``overrides`` applied and register it."""
    production = json.loads(CONNECTOR_FILE.read_text())
    document = {"name": name, "config": {**production["config"], **overrides}}
    path = state / f"connector-{name}.json"
    path.write_text(json.dumps(document, indent=2))
    register(connect_url, path)


def register_all(connect_url: str, source: SourceDb, state: Path) -> None:
    """Register both connectors (again, after a standalone worker restarted)."""
    secrets = state / "helpdesk.properties"
    base = json.loads(CONNECTOR_FILE.read_text())["name"]
    for prefix in PREFIXES:
        overrides = connector_overrides(source, prefix, secrets)
        register_production_connector(connect_url, f"{base}-{prefix}", overrides, state)


def drop_slot_when_released(dsn: str, slot: str, *, timeout: float = 30.0) -> None:
    """Drop a replication slot once its consumer has let go of it."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            row = conn.execute(
                "SELECT active FROM pg_replication_slots WHERE slot_name = %s", (slot,)
            ).fetchone()
            if row is None:
                return
            if not row[0]:
                conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
                return
            time.sleep(0.2)


@pytest.fixture(scope="session")
def debezium(
    kafka_connect: LocalKafkaConnect, source_db: SourceDb, kafka_state: Path
) -> Iterator[SourceDb]:
    """Both connectors registered and RUNNING; their slots are dropped afterwards."""
    register_all(kafka_connect.url, source_db, kafka_state)
    try:
        yield source_db
    finally:
        _delete_connectors(kafka_connect.url)
        _drop_slots(source_db)


def _delete_connectors(url: str) -> None:
    import httpx

    try:
        for name in httpx.get(f"{url}/connectors", timeout=5).json():
            httpx.delete(f"{url}/connectors/{name}", timeout=30)
    except httpx.HTTPError:
        pass  # the worker is stopped next anyway


def _drop_slots(source: SourceDb) -> None:
    for slot in source.slots.values():
        drop_slot_when_released(source.dsn, slot)


@dataclass
class TopicLog:
    """Every record of one connector's topics, read from the beginning as they arrive.

    Tests make a change with a unique marker and wait for the records they expect with
    :meth:`wait_for`; everything read is kept so later checks can look at all of it.
    """

    bootstrap: str
    prefix: str
    records: list[Message] = field(default_factory=list)
    _consumer: Consumer | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self._consumer = Consumer(
            {
                "bootstrap.servers": self.bootstrap,
                "group.id": f"rk-{self.prefix}-{uuid.uuid4().hex[:6]}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                # Debezium creates topics as changes arrive; notice them quickly.
                "topic.metadata.refresh.interval.ms": 500,
            }
        )
        pattern = f"^({self.prefix}\\..*|__debezium-heartbeat\\.{self.prefix})$"
        self._consumer.subscribe([pattern])

    def wait_for(
        self, predicate: Callable[[Message], bool], *, count: int = 1, timeout: float = 60.0
    ) -> list[Message]:
        """Poll until ``count`` records (read so far or new) satisfy ``predicate``."""
        assert self._consumer is not None
        deadline = time.monotonic() + timeout
        while True:
            found = [record for record in self.records if predicate(record)]
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                topics = sorted({record.topic() or "" for record in self.records})
                raise AssertionError(
                    f"{self.prefix}: {len(found)}/{count} matching records after {timeout:.0f}s "
                    f"({len(self.records)} read, topics {topics})"
                )
            for message in self._consumer.consume(num_messages=500, timeout=0.5):
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
                        continue
                    raise AssertionError(f"consumer error: {error}")
                self.records.append(message)

    def close(self) -> None:
        """Leave the group."""
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None


@pytest.fixture(scope="session")
def topic_logs(kafka_broker: LocalKafka, debezium: SourceDb) -> Iterator[dict[str, TopicLog]]:
    """One :class:`TopicLog` per connector, keyed by topic prefix."""
    logs = {prefix: TopicLog(kafka_broker.bootstrap, prefix) for prefix in PREFIXES}
    try:
        yield logs
    finally:
        for topic_log in logs.values():
            topic_log.close()


def raw_change(message: Message) -> RawChange:
    """A Kafka record as the pipeline's Kafka source hands it to the decoder."""
    topic = message.topic() or ""
    return RawChange(
        topic=topic,
        key=message.key(),
        value=message.value(),
        position=SourcePosition(
            topic=topic, partition=message.partition(), offset=message.offset()
        ),
    )


def value_json(message: Message) -> dict[str, Any] | None:
    """The record's value as JSON, unwrapped from a schemas-enabled envelope."""
    value = message.value()
    if value is None:
        return None
    document = json.loads(value)
    if isinstance(document, dict) and "payload" in document and "op" not in document:
        document = document["payload"]
    return document if isinstance(document, dict) else None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """On failure, name the log directory and show the services' last warnings."""
    outcome = yield
    report = outcome.get_result()
    if report.failed and "kafka_state" in getattr(item, "fixturenames", ()):
        state: Path | None = getattr(item, "funcargs", {}).get("kafka_state")
        if state is not None:
            lines = [f"logs kept in {state}"]
            for log_file in (state / "kafka" / "broker.log", state / "connect" / "connect.log"):
                if log_file.exists():
                    text = log_file.read_text(errors="replace").splitlines()
                    problems = [line for line in text if " WARN " in line or " ERROR " in line]
                    lines += [f"--- {log_file.name}: last warnings and errors", *problems[-15:]]
            report.sections.append(("real Kafka logs", "\n".join(lines)))


@dataclass
class KafkaModeRun:
    """A pipeline in Kafka mode with its own stores, and the helpers to check them."""

    pipeline: PipelineProcess
    source_dsn: str
    analytics_dsn: str
    key_prefix: str
    client: redis.Redis

    def wait_routed(self, ticket_ids: list[int], *, timeout: float = 150.0) -> None:
        deadline = time.monotonic() + timeout
        summary = routed_summary(self.client, self.key_prefix, ticket_ids)
        while summary["tickets_routed"] < len(ticket_ids) and time.monotonic() < deadline:
            assert self.pipeline.alive(), self.pipeline.log_tail()
            time.sleep(0.25)
            summary = routed_summary(self.client, self.key_prefix, ticket_ids)
        assert summary["tickets_routed"] == len(ticket_ids), (summary, self.pipeline.log_tail())
        assert set(summary["routed_by_status"]) <= {"assigned", "queued", "released"}

    def assert_facts_equal_source(self, *, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            with psycopg.connect(self.source_dsn) as conn:
                source = dict(conn.execute("SELECT id, status FROM tickets").fetchall())
            with psycopg.connect(self.analytics_dsn) as conn:
                facts = dict(
                    conn.execute("SELECT ticket_id, status FROM analytics.ticket_facts").fetchall()
                )
            if facts == source or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert facts == source

    def assert_no_duplicate_decisions(self, ticket_ids: list[int]) -> None:
        versions: dict[int, list[int]] = defaultdict(list)
        for _, raw in self.client.xrange(f"{self.key_prefix}:decisions"):
            versions[int(raw[b"ticket_id"])].append(int(raw[b"version"]))
        assert set(ticket_ids) <= set(versions)
        for ticket_id, seen in versions.items():
            assert seen == sorted(set(seen)), (ticket_id, seen)
        with psycopg.connect(self.analytics_dsn) as conn:
            history = conn.execute(
                "SELECT ticket_id, version, count(*) FROM analytics.routing_decision_history"
                " GROUP BY ticket_id, version HAVING count(*) > 1"
            ).fetchall()
        assert history == []


@pytest.fixture
def kafka_mode(
    request: pytest.FixtureRequest,
    postgres: LocalPostgres,
    redis_server: LocalRedis,
    kafka_broker: LocalKafka,
    debezium: SourceDb,
    tmp_path: Path,
) -> Iterator[KafkaModeRun]:
    """Start ``triage pipeline`` in Kafka mode (``processes`` from the test's parameter)."""
    processes = getattr(request, "param", 1)
    analytics_dsn = postgres.create_database(f"rk_analytics_{uuid.uuid4().hex[:6]}")
    stack = Stack(source_dsn=debezium.dsn, analytics_dsn=analytics_dsn, redis_url=redis_server.url)
    key_prefix = f"rk{uuid.uuid4().hex[:6]}"
    # Debezium creates a table's topic with its first change, but Bytewax's KafkaSource
    # refuses to start on a topic that does not exist yet (a table without rows so far).
    # Production needs the same step before the pipeline starts.
    ensure_topics(kafka_broker.bootstrap, cdc_topics(KafkaSettings(topic_prefix=PLAIN_PREFIX)))
    pipeline = PipelineProcess(
        stack,
        tmp_path / "pipeline",
        extra_env={
            "TRIAGE_CDC__MODE": "kafka",
            "TRIAGE_CDC__TOPIC_PREFIX": PLAIN_PREFIX,
            "TRIAGE_KAFKA__BROKERS": json.dumps([kafka_broker.bootstrap]),
            "TRIAGE_REDIS__KEY_PREFIX": key_prefix,
            "TRIAGE_JOBS__ENABLED": "false",
            "TRIAGE_CLUSTER__PROCESSES": str(processes),
        },
    ).start()
    client = redis.Redis.from_url(redis_server.url)
    try:
        yield KafkaModeRun(pipeline, debezium.dsn, analytics_dsn, key_prefix, client)
    finally:
        pipeline.stop()
        client.close()


def wait_decisions(run: KafkaModeRun, count: int, *, timeout: float) -> None:
    """Wait until the decision stream holds at least ``count`` entries."""
    stream = f"{run.key_prefix}:decisions"
    deadline = time.monotonic() + timeout
    while run.client.xlen(stream) < count and time.monotonic() < deadline:
        assert run.pipeline.alive(), run.pipeline.log_tail()
        time.sleep(0.05)
    assert run.client.xlen(stream) >= count, run.pipeline.log_tail()
