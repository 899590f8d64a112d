"""Daily summary for people: Markdown (default) or the figures as JSON."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, date, datetime
from typing import Annotated, Any

import psycopg
from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import PlainTextResponse

from api.deps import PgPoolDep
from api.reports import daily_stats
from models.summary import render_daily_summary

router = APIRouter(prefix="/v1", tags=["reports"])


@router.get(
    "/reports/daily",
    summary="Plain-language summary of one day",
    response_model=None,
    responses={503: {"description": "The analytics store is unavailable."}},
)
def get_daily_report(
    pool: PgPoolDep,
    day: Annotated[date | None, Query(description="UTC day (default: today)")] = None,
    format: Annotated[str, Query(pattern="^(markdown|json)$")] = "markdown",
) -> Any:
    """Volumes, SLA, anomalies with their drivers, and the forecast for one UTC day."""
    wanted = day or datetime.now(UTC).date()
    try:
        with pool.connection() as conn:
            stats = daily_stats(conn, wanted)
    except psycopg.Error as exc:
        raise HTTPException(status_code=503, detail="analytics store unavailable") from exc
    if format == "json":
        data = asdict(stats)
        data["day"] = wanted.isoformat()
        return data
    return PlainTextResponse(render_daily_summary(stats), media_type="text/markdown")
