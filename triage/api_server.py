"""Serving the read API: one uvicorn process, or several worker processes on one port.

A FastAPI app runs its Python on one core. ``TRIAGE_API__WORKERS`` > 1 starts that many
uvicorn worker processes behind one listening socket (uvicorn's own multiprocess
supervisor); each builds its app from the environment with :func:`app_from_env`. The
parent resolves the stores first (starting private local ones when none are configured)
and passes them to the workers as ``TRIAGE_*`` variables, so every worker reads the same
Redis and analytics database. Rate limits live in Redis and are shared by the workers;
the key cache is per worker (revocations take effect within its TTL in each).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastapi import FastAPI

    from triage.runtime import Stack
    from triage.settings import AppSettings


def app_from_env() -> FastAPI:
    """The app of one worker process, from ``TRIAGE_*`` settings (a uvicorn factory).

    The stores must be configured (``TRIAGE_REDIS__URL``, ``TRIAGE_ANALYTICS__DSN``):
    a worker never starts private services of its own.
    """
    from api.app import create_app
    from triage.runtime import Stack, api_settings
    from triage.settings import AppSettings

    settings = AppSettings()
    if not (settings.redis.url and settings.analytics.dsn):
        raise RuntimeError(
            "an API worker needs TRIAGE_REDIS__URL and TRIAGE_ANALYTICS__DSN; start it "
            "with `triage api`, which sets them"
        )
    stack = Stack(
        source_dsn=settings.source.dsn or settings.analytics.dsn,
        analytics_dsn=settings.analytics.dsn,
        redis_url=settings.redis.url,
    )
    return create_app(api_settings(settings, stack))


def serve(settings: AppSettings, stack: Stack, *, port: int, workers: int) -> None:
    """Serve the API until interrupted; blocks.

    Args:
        settings: Application settings (host, API options).
        stack: The resolved stores.
        port: Port to listen on.
        workers: Worker processes; 1 serves from this process.
    """
    import uvicorn

    if workers <= 1:
        from api.app import create_app
        from triage.runtime import api_settings

        uvicorn.run(create_app(api_settings(settings, stack)), host=settings.api.host, port=port)
        return
    # The workers are new interpreters: they learn the stores from the environment.
    os.environ.update(stack.env())
    uvicorn.run(
        "triage.api_server:app_from_env",
        factory=True,
        host=settings.api.host,
        port=port,
        workers=workers,
    )
