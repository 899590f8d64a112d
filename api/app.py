"""The FastAPI application: routing reads over Redis and the analytics database."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
import redis
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from psycopg_pool import ConnectionPool, PoolTimeout
from redis import asyncio as aioredis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from api.metrics import instrument
from api.routes import dashboard, health, outcomes, reports, routing, search, sla
from api.schemas import ErrorPublic
from api.security import AccessControl, AccessMiddleware, require_scope, split_router
from api.settings import ApiSettings
from api.shedding import LoadShedMiddleware

log = logging.getLogger(__name__)

DESCRIPTION = """
Read layer of Smart Triage: live routing decisions, agent queues, holding lists and
SLA clocks with breach risk.

Live state is served from Redis as the pipeline writes it; when Redis has no entry or is
unreachable, the analytics database answers. Invalid input gets a 4xx answer, an
unavailable store, a query past its time limit or a server at its limit of requests
in progress a 503 (the last with `Retry-After`).
"""

_OVERLOAD: dict[str, Any] = {
    "model": ErrorPublic,
    "description": "A store is unavailable or slow, or the API is overloaded (Retry-After).",
}
_KEYED: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorPublic, "description": "No API key, or an unknown or revoked one."},
    403: {"model": ErrorPublic, "description": "The API key lacks the route's scope."},
    429: {"model": ErrorPublic, "description": "The key's rate limit is exceeded (Retry-After)."},
    503: _OVERLOAD,
}
"""Answers every key-protected route may give besides its own."""


def _redis_options(settings: ApiSettings) -> dict[str, Any]:
    timeout = settings.store_timeout_s
    return {
        "decode_responses": True,
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
    }


def _redis_client(settings: ApiSettings) -> redis.Redis:
    return redis.Redis.from_url(
        settings.redis_url,
        **_redis_options(settings),
        # One quick retry absorbs a dropped idle connection without stalling requests.
        retry=Retry(ExponentialBackoff(cap=0.2, base=0.05), 1),
    )


def _async_redis_client(settings: ApiSettings) -> aioredis.Redis:
    """The event loop's client, for the hottest reads (no thread hop per request)."""
    return aioredis.Redis.from_url(
        settings.redis_url,
        **_redis_options(settings),
        retry=AsyncRetry(ExponentialBackoff(cap=0.2, base=0.05), 1),
    )


def _pg_options(settings: ApiSettings) -> str:
    # Dashboard queries call time_bucket unqualified: TimescaleDB's in public, or the shim
    # in the analytics schema on plain PostgreSQL. The statement timeout bounds every
    # query the API makes, whichever route makes it.
    return (
        f"-c search_path={settings.analytics_schema},public"
        f" -c statement_timeout={settings.statement_timeout_ms}"
    )


def _pg_pool(settings: ApiSettings) -> ConnectionPool:
    return ConnectionPool(
        settings.analytics_dsn,
        min_size=settings.pool_min_size,
        max_size=settings.pool_max_size,
        timeout=settings.store_timeout_s,
        kwargs={
            "connect_timeout": max(1, round(settings.store_timeout_s)),
            "options": _pg_options(settings),
        },
        name="analytics-api",
        open=False,
    )


def _outcomes_pool(settings: ApiSettings) -> ConnectionPool | None:
    """A small pool over the helpdesk database for the outcome input, when configured."""
    if settings.outcomes_dsn is None:
        return None
    pool: ConnectionPool = ConnectionPool(
        settings.outcomes_dsn,
        min_size=0,
        max_size=2,
        timeout=settings.store_timeout_s,
        kwargs={
            "connect_timeout": max(1, round(settings.store_timeout_s)),
            "options": f"-c statement_timeout={settings.statement_timeout_ms}",
            "autocommit": True,
        },
        name="outcomes-api",
        open=False,
    )
    pool.open(wait=False)
    return pool


def create_app(settings: ApiSettings) -> FastAPI:
    """Build the API over the stores named in ``settings``.

    The store clients are created when the app starts (lifespan) and closed when it
    stops. The app starts even when a store is down, so ``/health`` can report it.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.settings = settings
        app.state.redis = _redis_client(settings)
        app.state.aredis = _async_redis_client(settings)
        pool = _pg_pool(settings)
        # Not waiting: the pool keeps connecting in the background while the API serves.
        pool.open(wait=False)
        app.state.pg_pool = pool
        app.state.outcomes_pool = _outcomes_pool(settings)
        app.state.access = AccessControl(
            settings, pool=pool, client=app.state.redis, aclient=app.state.aredis
        ).start()
        try:
            yield
        finally:
            app.state.access.close()
            if app.state.outcomes_pool is not None:
                app.state.outcomes_pool.close()
            pool.close()
            app.state.redis.close()
            await app.state.aredis.aclose()

    app = FastAPI(
        title="Smart Triage API",
        summary="Live ticket routing decisions and agent queues.",
        description=DESCRIPTION,
        version="0.1.0",
        lifespan=lifespan,
        openapi_url="/openapi.json" if settings.docs_enabled else None,
        openapi_tags=[
            {"name": "routing", "description": "Routing decisions, agent queues, holding lists."},
            {"name": "sla", "description": "SLA clocks and breach risk per ticket."},
            {"name": "search", "description": "Full-text search over tickets and KB articles."},
            {"name": "health", "description": "Store availability."},
            {"name": "dashboard", "description": "Dashboard panels; the page is at /dashboard."},
        ],
    )

    async def store_unavailable(request: Request, exc: Exception) -> JSONResponse:
        log.warning("store unavailable on %s: %s", request.url.path, exc)
        return JSONResponse(
            status_code=503,
            content={"detail": f"store unavailable: {type(exc).__name__}"},
        )

    # QueryCanceled: the statement timeout ended a slow query.
    for error in (
        redis.RedisError,
        psycopg.OperationalError,
        psycopg.errors.QueryCanceled,
        PoolTimeout,
    ):
        app.add_exception_handler(error, store_unavailable)
    app.add_middleware(AccessMiddleware)
    app.add_middleware(
        LoadShedMiddleware, limit=settings.max_in_flight, retry_after_s=settings.retry_after_s
    )
    # Outermost: requests are timed and counted whatever the inner layers answer.
    instrument(app, expose=settings.metrics_enabled)
    app.include_router(health.router)
    keyed: dict[int | str, dict[str, Any]] = dict(_KEYED)
    # Scopes and audit per router: see api.security.
    routing_scope = Depends(require_scope("read:routing", audit=True))
    tickets_scope = Depends(require_scope("read:tickets", audit=True))
    analytics_scope = Depends(require_scope("read:analytics"))
    outcomes_scope = Depends(require_scope("write:outcomes", audit=True))
    app.include_router(routing.router, dependencies=[routing_scope], responses=keyed)
    app.include_router(outcomes.router, dependencies=[outcomes_scope], responses=keyed)
    app.include_router(sla.router, dependencies=[tickets_scope], responses=keyed)
    app.include_router(search.router, dependencies=[tickets_scope], responses=keyed)
    app.include_router(reports.router, dependencies=[analytics_scope], responses=keyed)
    dashboard_page, dashboard_panels = split_router(dashboard.router, ["/dashboard"])
    app.include_router(dashboard_page)
    app.include_router(dashboard_panels, dependencies=[analytics_scope], responses=keyed)
    return app
