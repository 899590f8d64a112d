"""Queries behind the daily summary (analytics store → :class:`DailyStats`)."""

from __future__ import annotations

import re
from datetime import date, timedelta
from typing import Any

import psycopg

from models.codecs import ANALYTICS_SCHEMA
from models.summary import DailyStats


def daily_stats(
    conn: psycopg.Connection[Any], day: date, *, schema: str = ANALYTICS_SCHEMA
) -> DailyStats:
    """Figures of one UTC day from the analytics tables in ``schema``."""
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", schema):
        raise ValueError(f"schema must be a plain SQL identifier, got {schema!r}")

    def execute(query: str) -> psycopg.Cursor[Any]:
        text = query.replace("$SCHEMA.", f"{schema}.")
        return conn.execute(text, params)  # type: ignore[arg-type]

    params = {"day": day, "next": day + timedelta(days=1), "prev": day - timedelta(days=1)}
    created = execute(
        "SELECT count(*) FROM $SCHEMA.ticket_facts"
        " WHERE created_at >= %(day)s AND created_at < %(next)s",
    ).fetchone()
    previous = execute(
        "SELECT count(*) FROM $SCHEMA.ticket_facts"
        " WHERE created_at >= %(prev)s AND created_at < %(day)s",
    ).fetchone()
    solved = execute(
        "SELECT count(*) FROM $SCHEMA.ticket_facts"
        " WHERE solved_at >= %(day)s AND solved_at < %(next)s",
    ).fetchone()
    by_category = dict(
        execute(
            "SELECT category, count(*) FROM $SCHEMA.ticket_facts"
            " WHERE created_at >= %(day)s AND created_at < %(next)s GROUP BY 1",
        ).fetchall()
    )
    sla = execute(
        "SELECT count(*) FILTER (WHERE NOT breached), count(*) FILTER (WHERE breached)"
        " FROM $SCHEMA.sla_events WHERE kind = 'fulfill' AND at >= %(day)s AND at < %(next)s",
    ).fetchone()
    anomalies = [
        (series, observed, expected, list(drivers or {}))
        for series, observed, expected, drivers in execute(
            "SELECT series, observed, expected, drivers FROM $SCHEMA.anomalies"
            " WHERE bucket_start >= %(day)s AND bucket_start < %(next)s ORDER BY score DESC",
        ).fetchall()
    ]
    forecast = execute(
        "SELECT sum(value), max(agents_needed) FROM $SCHEMA.forecasts f"
        " WHERE series = 'all' AND hour >= %(next)s AND hour < %(next)s + interval '1 day'"
        " AND generated_at = (SELECT max(generated_at) FROM $SCHEMA.forecasts"
        "                     WHERE series = 'all')",
    ).fetchone()
    return DailyStats(
        day=day,
        created=int(created[0]) if created else 0,
        solved=int(solved[0]) if solved else 0,
        by_category={str(k): int(v) for k, v in by_category.items()},
        previous_created=int(previous[0]) if previous else None,
        sla_fulfilled=int(sla[0]) if sla else 0,
        sla_breached=int(sla[1]) if sla else 0,
        anomalies=anomalies,
        forecast_next_day=None if not forecast or forecast[0] is None else float(forecast[0]),
        forecast_peak_agents=None if not forecast or forecast[1] is None else int(forecast[1]),
    )
