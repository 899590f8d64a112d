"""Daily summary for people: Markdown (default) or the figures as JSON."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import psycopg
from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import PlainTextResponse

from api.deps import PgPoolDep, SettingsDep
from api.params import Day
from api.reports import daily_stats
from api.schemas import ErrorPublic
from models.summary import render_daily_summary

router = APIRouter(prefix="/v1", tags=["reports"])

_DAILY_JSON_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "The day's figures (format=json)",
    "properties": {
        "day": {"type": "string", "format": "date"},
        "created": {"type": "integer"},
        "solved": {"type": "integer"},
        "by_category": {"type": "object", "additionalProperties": {"type": "integer"}},
        "previous_created": {"type": ["integer", "null"]},
        "sla_fulfilled": {"type": "integer"},
        "sla_breached": {"type": "integer"},
        "anomalies": {"type": "array", "items": {"type": "array"}},
        "forecast_next_day": {"type": ["number", "null"]},
        "forecast_peak_agents": {"type": ["integer", "null"]},
    },
    "required": ["day", "created", "solved"],
}


@router.get(
    "/reports/daily",
    summary="Plain-language summary of one day",
    response_model=None,
    responses={
        200: {
            "description": "Markdown by default; the figures as JSON with format=json.",
            "content": {
                "text/markdown": {"schema": {"type": "string"}},
                "application/json": {"schema": _DAILY_JSON_SCHEMA},
            },
        },
        503: {"model": ErrorPublic, "description": "The analytics store is unavailable."},
    },
)
def get_daily_report(
    pool: PgPoolDep,
    settings: SettingsDep,
    day: Annotated[Day | None, Query(description="UTC day, 2000..2099 (default: today)")] = None,
    format: Annotated[Literal["markdown", "json"], Query()] = "markdown",
) -> Any:
    """Volumes, SLA, anomalies with their drivers, and the forecast for one UTC day."""
    wanted = day or datetime.now(UTC).date()
    try:
        with pool.connection() as conn:
            stats = daily_stats(conn, wanted, schema=settings.analytics_schema)
    except psycopg.Error as exc:
        raise HTTPException(status_code=503, detail="analytics store unavailable") from exc
    if format == "json":
        data = asdict(stats)
        data["day"] = wanted.isoformat()
        return data
    return PlainTextResponse(render_daily_summary(stats), media_type="text/markdown")
