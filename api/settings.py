"""Settings of the read API, composed by the application from the environment."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from models.codecs import ANALYTICS_SCHEMA

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class ApiSettings(BaseModel):
    """Where the API reads from and how long it waits.

    Attributes:
        redis_url: Redis holding live routing state (written by ``RedisSink``).
        analytics_dsn: libpq connection string of the analytics database.
        key_prefix: Redis key prefix; must match the ``RedisSink`` prefix.
        analytics_schema: Schema of the analytics tables.
        store_timeout_s: Seconds to wait for a store on connect, per reply and in health checks.
        pool_min_size: PostgreSQL connections the API keeps open when idle.
        pool_max_size: Most PostgreSQL connections the API keeps open.
        statement_timeout_ms: PostgreSQL cancels any API query running longer (the
            request is answered 503); 0 turns the limit off.
        max_in_flight: Requests the API answers at once; beyond that it refuses new ones
            at once with 503 and ``Retry-After`` instead of queueing them without bound
            (``/health`` and ``/metrics`` are never refused).
        retry_after_s: The ``Retry-After`` of those refusals.
        docs_enabled: Serve the OpenAPI document and its pages (``/openapi.json``,
            ``/docs``, ``/redoc``); off, they answer 404.
        metrics_enabled: Serve Prometheus metrics at ``/metrics`` (without a key: they
            hold request counts and latencies per route, no customer data); off, 404.
        auth_required: Require an API key with the route's scope (see ``api.security``;
            the default); off, every request is served as an anonymous reader without
            rate limit, which only a local demo should do.
        auth_cache_ttl_s: Seconds a resolved key is cached in-process; a revoked key is
            refused at most this long after its revocation (0: look up every request).
        elasticsearch_url: Elasticsearch holding the search indices (written by
            ``ElasticsearchSearchSink``); unset, search reads PostgreSQL full-text search
            tables in the analytics database.
        elasticsearch_api_key: API key for Elasticsearch, if it requires one.
        search_index_prefix: Prefix of the search indices; must match the sink's.
    """

    model_config = ConfigDict(frozen=True)

    redis_url: str = Field(description="Redis URL, e.g. redis://localhost:6379/0")
    analytics_dsn: str = Field(description="libpq DSN of the analytics database")
    key_prefix: str = Field(default="triage", min_length=1, pattern=r"^[^:\s]+$")
    analytics_schema: str = ANALYTICS_SCHEMA
    store_timeout_s: float = Field(default=2.0, gt=0, le=60)
    pool_min_size: int = Field(default=1, ge=0, le=100)
    pool_max_size: int = Field(default=4, ge=1, le=100)
    statement_timeout_ms: int = Field(default=2000, ge=0, le=600_000)
    max_in_flight: int = Field(default=64, ge=1, le=10_000)
    retry_after_s: int = Field(default=1, ge=1, le=3600)
    docs_enabled: bool = True
    metrics_enabled: bool = True
    auth_required: bool = True
    auth_cache_ttl_s: float = Field(default=5.0, ge=0, le=300)
    outcomes_dsn: str | None = Field(
        default=None,
        description="libpq DSN of the helpdesk database for POST /v1/outcomes (a login "
        "that may insert into work_outcomes); unset: the route answers 503",
    )
    elasticsearch_url: str | None = Field(default=None, description="unset: PostgreSQL FTS")
    elasticsearch_api_key: SecretStr | None = None
    search_index_prefix: str = Field(default="triage", pattern=r"^[a-z0-9][a-z0-9_.-]{0,200}$")

    @model_validator(mode="after")
    def _pool_bounds(self) -> ApiSettings:
        if self.pool_min_size > self.pool_max_size:
            raise ValueError("pool_min_size must not exceed pool_max_size")
        return self

    @field_validator("analytics_schema")
    @classmethod
    def _plain_identifier(cls, value: str) -> str:
        if not _IDENTIFIER.match(value):
            raise ValueError(f"analytics_schema must be a plain SQL identifier, got {value!r}")
        return value
