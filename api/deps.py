"""Request dependencies: the shared store clients opened by the app's lifespan."""

from __future__ import annotations

from typing import Annotated, Any

import redis
from fastapi import Depends, Request
from psycopg_pool import ConnectionPool

from api.settings import ApiSettings


def get_settings(request: Request) -> ApiSettings:
    """The settings the app was created with."""
    settings: ApiSettings = request.app.state.settings
    return settings


def get_redis(request: Request) -> redis.Redis:
    """The app's Redis client (thread-safe; connections are pooled by redis-py)."""
    client: redis.Redis = request.app.state.redis
    return client


def get_pg_pool(request: Request) -> ConnectionPool[Any]:
    """The app's PostgreSQL connection pool over the analytics database."""
    pool: ConnectionPool[Any] = request.app.state.pg_pool
    return pool


SettingsDep = Annotated[ApiSettings, Depends(get_settings)]
RedisDep = Annotated[redis.Redis, Depends(get_redis)]
PgPoolDep = Annotated[ConnectionPool[Any], Depends(get_pg_pool)]
