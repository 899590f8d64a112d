"""Starting the pieces together: services, schemas, the pipeline process and the API.

Kept as one module: it is the composition root: every adapter is built from
settings here and nowhere else.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import signal
import subprocess
import sys
import threading
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from triage.settings import AppSettings
from triage.stack import Stack
from triage.stack import open_stack as open_stack  # re-exported for the commands

if TYPE_CHECKING:
    from bytewax.outputs import Sink

    from api.settings import ApiSettings

log = logging.getLogger(__name__)

SQL_DIR = Path(__file__).resolve().parents[1] / "sql"


def migrate(stack: Stack, *, timescale: bool = True) -> list[str]:
    """Apply the source and analytics schemas (idempotent); returns what was applied.

    With ``timescale`` and the TimescaleDB extension present, the time-series tables
    become hypertables with continuous aggregates and policies; otherwise the plain
    PostgreSQL tables, views and ``time_bucket`` shim stay.
    """
    from sinks.migrations import apply_migrations

    applied = apply_migrations(stack.source_dsn, SQL_DIR / "source", schema="public")
    applied += apply_migrations(stack.analytics_dsn, SQL_DIR / "analytics", schema="analytics")
    if timescale:
        from sinks.timescale import apply_timescale

        report = apply_timescale(stack.analytics_dsn)
        log.info("timescale: %s", report)
    return list(applied)


def build_pipeline(settings: AppSettings, stack: Stack, recovery_dir: Path):
    """The dataflow with the configured source and sinks.

    Analytics and Redis always; the warehouse when enabled; the Kafka alerts topic when
    ``settings.publishes_alerts`` (by default in Kafka mode).
    """
    from models.language import preload

    preload(settings.pipeline.languages)  # overlaps the imports below

    from bytewax.dataflow import Dataflow, Stream
    from bytewax.inputs import Source

    from models.events import DeadLetter, RawChange
    from pipelines.flow import InputFactory, build_flow
    from pipelines.recovery import RecoveryWatermark, ensure_recovery_dir
    from sinks.postgres import PostgresSink
    from sinks.redis import RedisSink

    ensure_recovery_dir(recovery_dir, settings.cluster.total_workers)
    source: Source | InputFactory
    if settings.cdc.mode == "kafka":
        from connectors.kafka import KafkaSettings, read_cdc

        kafka = KafkaSettings(
            brokers=settings.kafka.brokers,
            topic_prefix=settings.cdc.topic_prefix,
            security=settings.kafka.security,
            extra_config=settings.kafka.extra_config,
        )

        def source(flow: Dataflow) -> tuple[Stream[RawChange], Stream[DeadLetter]]:
            out = read_cdc("read_cdc", flow, kafka)
            return out.oks, out.errs

    else:
        from connectors.pg_cdc import PgCdcSettings, PgCdcSource

        cdc = PgCdcSettings(
            **settings.source.model_dump(exclude={"dsn"}),
            dsn=stack.source_dsn,
            topic_prefix=settings.cdc.topic_prefix,
        )
        watermark = RecoveryWatermark(
            recovery_dir,
            f"{settings.pipeline.flow_id}.read_cdc",
            settings.source.slot_name,
            interval=0.25,
        )
        source = PgCdcSource(cdc, durable_lsn=watermark)
    warehouse = None
    if settings.warehouse.enabled:
        from sinks.warehouse import WarehouseSink

        warehouse = WarehouseSink(
            settings.warehouse.path or settings.state_dir / "warehouse",
            allow_pii=settings.warehouse.allow_pii,
        )
    alerts = None
    if settings.publishes_alerts:
        from sinks.kafka_alerts import KafkaAlertSink

        alerts = KafkaAlertSink(
            settings.kafka.brokers,
            topic=settings.kafka.alerts_topic,
            extra_config=settings.kafka.client_config(),
        )
    dead_letter_topic = None
    if settings.dead_letter_topic is not None:
        from sinks.kafka_alerts import KafkaDeadLetterSink

        dead_letter_topic = KafkaDeadLetterSink(
            settings.kafka.brokers,
            topic=settings.dead_letter_topic,
            extra_config=settings.kafka.client_config(),
        )
    pipeline = settings.pipeline
    if pipeline.reorder_window is None and settings.cdc.mode == "kafka":
        pipeline = pipeline.model_copy(update={"reorder_window": timedelta(seconds=1)})
    return build_flow(
        pipeline,
        source=source,
        analytics_sink=PostgresSink(stack.analytics_dsn),
        decision_sink=RedisSink(
            stack.redis_url, prefix=settings.redis.key_prefix, dead_letter_dsn=stack.analytics_dsn
        ),
        warehouse_sink=warehouse,
        alert_sink=alerts,
        search_sink=search_sink(settings, stack),
        model_store=model_store(settings, stack),
        dead_letter_sink=dead_letter_topic,
    )


def search_sink(settings: AppSettings, stack: Stack) -> Sink[Any] | None:
    """Ticket and KB search: Elasticsearch when ``elasticsearch.url`` is set, else
    PostgreSQL full-text search in the analytics database; ``None`` when disabled."""
    es = settings.elasticsearch
    if not es.enabled:
        return None
    if es.url:
        from sinks.search_es import ElasticsearchSearchSink

        return ElasticsearchSearchSink(
            es.url,
            api_key=es.api_key.get_secret_value() if es.api_key is not None else None,
            index_prefix=es.index_prefix,
            allow_pii=es.allow_pii,
            # Documents Elasticsearch refuses go to the analytics store's dead letters.
            dead_letter_dsn=stack.analytics_dsn,
        )
    from sinks.search_pg import PostgresSearchSink

    return PostgresSearchSink(stack.analytics_dsn, allow_pii=es.allow_pii)


def api_settings(settings: AppSettings, stack: Stack) -> ApiSettings:
    """What the read API needs from the application settings and this run's stores."""
    from api.settings import ApiSettings

    es = settings.elasticsearch
    return ApiSettings(
        redis_url=stack.redis_url,
        analytics_dsn=stack.analytics_dsn,
        key_prefix=settings.redis.key_prefix,
        auth_required=settings.api.auth_required,
        pool_min_size=settings.api.pool_min_size,
        pool_max_size=settings.api.pool_max_size,
        statement_timeout_ms=settings.api.statement_timeout_ms,
        max_in_flight=settings.api.max_in_flight,
        retry_after_s=settings.api.retry_after_s,
        docs_enabled=settings.api.docs_enabled,
        metrics_enabled=settings.api.metrics_enabled,
        outcomes_dsn=settings.api.outcomes_dsn or stack.source_dsn,
        elasticsearch_url=es.url if es.enabled else None,
        elasticsearch_api_key=es.api_key,
        search_index_prefix=es.index_prefix,
    )


def model_store(settings: AppSettings, stack: Stack):
    """Where the text models travel between workers: Redis in a cluster of processes,
    immutable in-memory copies between the threads of one process, else ``None`` (one
    worker: the flow shares them by reference)."""
    if settings.cluster.total_processes <= 1:
        if settings.cluster.workers_per_process > 1:
            from models.intelligence import SnapshotModelStore

            return SnapshotModelStore()
        return None
    from sinks.model_store import RedisModelStore

    return RedisModelStore(
        stack.redis_url, prefix=settings.redis.key_prefix, flow_id=settings.pipeline.flow_id
    )


def _interrupted(exc: BaseException) -> bool:
    """Whether a KeyboardInterrupt is anywhere in the exception's chain."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, KeyboardInterrupt):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def run_pipeline(settings: AppSettings, stack: Stack, recovery_dir: Path | None = None) -> None:
    """Run this process's part of the dataflow until it is interrupted.

    Bytewax's own execution entry point (``bytewax.run.cli_main``) runs the flow with
    ``cluster.workers_per_process`` worker threads; with ``cluster.process_id`` and
    ``cluster.addresses`` this process joins a cluster (one process per host, or the local
    cluster that :func:`triage.cluster.run_local_cluster` starts). With
    ``settings.jobs.enabled`` the batch-job scheduler runs beside it in a thread (each job
    in its own child process); with ``settings.metrics.port`` the Prometheus metrics are
    served from another thread (process ``i`` of a cluster on ``port + i``).
    """
    from bytewax.recovery import RecoveryConfig
    from bytewax.run import cli_main

    from triage.jobs.scheduler import JobScheduler

    cluster = settings.cluster
    recovery_dir = recovery_dir or settings.recovery_dir
    process_id = cluster.process_id or 0
    if settings.metrics.port is not None:
        from pipelines.metrics import serve_metrics

        port = settings.metrics.port + process_id if settings.metrics.port else 0
        serve_metrics(settings.metrics.host, port)
    if settings.cdc.mode == "kafka":
        # Debezium creates a table's topic with its first change; the source refuses to
        # start on a missing topic, so every captured table's topic exists before it does.
        from connectors.kafka import KafkaSettings, cdc_topics
        from triage.kafka_local import ensure_topics

        topics = cdc_topics(
            KafkaSettings(brokers=settings.kafka.brokers, topic_prefix=settings.cdc.topic_prefix)
        )
        ensure_topics(
            ",".join(settings.kafka.brokers), topics, client_config=settings.kafka.client_config()
        )
    flow = build_pipeline(settings, stack, recovery_dir)
    # Keyed state holds millions of small objects; the default cyclic-GC thresholds made
    # full collections walk all of them every few seconds (tail-latency spikes). Objects
    # alive after start-up are frozen out of collection and young collections run less.
    gc.collect()
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)
    jobs = None
    if settings.jobs.enabled and process_id == 0:
        jobs = JobScheduler.from_settings(settings, stack).start()
    try:
        cli_main(
            flow,
            workers_per_process=cluster.workers_per_process,
            process_id=cluster.process_id if cluster.addresses else None,
            addresses=cluster.addresses or None,
            epoch_interval=settings.pipeline.epoch_interval,
            recovery_config=RecoveryConfig(str(recovery_dir)),
        )
    except Exception as exc:
        # Bytewax turns SIGINT/SIGTERM into this error, or into a failed step whose cause is
        # the KeyboardInterrupt; either is a normal stop: recovery resumes from the last
        # complete epoch and the sinks' idempotent writes absorb the replay.
        if "signal received" in str(exc) or _interrupted(exc):
            log.info("pipeline stopped by signal")
            return
        raise
    finally:
        if jobs is not None:
            jobs.stop()


class PipelineProcess:
    """The dataflow in a child process (``triage pipeline``), so it can crash and restart."""

    def __init__(self, stack: Stack, state_dir: Path, extra_env: dict[str, str] | None = None):
        self.stack = stack
        self.state_dir = state_dir
        self.extra_env = extra_env or {}
        self.proc: subprocess.Popen[bytes] | None = None

    def wait_ready(self, slot: str, *, flow_id: str = "triage", timeout: float = 90.0) -> None:
        """Wait until CDC is capturing and the pipeline has completed its first epoch.

        The first complete epoch means the initial snapshot (agents, customers) went
        through every step, so tickets written from now on are measured fairly.
        """
        from connectors.pg_cdc import slot_position
        from pipelines.recovery import committed_state
        from triage.services import wait_until

        def ready() -> bool:
            self._check_started()
            if slot_position(self.stack.source_dsn, slot) is None:
                return False
            recovery = self.state_dir / "recovery"
            return committed_state(recovery, f"{flow_id}.read_cdc", slot) is not None

        wait_until(ready, timeout=timeout, what="pipeline replication slot")

    def _check_started(self) -> None:
        from triage.services import ServiceError

        if not self.alive():
            code = self.proc.returncode if self.proc is not None else None
            raise ServiceError(
                f"pipeline exited during start-up (exit code {code}); log "
                f"{self.state_dir / 'pipeline.log'}:\n{self.log_tail()}"
            )

    def wait_running(self, *, timeout: float = 90.0) -> None:
        """Wait until every worker has completed an epoch: the flow, whatever its source
        (the Kafka path too), has started and passed its first items through."""
        from pipelines.recovery import epochs_completed
        from triage.services import wait_until

        def running() -> bool:
            self._check_started()
            return epochs_completed(self.state_dir / "recovery")

        wait_until(running, timeout=timeout, what="pipeline's first epoch")

    def start(self) -> PipelineProcess:
        env = {**os.environ, **self.stack.env(), **self.extra_env}
        env["TRIAGE_STATE_DIR"] = str(self.state_dir)
        # A crash in native code (signal) still leaves a Python traceback in the log.
        env.setdefault("PYTHONFAULTHANDLER", "1")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.state_dir / "pipeline.log"
        with open(log_path, "ab") as logfile:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "triage", "pipeline"],
                env=env,
                stdout=logfile,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int | None:
        """The pipeline's process id (the parent of a local cluster's processes)."""
        return self.proc.pid if self.proc is not None else None

    def kill(self) -> None:
        """SIGKILL to the pipeline and every process it started, as a crash would."""
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self, timeout: float = 15.0) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        # A local cluster's processes share the group: none may outlive the pipeline.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)

    def log_tail(self, chars: int = 3000) -> str:
        path = self.state_dir / "pipeline.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""


class ApiServer:
    """The FastAPI app served by uvicorn in a background thread."""

    def __init__(self, settings: AppSettings, stack: Stack, port: int | None = None) -> None:
        import uvicorn

        from api.app import create_app

        app = create_app(api_settings(settings, stack))
        config = uvicorn.Config(
            app,
            host=settings.api.host,
            port=settings.api.port if port is None else port,
            log_level="warning",
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="api", daemon=True)

    @property
    def base_url(self) -> str:
        cfg = self.server.config
        return f"http://{cfg.host}:{cfg.port}"

    def start(self) -> ApiServer:
        import socket

        from triage.services import ServiceError, wait_until

        cfg = self.server.config
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((cfg.host, cfg.port))
            except OSError as exc:
                raise ServiceError(
                    f"cannot serve the API on {cfg.host}:{cfg.port} ({exc.strerror}); "
                    "set TRIAGE_API__PORT to a free port or stop what holds it"
                ) from exc
        self.thread.start()
        # uvicorn exits its thread when it cannot start: fail at once, not at the timeout.
        wait_until(
            lambda: self.server.started or not self.thread.is_alive(),
            timeout=30,
            what="API server",
        )
        if not self.server.started:
            raise ServiceError(f"the API server did not start on {cfg.host}:{cfg.port}")
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
