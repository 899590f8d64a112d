"""Application settings composed from every component's own settings.

Only this module reads the environment (prefix ``TRIAGE_``, nested with ``__``), e.g.
``TRIAGE_SOURCE__DSN``, ``TRIAGE_REDIS__URL``, ``TRIAGE_CDC__MODE=kafka``,
``TRIAGE_KAFKA__BROKERS='["kafka:9092"]'``, ``TRIAGE_KAFKA__PUBLISH_ALERTS=true``. A
component whose URL is unset runs on the embedded default: a private PostgreSQL / Redis
started under ``state_dir``.
"""

from __future__ import annotations

from datetime import time, timedelta
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from connectors.kafka_config import KafkaSecuritySettings
from connectors.pg_cdc import PgCdcOptions
from pipelines.settings import PipelineSettings


class SourceDbSettings(PgCdcOptions):
    """The helpdesk's operational PostgreSQL (the CDC source) and the embedded reader's
    options (defaults from :class:`connectors.pg_cdc.PgCdcOptions`)."""

    model_config = ConfigDict(frozen=False)

    dsn: str | None = Field(
        default=None, description="unset: a private local PostgreSQL is started"
    )


class CdcSettings(BaseModel):
    mode: Literal["embedded", "kafka"] = "embedded"
    topic_prefix: str = "triage"


class KafkaAppSettings(BaseModel):
    brokers: list[str] = Field(default_factory=lambda: ["localhost:9092"])
    connect_url: str = "http://localhost:8083"
    alerts_topic: str = Field(
        default="triage.alerts", min_length=1, description="anomaly alerts and SLA breaches"
    )
    publish_alerts: bool | None = Field(
        default=None, description="unset: publish alerts to Kafka when cdc.mode is kafka"
    )
    dead_letter_topic: str = Field(
        default="triage.dead_letters",
        description="records the flow could not process, published beside alerts; '': none",
    )
    security: KafkaSecuritySettings = Field(
        default_factory=KafkaSecuritySettings,
        description="SASL/TLS of every client: consumer, alerts producer, topic admin",
    )
    extra_config: dict[str, str] = Field(
        default_factory=dict, description="more librdkafka properties for every client"
    )

    def client_config(self) -> dict[str, str]:
        """Properties every Kafka client of the application starts from (no brokers)."""
        return {**self.security.client_config(), **self.extra_config}


class AnalyticsSettings(BaseModel):
    """The analytics store (TimescaleDB in production, plain PostgreSQL embedded)."""

    dsn: str | None = Field(
        default=None, description="unset: the source PostgreSQL, schema analytics"
    )


class RedisSettings(BaseModel):
    url: str | None = Field(default=None, description="unset: a private local Redis is started")
    key_prefix: str = "triage"


class ElasticsearchSettings(BaseModel):
    """Ticket and KB search: Elasticsearch when ``url`` is set, else PostgreSQL full-text
    search in the analytics database (tables ``ticket_search`` and ``kb_search``)."""

    enabled: bool = Field(
        default=True, description="false: no search index (neither Elasticsearch nor PG FTS)"
    )
    url: str | None = Field(
        default=None, description="unset: PostgreSQL full-text search in the analytics DB"
    )
    api_key: SecretStr | None = None
    index_prefix: str = Field(
        default="triage",
        pattern=r"^[a-z0-9][a-z0-9_.-]{0,200}$",
        description="indices <prefix>-tickets and <prefix>-kb",
    )
    allow_pii: bool = Field(
        default=False, description="index e-mail addresses and phone numbers unmasked"
    )


class WarehouseSettings(BaseModel):
    """The BI warehouse: hive-partitioned Parquet under ``path``."""

    enabled: bool = True
    path: Path | None = Field(default=None, description="unset: <state_dir>/warehouse")
    allow_pii: bool = False


class TimescaleSettings(BaseModel):
    """Convert the analytics tables to TimescaleDB objects when the extension exists."""

    enabled: bool = True


class ApiServerSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    workers: int = Field(
        default=1, ge=1, le=64, description="uvicorn worker processes sharing the port"
    )
    auth_required: bool = Field(
        default=True,
        description="require API keys with scopes (`triage api-keys create`); "
        "`triage demo` turns this off unless it is set explicitly",
    )
    pool_min_size: int = Field(default=1, ge=0, le=100, description="idle PostgreSQL connections")
    pool_max_size: int = Field(default=4, ge=1, le=100, description="most PostgreSQL connections")
    statement_timeout_ms: int = Field(
        default=2000, ge=0, le=600_000, description="PostgreSQL cancels longer API queries (503)"
    )
    max_in_flight: int = Field(
        default=64, ge=1, le=10_000, description="requests at once; beyond: 503 + Retry-After"
    )
    retry_after_s: int = Field(default=1, ge=1, le=3600)
    outcomes_dsn: str | None = Field(
        default=None,
        description="helpdesk database login for POST /v1/outcomes (may insert into "
        "work_outcomes); unset: the run's source database",
    )
    docs_enabled: bool = Field(default=True, description="serve /docs and /openapi.json")
    metrics_enabled: bool = Field(default=True, description="serve /metrics")


class MetricsSettings(BaseModel):
    """Prometheus metrics of ``triage pipeline``, served at ``http://host:port/metrics``."""

    port: int | None = Field(default=None, ge=0, le=65535, description="unset: no metrics server")
    host: str = "127.0.0.1"


class ClusterSettings(BaseModel):
    """How the dataflow runs: Bytewax processes, worker threads, addresses, recovery.

    One host: ``processes`` > 1 makes ``triage pipeline`` start a local cluster of that many
    processes. Several hosts (or containers): run one ``triage pipeline`` per host with its
    ``process_id`` and the same ``addresses`` list (``host:port`` of every process, in
    process-id order), as Bytewax's own ``-i``/``-a`` options do.
    """

    processes: int = Field(default=1, ge=1, le=64, description="local cluster of processes")
    workers_per_process: int = Field(
        default=1, ge=1, le=64, description="worker threads per process (they share the GIL)"
    )
    process_id: int | None = Field(default=None, ge=0, description="this process in addresses")
    addresses: list[str] | None = Field(
        default=None, description="host:port of every process of the cluster, in id order"
    )
    recovery_dir: Path | None = Field(default=None, description="unset: <state_dir>/recovery")

    @property
    def total_processes(self) -> int:
        return len(self.addresses) if self.addresses else self.processes

    @property
    def total_workers(self) -> int:
        return self.total_processes * self.workers_per_process


JobName = Literal["forecast", "warehouse-compact", "warehouse-publish", "daily-summary"]
"""The batch jobs ``triage/jobs/scheduler.py`` schedules and ``triage/jobs/work.py`` runs."""


class JobsSettings(BaseModel):
    """Batch jobs that ``triage pipeline`` schedules beside the dataflow.

    Each run is a child process recorded in ``analytics.job_runs``. Daily jobs run at a
    UTC time of day (a missed slot is caught up at the next start); ``forecast`` runs every
    ``forecast_every`` after its last run. A failed run is retried after ``retry_after``,
    doubled for each further consecutive failure and never later than the job's interval.
    """

    enabled: bool = True
    disabled: tuple[JobName, ...] = Field(
        default=(), description="jobs not scheduled (still runnable with `triage jobs run`)"
    )
    forecast_every: timedelta = Field(default=timedelta(hours=1), gt=timedelta(0))
    forecast_timeout: timedelta = Field(default=timedelta(minutes=30), gt=timedelta(0))
    # Each hourly run adds a week of rows per series; the forecast job prunes older runs
    # (TimescaleDB's retention policy on the hypertable does the same).
    forecasts_keep: timedelta = Field(default=timedelta(days=180), gt=timedelta(days=7))
    job_runs_keep: timedelta = Field(default=timedelta(days=90), gt=timedelta(0))
    warehouse_compact_every: timedelta = Field(default=timedelta(days=1), gt=timedelta(0))
    warehouse_compact_at: time = Field(default=time(1, 0), description="UTC")
    warehouse_compact_timeout: timedelta = Field(default=timedelta(hours=1), gt=timedelta(0))
    warehouse_publish_every: timedelta = Field(
        default=timedelta(minutes=5),
        gt=timedelta(0),
        description="merge new change-log rows into the current-state Delta tables",
    )
    warehouse_publish_timeout: timedelta = Field(default=timedelta(minutes=30), gt=timedelta(0))
    dead_letters_publish_every: timedelta = Field(
        default=timedelta(minutes=1),
        gt=timedelta(0),
        description="relay the rows stores refused to the dead-letter topic (Kafka mode)",
    )
    dead_letters_publish_timeout: timedelta = Field(default=timedelta(minutes=10), gt=timedelta(0))
    warehouse_history_keep: timedelta = Field(
        default=timedelta(days=7),
        ge=timedelta(0),
        description="time travel on the Delta tables reaches back this far (nightly vacuum)",
    )
    daily_summary_at: time = Field(
        default=time(0, 10), description="UTC; summarises the previous UTC day"
    )
    daily_summary_timeout: timedelta = Field(default=timedelta(minutes=10), gt=timedelta(0))
    retry_after: timedelta = Field(default=timedelta(minutes=5), gt=timedelta(0))
    check_every: timedelta = Field(default=timedelta(seconds=30), gt=timedelta(0))
    start_delay: timedelta = Field(
        default=timedelta(minutes=1),
        ge=timedelta(0),
        description="first check after the pipeline starts (let the dataflow warm up)",
    )

    @field_validator("warehouse_compact_at", "daily_summary_at")
    @classmethod
    def _utc_time_of_day(cls, value: time) -> time:
        offset = value.utcoffset()
        if offset is not None and offset != timedelta(0):
            raise ValueError("a time of day in UTC (no offset, or +00:00)")
        return value.replace(tzinfo=None)


class AppSettings(BaseSettings):
    """Everything the ``triage`` command needs, from ``TRIAGE_*`` environment variables."""

    model_config = SettingsConfigDict(
        env_prefix="TRIAGE_", env_nested_delimiter="__", frozen=True, extra="ignore"
    )

    state_dir: Path = Path(".state")
    source: SourceDbSettings = SourceDbSettings()
    cdc: CdcSettings = CdcSettings()
    kafka: KafkaAppSettings = KafkaAppSettings()
    analytics: AnalyticsSettings = AnalyticsSettings()
    redis: RedisSettings = RedisSettings()
    elasticsearch: ElasticsearchSettings = ElasticsearchSettings()
    warehouse: WarehouseSettings = WarehouseSettings()
    timescale: TimescaleSettings = TimescaleSettings()
    api: ApiServerSettings = ApiServerSettings()
    pipeline: PipelineSettings = PipelineSettings()
    jobs: JobsSettings = JobsSettings()
    metrics: MetricsSettings = MetricsSettings()
    cluster: ClusterSettings = ClusterSettings()
    log_level: str = "WARNING"

    @property
    def recovery_dir(self) -> Path:
        return self.cluster.recovery_dir or self.state_dir / "recovery"

    @property
    def publishes_alerts(self) -> bool:
        """Whether the pipeline publishes alerts to ``kafka.alerts_topic``.

        ``kafka.publish_alerts`` decides when set; unset, alerts go to Kafka exactly when
        the CDC input comes from Kafka (production), not in the embedded mode.
        """
        if self.kafka.publish_alerts is not None:
            return self.kafka.publish_alerts
        return self.cdc.mode == "kafka"

    @property
    def dead_letter_topic(self) -> str | None:
        """The Kafka topic dead letters are published to (besides the analytics store):
        ``kafka.dead_letter_topic`` whenever alerts go to Kafka, unless it is empty."""
        if not self.publishes_alerts or not self.kafka.dead_letter_topic:
            return None
        return self.kafka.dead_letter_topic
