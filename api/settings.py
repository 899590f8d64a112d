"""Settings of the read API, composed by the application from the environment."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class ApiSettings(BaseModel):
    """Where the API reads from and how long it waits.

    Attributes:
        redis_url: Redis holding live routing state (written by ``RedisSink``).
        analytics_dsn: libpq connection string of the analytics database.
        key_prefix: Redis key prefix; must match the ``RedisSink`` prefix.
        analytics_schema: Schema of the analytics tables.
        store_timeout_s: Seconds to wait for a store on connect, per reply and in health checks.
        pool_max_size: Most PostgreSQL connections the API keeps open.
        auth_required: Require an API key with the route's scope (see ``api.security``);
            off, every request is served as an anonymous reader without rate limit.
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
    analytics_schema: str = "analytics"
    store_timeout_s: float = Field(default=2.0, gt=0, le=60)
    pool_max_size: int = Field(default=4, ge=1, le=100)
    auth_required: bool = False
    auth_cache_ttl_s: float = Field(default=5.0, ge=0, le=300)
    elasticsearch_url: str | None = Field(default=None, description="unset: PostgreSQL FTS")
    elasticsearch_api_key: SecretStr | None = None
    search_index_prefix: str = Field(default="triage", pattern=r"^[a-z0-9][a-z0-9_.-]{0,200}$")

    @field_validator("analytics_schema")
    @classmethod
    def _plain_identifier(cls, value: str) -> str:
        if not _IDENTIFIER.match(value):
            raise ValueError(f"analytics_schema must be a plain SQL identifier, got {value!r}")
        return value
