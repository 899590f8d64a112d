"""Request dependencies: the shared store clients opened by the app's lifespan.

They are ``async`` only so that FastAPI calls them on the event loop: a plain function
dependency is run in the thread pool, a hop that costs more than these lookups.
"""

from __future__ import annotations

from typing import Annotated, Any

import redis
from fastapi import Depends, Request
from psycopg_pool import ConnectionPool
from redis import asyncio as aioredis

from api.settings import ApiSettings


async def get_settings(request: Request) -> ApiSettings:
    """The settings the app was created with."""
    settings: ApiSettings = request.app.state.settings
    return settings


async def get_redis(request: Request) -> redis.Redis:
    """The app's Redis client (thread-safe; connections are pooled by redis-py)."""
    client: redis.Redis = request.app.state.redis
    return client


async def get_async_redis(request: Request) -> aioredis.Redis:
    """The app's asyncio Redis client, used on the event loop by the hottest reads."""
    client: aioredis.Redis = request.app.state.aredis
    return client


async def get_pg_pool(request: Request) -> ConnectionPool[Any]:
    """The app's PostgreSQL connection pool over the analytics database."""
    pool: ConnectionPool[Any] = request.app.state.pg_pool
    return pool


SettingsDep = Annotated[ApiSettings, Depends(get_settings)]
RedisDep = Annotated[redis.Redis, Depends(get_redis)]
AsyncRedisDep = Annotated[aioredis.Redis, Depends(get_async_redis)]
PgPoolDep = Annotated[ConnectionPool[Any], Depends(get_pg_pool)]
