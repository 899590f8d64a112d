"""The built-in dashboard: panel data as JSON, and the page that draws it.

Each panel is a query of :mod:`api.panels` (the same ones the Grafana dashboard runs),
evaluated over a time range. The page at ``/dashboard`` is one self-contained HTML file
(no external scripts or fonts) that fetches every panel and redraws it periodically.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from importlib import resources
from typing import Annotated, Any

import psycopg
from fastapi import APIRouter, HTTPException, Path, Query
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field

from api.deps import PgPoolDep, SettingsDep
from api.panels import PANELS, PANELS_BY_ID, Panel
from api.params import Instant
from api.schemas import ErrorPublic
from models.codecs import ANALYTICS_SCHEMA

router = APIRouter(tags=["dashboard"])

_RANGE = re.compile(r"^([1-9][0-9]{0,3})([mhdw])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
MAX_RANGE = timedelta(days=400)
# The ranges parse_range accepts, for the OpenAPI document: 1-9999 minutes, 1-9600 hours,
# 1-400 days or 1-57 weeks (each at most MAX_RANGE).
RANGE_PATTERN = (
    r"^(?:[1-9][0-9]{0,3}m|(?:[1-9][0-9]{0,2}|[1-8][0-9]{3}|9[0-5][0-9]{2}|9600)h"
    r"|(?:[1-9][0-9]?|[1-3][0-9]{2}|400)d|(?:[1-9]|[1-4][0-9]|5[0-7])w)$"
)


def parse_range(text: str) -> timedelta:
    """``15m``, ``24h``, ``7d``, ``2w`` → a positive duration of at most 400 days.

    Example:
        >>> parse_range("24h")
        datetime.timedelta(days=1)
    """
    match = _RANGE.match(text)
    if match is None:
        raise ValueError(f"range must look like 30m, 24h, 7d or 2w, got {text!r}")
    span = timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    if span <= timedelta(0) or span > MAX_RANGE:
        raise ValueError(f"range must be between 1 minute and {MAX_RANGE.days} days")
    return span


def json_value(value: Any) -> Any:
    """A database value as JSON: times as ISO-8601 UTC, decimals as floats."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    return value


class PanelInfo(BaseModel):
    """What a panel shows (without data)."""

    id: str
    title: str
    description: str
    format: str = Field(description="wide, long or table (see api.panels)")
    unit: str
    stacked: bool


class PanelData(PanelInfo):
    """A panel evaluated over a range: column names and rows, times as ISO-8601 UTC."""

    start: datetime
    end: datetime
    width_seconds: int
    columns: list[str]
    rows: list[list[Any]]


def _info(panel: Panel) -> PanelInfo:
    return PanelInfo(
        id=panel.id,
        title=panel.title,
        description=panel.description,
        format=panel.format,
        unit=panel.unit,
        stacked=panel.stacked,
    )


def run_panel(
    conn: psycopg.Connection[Any],
    panel: Panel,
    start: datetime,
    end: datetime,
    *,
    schema: str = ANALYTICS_SCHEMA,
) -> PanelData:
    """Evaluate one panel's query over ``start``..``end`` on an open connection."""
    query, params = panel.bind(start, end, schema=schema)
    with conn.cursor() as cur:
        cur.execute(query, params)
        columns = [c.name for c in cur.description or ()]
        rows = [[json_value(v) for v in row] for row in cur.fetchall()]
    return PanelData(
        **_info(panel).model_dump(),
        start=start,
        end=end,
        width_seconds=int(params["width"].total_seconds()),
        columns=columns,
        rows=rows,
    )


@router.get("/v1/dashboard/panels", summary="The dashboard's panels")
def list_panels() -> list[PanelInfo]:
    """Every panel of the dashboard, in display order."""
    return [_info(p) for p in PANELS]


@router.get(
    "/v1/dashboard/panels/{panel_id}",
    summary="One panel's data over a time range",
    responses={
        404: {"description": "No such panel."},
        422: {"description": "Malformed range or end."},
        503: {"model": ErrorPublic, "description": "The analytics store is unavailable."},
    },
)
def get_panel(
    pool: PgPoolDep,
    settings: SettingsDep,
    panel_id: Annotated[str, Path(description="A panel id from /v1/dashboard/panels")],
    range: Annotated[
        str,
        Query(
            # Documented, and checked by parse_range, whose messages say what is wrong.
            json_schema_extra={"pattern": RANGE_PATTERN},
            description="Length of the range: 30m, 24h, 7d, 2w (at most 400 days)",
        ),
    ] = "24h",
    end: Annotated[
        Instant | None, Query(description="End of the range, years 2000..2099 (default: now)")
    ] = None,
) -> PanelData:
    """Rows of the panel's query between ``end - range`` and ``end``."""
    panel = PANELS_BY_ID.get(panel_id)
    if panel is None:
        raise HTTPException(status_code=404, detail=f"no panel {panel_id!r}")
    try:
        span = parse_range(range)
    except ValueError as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from exc
    stop = end or datetime.now(UTC)
    try:
        with pool.connection() as conn:
            return run_panel(conn, panel, stop - span, stop, schema=settings.analytics_schema)
    except psycopg.Error as exc:  # unreachable, or cancelled by statement_timeout
        raise HTTPException(status_code=503, detail="analytics store unavailable") from exc


@router.get("/dashboard", response_class=HTMLResponse, include_in_schema=False)
def dashboard_page() -> HTMLResponse:
    """The dashboard page (self-contained HTML; it fetches the panel endpoints)."""
    page = resources.files("api").joinpath("static/dashboard.html").read_text(encoding="utf-8")
    return HTMLResponse(page)
