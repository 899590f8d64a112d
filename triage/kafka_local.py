"""A real Kafka broker (KRaft) and Kafka Connect with Debezium, run locally without Docker.

The production path is Debezium's PostgreSQL connector in Kafka Connect writing to Kafka.
This module runs those same JVM programs as child processes on free loopback ports, from
the jars that ``make setup`` copies into ``infra/jvm/target/lib`` (pinned in
``infra/jvm/pom.xml``): a single-node broker that is its own KRaft controller, and a
standalone Connect worker whose offsets live in a file, with the Debezium connector on
its classpath. Nothing is downloaded here.

Each process writes its log to its state directory (``broker.log``, ``connect.log``, and
the JVM's own output in ``*.out``), which is kept after :meth:`stop` so a failed run can
be read afterwards. Readiness is polled (broker metadata, Connect's plugin list), never
assumed after a fixed sleep.

Kept as one module: the broker, Kafka Connect and their topic and connector
set-up run as one local CDC path with shared process handling.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from triage.services import ServiceError, free_port, wait_until

log = logging.getLogger(__name__)

JVM_DIR = Path(__file__).resolve().parents[1] / "infra" / "jvm"
JVM_LIB = JVM_DIR / "target" / "lib"
"""Where ``infra/jvm/fetch.sh`` puts the broker, Connect and Debezium jars."""

POSTGRES_CONNECTOR = "io.debezium.connector.postgresql.PostgresConnector"

# One jar of each part the services need; their absence means setup has not run.
_REQUIRED_JARS = ("kafka_2.13-*.jar", "connect-runtime-*.jar", "debezium-connector-postgres-*.jar")

# Small heaps and a single-threaded collector: the machine has two cores shared with
# PostgreSQL, Redis and the pipeline. C1-only JIT shortens start-up, which dominates here.
_JVM_FLAGS = (
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-Xss512k",
    "-Djava.awt.headless=true",
)

_LOG4J2 = """\
status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = {log_file}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
logger.kafka_request.name = kafka.request.logger
logger.kafka_request.level = WARN
logger.reflections.name = org.reflections
logger.reflections.level = ERROR
"""


def jvm_classpath(lib_dir: Path | None = None) -> str:
    """The classpath of the broker and Connect, after checking the jars are there.

    Args:
        lib_dir: Folder of jars; defaults to :data:`JVM_LIB`.

    Returns:
        A ``java -cp`` wildcard for the folder.

    Raises:
        ServiceError: Java or a required jar is missing; the message names ``make setup``.
    """
    lib = lib_dir or JVM_LIB
    missing = [pattern for pattern in _REQUIRED_JARS if not any(lib.glob(pattern))]
    if missing:
        raise ServiceError(
            f"Kafka/Debezium jars missing in {lib} ({', '.join(missing)}): run `make setup` "
            "(infra/jvm/fetch.sh copies them from Maven Central with infra/jvm/pom.xml)"
        )
    return f"{lib}/*"


def find_java() -> str:
    """The ``java`` executable (``JAVA_HOME`` first, then ``PATH``).

    Raises:
        ServiceError: No Java runtime is installed.
    """
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").exists():
        return str(Path(home) / "bin" / "java")
    found = shutil.which("java")
    if found is None:
        raise ServiceError(
            "java not found: install a Java 17+ runtime (Debian: `apt-get install "
            "openjdk-17-jre-headless`) and run `make setup`"
        )
    return found


def _write_properties(path: Path, values: dict[str, str]) -> None:
    path.write_text("".join(f"{key}={value}\n" for key, value in values.items()))


def _log_tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return "(no log)"


@dataclass
class _JavaProcess:
    """One JVM child process in its own session, with its output in ``<name>.out``."""

    state_dir: Path
    name: str = "java"
    heap: str = "384m"
    lib_dir: Path | None = None
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def log_file(self) -> Path:
        """The program's own log (Log4j 2)."""
        return self.state_dir / f"{self.name}.log"

    @property
    def out_file(self) -> Path:
        """The JVM's standard output and error."""
        return self.state_dir / f"{self.name}.out"

    @property
    def pid(self) -> int | None:
        """Process id while running."""
        return self._proc.pid if self._proc is not None else None

    def _java(self, main: str, *args: str) -> list[str]:
        log4j = self.state_dir / f"{self.name}-log4j2.properties"
        log4j.write_text(_LOG4J2.format(log_file=self.log_file))
        return [
            find_java(),
            f"-Xmx{self.heap}",
            "-Xms32m",
            *_JVM_FLAGS,
            f"-Dlog4j2.configurationFile={log4j}",
            "-cp",
            jvm_classpath(self.lib_dir),
            main,
            *args,
        ]

    def _spawn(self, cmd: list[str]) -> None:
        with open(self.out_file, "ab") as out:
            self._proc = subprocess.Popen(
                cmd,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.state_dir,
                start_new_session=True,
            )

    def _check_alive(self) -> None:
        if self._proc is not None and self._proc.poll() is not None:
            raise ServiceError(
                f"{self.name} exited with code {self._proc.returncode} during start-up; "
                f"see {self.log_file}:\n{_log_tail(self.log_file)}\n{_log_tail(self.out_file)}"
            )

    def _ready(self) -> bool:
        raise NotImplementedError

    def _wait_started(self, timeout: float, what: str) -> None:
        """Poll readiness; a process that does not become ready is stopped, not leaked."""
        try:
            wait_until(self._ready, timeout=timeout, what=what)
        except BaseException:
            self.stop(timeout=10)
            raise

    def running(self) -> bool:
        """Whether the process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def stop(self, *, timeout: float = 30.0) -> None:
        """Orderly shutdown (SIGTERM), falling back to SIGKILL after ``timeout``."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop within %.0fs; killing it", self.name, timeout)
            proc.kill()
            proc.wait()

    def kill(self) -> None:
        """SIGKILL, as a crash would (for recovery tests)."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()


@dataclass
class LocalKafka(_JavaProcess):
    """A single-node Kafka broker that is also its own KRaft controller.

    Topics are auto-created on first use with ``num_partitions`` partitions, as in the
    compose stack. The data directory survives :meth:`stop`, so a restart keeps topics
    and offsets.
    """

    name: str = "broker"
    port: int = 0
    controller_port: int = 0
    num_partitions: int = 1

    @property
    def bootstrap(self) -> str:
        """``host:port`` for clients."""
        return f"127.0.0.1:{self.port}"

    @property
    def data_dir(self) -> Path:
        """The broker's log directory (topics and metadata)."""
        return self.state_dir / "data"

    def start(self, *, timeout: float = 90.0) -> LocalKafka:
        """Format the storage (first start only), start the broker and wait for it.

        Raises:
            ServiceError: Java or the jars are missing, or the broker did not come up.
        """
        self.state_dir = self.state_dir.resolve()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        # Ports are kept across restarts so that clients' bootstrap addresses stay valid.
        self.port = self.port or free_port()
        self.controller_port = self.controller_port or free_port()
        config = self.state_dir / "server.properties"
        _write_properties(
            config,
            {
                "process.roles": "broker,controller",
                "node.id": "1",
                "listeners": (
                    f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}"
                ),
                "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
                "controller.listener.names": "CONTROLLER",
                "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
                "log.dirs": str(self.data_dir),
                "auto.create.topics.enable": "true",
                "num.partitions": str(self.num_partitions),
                "offsets.topic.replication.factor": "1",
                "offsets.topic.num.partitions": "4",
                "transaction.state.log.replication.factor": "1",
                "transaction.state.log.min.isr": "1",
                "share.coordinator.state.topic.replication.factor": "1",
                "share.coordinator.state.topic.min.isr": "1",
                "group.initial.rebalance.delay.ms": "0",
                "num.network.threads": "2",
                "num.io.threads": "2",
                "background.threads": "2",
            },
        )
        if not (self.data_dir / "meta.properties").exists():
            self._format(config)
        self._spawn(self._java("kafka.Kafka", str(config)))
        self._wait_started(timeout, f"Kafka broker on {self.bootstrap}")
        log.info("Kafka broker ready at %s (logs in %s)", self.bootstrap, self.state_dir)
        return self

    def _format(self, config: Path) -> None:
        cluster_id = uuid.uuid4().hex[:22]
        cmd = self._java("kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(config))
        result = subprocess.run(cmd, capture_output=True, cwd=self.state_dir, check=False)
        if result.returncode != 0:
            raise ServiceError(
                "formatting the Kafka storage failed: "
                + (result.stderr or result.stdout).decode(errors="replace")[-2000:]
            )

    def _ready(self) -> bool:
        self._check_alive()
        from confluent_kafka import KafkaException
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": self.bootstrap, "log_level": 0})
        try:
            metadata = admin.list_topics(timeout=2)
        except KafkaException:
            return False
        return bool(metadata.brokers)

    def __enter__(self) -> LocalKafka:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class LocalKafkaConnect(_JavaProcess):
    """A standalone Kafka Connect worker with Debezium's PostgreSQL connector.

    Connectors are registered through the REST API at :attr:`url`, exactly as in
    production (``triage connect register``). Source offsets are kept in a file in the
    state directory, so a restarted worker resumes where it stopped. The ``file`` config
    provider is enabled, as in the compose stack, so connector settings may read secrets
    with ``${file:<path>:<key>}``.
    """

    name: str = "connect"
    bootstrap: str = "127.0.0.1:9092"
    port: int = 0

    @property
    def url(self) -> str:
        """Base URL of the REST API."""
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, timeout: float = 90.0) -> LocalKafkaConnect:
        """Start the worker and wait until its REST API lists the Debezium connector.

        Raises:
            ServiceError: Java or the jars are missing, or the worker did not come up.
        """
        self.state_dir = self.state_dir.resolve()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        config = self.state_dir / "worker.properties"
        _write_properties(
            config,
            {
                "bootstrap.servers": self.bootstrap,
                "listeners": f"http://127.0.0.1:{self.port}",
                "key.converter": "org.apache.kafka.connect.json.JsonConverter",
                "value.converter": "org.apache.kafka.connect.json.JsonConverter",
                "offset.storage.file.filename": str(self.state_dir / "connect.offsets"),
                "offset.flush.interval.ms": "1000",
                # Plugins declare themselves through ServiceLoader manifests; scanning the
                # whole classpath instead would add seconds to every start.
                "plugin.discovery": "service_load",
                "config.providers": "file",
                "config.providers.file.class": (
                    "org.apache.kafka.common.config.provider.FileConfigProvider"
                ),
            },
        )
        self._spawn(self._java("org.apache.kafka.connect.cli.ConnectStandalone", str(config)))
        self._wait_started(timeout, f"Kafka Connect on {self.url}")
        log.info("Kafka Connect ready at %s (logs in %s)", self.url, self.state_dir)
        return self

    def _ready(self) -> bool:
        self._check_alive()
        try:
            resp = httpx.get(f"{self.url}/connector-plugins", timeout=2.0)
        except httpx.HTTPError:
            return False
        if resp.status_code != 200:
            return False
        classes = {plugin.get("class") for plugin in resp.json()}
        if POSTGRES_CONNECTOR not in classes:
            raise ServiceError(
                f"Kafka Connect at {self.url} has no {POSTGRES_CONNECTOR}; "
                "run `make setup` to fetch the Debezium jars"
            )
        return True

    def __enter__(self) -> LocalKafkaConnect:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def local_kafka_connect(
    state_dir: Path, *, lib_dir: Path | None = None
) -> Iterator[tuple[LocalKafka, LocalKafkaConnect]]:
    """Start a broker and a Connect worker under ``state_dir``; stop both on exit.

    Args:
        state_dir: Parent of the ``kafka`` and ``connect`` state directories (kept).
        lib_dir: Folder of jars; defaults to :data:`JVM_LIB`.

    Yields:
        The running broker and Connect worker.
    """
    jvm_classpath(lib_dir)  # fail before starting anything when setup has not run
    with LocalKafka(state_dir / "kafka", lib_dir=lib_dir) as kafka:
        connect = LocalKafkaConnect(
            state_dir / "connect", lib_dir=lib_dir, bootstrap=kafka.bootstrap
        )
        with connect:
            yield kafka, connect


CONNECTOR_FILE = JVM_DIR.parent / "debezium" / "helpdesk-connector.json"
"""The connector configuration production registers."""


def local_connector_overrides(
    source_dsn: str,
    secrets_file: Path,
    *,
    slot_name: str,
    topic_prefix: str = "triage",
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The settings of the production connector that differ for a local database.

    The database address comes from ``source_dsn``; the user and password are written to
    ``secrets_file`` and referenced through Connect's ``file`` config provider, as the
    compose stack does with its mounted secrets.

    Args:
        source_dsn: libpq URL or key/value string of the helpdesk database (TCP host).
        secrets_file: Where to write ``user=``/``password=`` (created or replaced).
        slot_name: Replication slot for this connector (unique per PostgreSQL cluster).
        topic_prefix: Debezium ``topic.prefix``.
        extra: Further settings, applied last.

    Returns:
        Settings to pass as overrides to :func:`connectors.kafka_connect.load_connector`.

    Raises:
        ServiceError: The DSN has no TCP host, database or user.
    """
    from psycopg.conninfo import conninfo_to_dict

    params = conninfo_to_dict(source_dsn)
    host, dbname, user = params.get("host"), params.get("dbname"), params.get("user")
    if not host or str(host).startswith("/") or not dbname or not user:
        raise ServiceError(
            f"Debezium needs a TCP host, a database and a user in the source DSN, got {params}"
        )
    secrets_file.write_text(f"user={user}\npassword={params.get('password') or ''}\n")
    secrets_file.chmod(0o600)
    overrides = {
        "database.hostname": str(host),
        "database.port": str(params.get("port") or 5432),
        "database.dbname": str(dbname),
        "database.user": f"${{file:{secrets_file}:user}}",
        "database.password": f"${{file:{secrets_file}:password}}",
        "topic.prefix": topic_prefix,
        "slot.name": slot_name,
    }
    overrides.update(extra or {})
    return overrides


def ensure_topics(
    bootstrap: str,
    topics: list[str],
    *,
    partitions: int = 4,
    timeout: float = 30.0,
    config: Mapping[str, str] | None = None,
    client_config: Mapping[str, str] | None = None,
) -> list[str]:
    """Create the topics that do not exist yet; returns those created.

    Debezium creates a table's topic with that table's first change, while the pipeline's
    Kafka source refuses to start on a missing topic, so the CDC topics are created before
    the pipeline starts. They get the CDC topics' configuration
    (:data:`connectors.kafka_config.CDC_TOPIC_CONFIG`: compacted, kept forever) unless
    ``config`` says otherwise, the same as ``triage kafka create-topics`` gives them.

    Raises:
        ServiceError: The broker did not answer or refused to create a topic.
    """
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    from connectors.kafka_config import CDC_TOPIC_CONFIG

    topic_config = dict(CDC_TOPIC_CONFIG if config is None else config)
    admin = AdminClient({**(client_config or {}), "bootstrap.servers": bootstrap})
    try:
        existing = set(admin.list_topics(timeout=timeout).topics)
        missing = [t for t in topics if t not in existing]
        if missing:
            futures = admin.create_topics(
                [NewTopic(t, num_partitions=partitions, config=topic_config) for t in missing]
            )
            for future in futures.values():
                future.result(timeout=timeout)
    except KafkaException as exc:
        raise ServiceError(f"cannot create Kafka topics on {bootstrap}: {exc}") from exc
    return missing


@dataclass
class LocalCdcPath:
    """The production inbound path running locally: broker, Connect, Debezium connector.

    Made by :func:`local_production_cdc`; tells a pipeline where to read
    (:meth:`pipeline_env`) and how far behind it is (:meth:`consumer_lag`).
    """

    kafka: LocalKafka
    connect: LocalKafkaConnect
    connector: str
    topic_prefix: str
    topics: list[str]

    @property
    def bootstrap(self) -> str:
        """``host:port`` of the broker."""
        return self.kafka.bootstrap

    def pipeline_env(self) -> dict[str, str]:
        """Environment that runs ``triage pipeline`` in Kafka mode on these topics."""
        import json

        return {
            "TRIAGE_CDC__MODE": "kafka",
            "TRIAGE_CDC__TOPIC_PREFIX": self.topic_prefix,
            "TRIAGE_KAFKA__BROKERS": json.dumps([self.bootstrap]),
            "TRIAGE_KAFKA__CONNECT_URL": self.connect.url,
        }

    def connector_state(self) -> str:
        """The connector's state as Kafka Connect reports it (``RUNNING``, ``FAILED``, ...)."""
        try:
            resp = httpx.get(f"{self.connect.url}/connectors/{self.connector}/status", timeout=5)
            return str(resp.json()["connector"]["state"]) if resp.status_code == 200 else "?"
        except (httpx.HTTPError, KeyError, ValueError):
            return "unreachable"

    def consumer_lag(self, recovery_dir: Path, *, flow_id: str = "triage") -> TopicLag:
        """How far the pipeline's durable positions are behind the topics' ends."""
        return consumer_lag(self.bootstrap, self.topics, recovery_dir, flow_id=flow_id)


@dataclass(frozen=True)
class TopicLag:
    """Per topic: records in it, and records after the pipeline's durable position."""

    records: dict[str, int]
    lag: dict[str, int]

    @property
    def total(self) -> int:
        """Records not yet durable downstream, over every topic."""
        return sum(self.lag.values())

    def as_dict(self) -> dict[str, object]:
        """The JSON form used in summaries."""
        return {"total": self.total, "by_topic": dict(self.lag), "records": dict(self.records)}


def consumer_lag(
    bootstrap: str, topics: list[str], recovery_dir: Path, *, flow_id: str = "triage"
) -> TopicLag:
    """Consumer lag of a Kafka-mode pipeline, per topic, from its recovery store.

    The pipeline commits no consumer-group offsets: Bytewax keeps each partition's next
    offset in its recovery snapshots. The lag is a partition's end offset minus the
    offset of the last epoch that completed the whole dataflow (sinks included), so a
    record counts as consumed only once its results are stored.

    Args:
        bootstrap: ``host:port`` of the broker.
        topics: The CDC topics the pipeline reads.
        recovery_dir: The pipeline's recovery directory (read only; the files are
            Bytewax's, so call this from another process than the pipeline's).
        flow_id: The dataflow's id (``TRIAGE_PIPELINE__FLOW_ID``).

    Raises:
        ServiceError: The broker did not answer.
    """
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    from pipelines.recovery import committed_state

    step = f"{flow_id}.read_cdc.kafka_input"
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "triage-lag-probe"})
    records: dict[str, int] = {}
    lag: dict[str, int] = {}
    try:
        metadata = consumer.list_topics(timeout=10)
        for topic in topics:
            partitions = metadata.topics.get(topic)
            records[topic] = lag[topic] = 0
            if partitions is None:
                continue
            for idx in sorted(partitions.partitions):
                low, high = consumer.get_watermark_offsets(TopicPartition(topic, idx), timeout=10)
                durable = committed_state(recovery_dir, step, f"{idx}-{topic}")
                # No snapshot yet, or one from before the first read (OFFSET_BEGINNING).
                start = durable if isinstance(durable, int) and durable >= 0 else low
                records[topic] += high - low
                lag[topic] += max(high - max(start, low), 0)
    except KafkaException as exc:
        raise ServiceError(f"cannot read offsets from {bootstrap}: {exc}") from exc
    finally:
        consumer.close()
    return TopicLag(records=records, lag=lag)


@contextlib.contextmanager
def local_production_cdc(
    source_dsn: str,
    state_dir: Path,
    *,
    connector_file: Path = CONNECTOR_FILE,
    partitions: int = 4,
    lib_dir: Path | None = None,
) -> Iterator[LocalCdcPath]:
    """Broker, Connect and the production Debezium connector for a local database.

    The connector file is registered as ``triage connect register`` does (the same
    :func:`~connectors.kafka_connect.load_connector` and
    :func:`~connectors.kafka_connect.register_connector`), with only
    :func:`local_connector_overrides` applied, and the CDC topics are created with
    ``partitions`` partitions as in the compose stack. Everything is stopped on exit
    (Connect first, so it flushes its offsets while the broker is still there); state and
    logs stay in ``state_dir`` (``kafka/``, ``connect/``), so a second run resumes.

    Args:
        source_dsn: The helpdesk database (TCP host; its publication must exist).
        state_dir: Parent of the services' state directories.
        connector_file: The connector JSON (defaults to the production file).
        partitions: Partitions per CDC topic.
        lib_dir: Folder of jars; defaults to :data:`JVM_LIB`.

    Raises:
        ServiceError: Java or the jars are missing, a service did not start, or Kafka
            Connect refused the connector.
    """
    from connectors.kafka import KafkaSettings, cdc_topics
    from connectors.kafka_connect import ConnectError, load_connector, register_connector

    # The JVMs read files named in their configs (the connector's secrets file): a path
    # relative to this process's directory (the default `.state`) would not resolve there.
    state_dir = state_dir.resolve()

    jvm_classpath(lib_dir)  # fail before starting anything when setup has not run
    state_dir.mkdir(parents=True, exist_ok=True)
    _, production = load_connector(connector_file)
    overrides = local_connector_overrides(
        source_dsn,
        state_dir / "helpdesk.properties",
        slot_name=production["slot.name"],
        topic_prefix=production["topic.prefix"],
    )
    name, config = load_connector(connector_file, overrides)
    prefix = config["topic.prefix"]
    topics = cdc_topics(KafkaSettings(topic_prefix=prefix))
    with LocalKafka(state_dir / "kafka", lib_dir=lib_dir, num_partitions=partitions) as kafka:
        ensure_topics(kafka.bootstrap, topics, partitions=partitions)
        with LocalKafkaConnect(
            state_dir / "connect", lib_dir=lib_dir, bootstrap=kafka.bootstrap
        ) as connect:
            try:
                register_connector(connect.url, name, config, wait_running=120.0)
            except ConnectError as exc:
                raise ServiceError(
                    f"{exc}; Connect log: {connect.log_file}\n{_log_tail(connect.log_file)}"
                ) from exc
            yield LocalCdcPath(kafka, connect, name, prefix, topics)
