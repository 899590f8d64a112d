"""``triage forecast``: hourly volume per category for the next 7 days, with staffing.

Reads hourly ticket counts from ``analytics.ticket_facts`` (by ``created_at``), fits the
forecaster per category and for the total, turns each forecast into the agents needed
per hour for a service-level target (Erlang C), and writes both to
``analytics.forecasts`` (one set of rows per run, so runs can be compared with actuals).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import psycopg

from models.forecast import HourlyForecaster
from models.staffing import staffing_plan

_HOURLY = """
SELECT coalesce(category, 'unknown') AS series, date_trunc('hour', created_at) AS hour, count(*)
  FROM analytics.ticket_facts
 WHERE created_at >= %(since)s AND created_at < %(until)s
 GROUP BY 1, 2
"""


def hourly_series(
    conn: psycopg.Connection[Any], *, since: datetime, until: datetime
) -> dict[str, np.ndarray[Any, np.dtype[np.float64]]]:
    """Dense hourly counts per category plus ``all``, from ``since`` (an hour) to ``until``."""
    hours = int((until - since).total_seconds() // 3600)
    series: dict[str, np.ndarray[Any, np.dtype[np.float64]]] = {"all": np.zeros(hours)}
    for name, hour, count in conn.execute(_HOURLY, {"since": since, "until": until}):
        index = int((hour - since).total_seconds() // 3600)
        if 0 <= index < hours:
            series.setdefault(str(name), np.zeros(hours))[index] += count
            series["all"][index] += count
    return series


def run_forecast(
    analytics_dsn: str,
    *,
    history_days: int = 28,
    horizon_hours: int = 168,
    aht_seconds: float = 600.0,
    target_service_level: float = 0.8,
    target_seconds: float = 3600.0,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Forecast every series, write forecasts and staffing; return a summary per series."""
    now = (now or datetime.now(UTC)).replace(minute=0, second=0, microsecond=0)
    since = now - timedelta(days=history_days)
    generated_at = datetime.now(UTC)
    summary: dict[str, Any] = {}
    with psycopg.connect(analytics_dsn) as conn:
        series = hourly_series(conn, since=since, until=now)
        rows: list[tuple[Any, ...]] = []
        for name, history in series.items():
            if history.sum() == 0:
                continue
            forecast = HourlyForecaster().fit(history, since).forecast(horizon_hours)
            plan = staffing_plan(
                forecast,
                aht_seconds,
                target_service_level=target_service_level,
                target_seconds=target_seconds,
            )
            for i, step in enumerate(plan):
                rows.append(
                    (
                        generated_at,
                        name,
                        step.hour,
                        float(forecast.values[i]),
                        float(forecast.lower[i]),
                        float(forecast.upper[i]),
                        step.agents,
                    )
                )
            summary[name] = {
                "method": forecast.method,
                "history_tickets": int(history.sum()),
                "next_24h": round(float(np.sum(forecast.values[:24])), 1),
                "next_7d": round(float(np.sum(forecast.values)), 1),
                "peak_agents": max((s.agents for s in plan), default=0),
            }
        with conn.transaction(), conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO analytics.forecasts"
                " (generated_at, series, hour, value, lower, upper, agents_needed)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                rows,
            )
    return {"generated_at": generated_at.isoformat(), "series": summary, "rows": len(rows)}
