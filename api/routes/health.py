"""Liveness of the stores the API reads from."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import redis
from fastapi import APIRouter
from fastapi.responses import JSONResponse
from psycopg_pool import ConnectionPool

from api.deps import PgPoolDep, RedisDep, SettingsDep
from api.schemas import CheckPublic, HealthPublic

log = logging.getLogger(__name__)

router = APIRouter(tags=["health"])


def _timed(name: str, check: Callable[[], object]) -> CheckPublic:
    started = time.perf_counter()
    try:
        check()
    except Exception as exc:  # any failure means the store is not usable
        log.warning("health check %s failed: %s", name, exc)
        return CheckPublic(
            status="error",
            latency_ms=(time.perf_counter() - started) * 1000,
            error=f"{type(exc).__name__}: {exc}",
        )
    return CheckPublic(status="ok", latency_ms=(time.perf_counter() - started) * 1000)


def check_redis(*, client: redis.Redis) -> CheckPublic:
    """PING Redis; the client's socket timeouts bound the wait."""
    return _timed("redis", client.ping)


def check_postgres(*, pool: ConnectionPool[Any], timeout_s: float) -> CheckPublic:
    """Run ``SELECT 1`` on a pooled connection, waiting at most ``timeout_s`` for one."""

    def probe() -> None:
        with pool.connection(timeout=timeout_s) as conn:
            # Bound the query too, not only the wait for a connection.
            conn.execute(
                "SELECT set_config('statement_timeout', %s, true)",
                (f"{int(timeout_s * 1000)}ms",),
            )
            conn.execute("SELECT 1")

    return _timed("postgres", probe)


@router.get(
    "/health",
    response_model=HealthPublic,
    summary="Store health",
    description="200 when Redis and PostgreSQL both answer; 503 naming the store that failed.",
    responses={503: {"model": HealthPublic, "description": "A store did not answer"}},
)
def read_health(client: RedisDep, pool: PgPoolDep, settings: SettingsDep) -> JSONResponse:
    checks = {
        "redis": check_redis(client=client),
        "postgres": check_postgres(pool=pool, timeout_s=settings.store_timeout_s),
    }
    healthy = all(c.status == "ok" for c in checks.values())
    body = HealthPublic(status="ok" if healthy else "unavailable", checks=checks)
    return JSONResponse(status_code=200 if healthy else 503, content=body.model_dump(mode="json"))
