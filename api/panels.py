"""Dashboard panels: one SQL definition each, shared by every place that draws them.

The built-in dashboard (``GET /dashboard``), the Grafana dashboard provisioned from
``infra/grafana`` and the dashboard benchmark all run these queries, so a panel means
the same thing everywhere. A query is written once with three placeholders:

* ``$FROM`` and ``$TO``: the time range (``bucket >= $FROM AND bucket < $TO``);
* ``$WIDTH``: the bucket width as an interval.

Queries have two branches joined by ``UNION ALL``: one over the minute tables, guarded by
``$WIDTH < interval '1 hour'``, and one over the hourly rollups (``metrics_hourly``,
``agent_load_hourly``, ``sla_hourly``) guarded by the opposite. The guard is a constant,
so PostgreSQL runs only one branch.

:meth:`Panel.bind` turns them into psycopg parameters; :meth:`Panel.grafana_sql` into
Grafana's macros (``$__timeFrom()``, ``$__timeTo()``, ``$__interval_ms``). Queries use
``time_bucket`` unqualified: TimescaleDB's own in production, the ``analytics`` schema's
shim on plain PostgreSQL (connections put ``analytics`` on the ``search_path``).

Result shapes (the ``format`` of each panel):

* ``wide``: a ``time`` column, then one numeric column per series;
* ``long``: ``time``, ``metric``, ``value`` rows (one series per metric, e.g. per category);
* ``table``: rows to show as they are.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from models.codecs import ANALYTICS_SCHEMA

PanelFormat = Literal["wide", "long", "table"]

# Bucket widths a chart may use; the smallest giving at most ``max_points`` buckets wins.
# Widths under an hour read the minute tables (ranges up to about three days), wider ones
# the hourly rollups, so a query touches at most a few tens of thousands of rows.
WIDTHS: tuple[timedelta, ...] = (
    timedelta(minutes=1),
    timedelta(minutes=5),
    timedelta(minutes=15),
    timedelta(hours=1),
    timedelta(hours=3),
    timedelta(hours=6),
    timedelta(hours=12),
    timedelta(days=1),
)


def bucket_width(start: datetime, end: datetime, *, max_points: int = 300) -> timedelta:
    """The narrowest standard width that draws ``start``..``end`` in ``max_points`` buckets.

    Example:
        >>> from datetime import datetime
        >>> bucket_width(datetime(2025, 1, 1), datetime(2025, 1, 2))
        datetime.timedelta(seconds=300)
    """
    span = end - start
    for width in WIDTHS:
        if span / width <= max_points:
            return width
    return WIDTHS[-1]


_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]*")

# Shorthands expanded before the placeholders: the branch guards and the usual range.
_SHORTHANDS = {
    "$IN_MINUTES": "$WIDTH < interval '1 hour'",
    "$IN_HOURS": "$WIDTH >= interval '1 hour'",
    "$IN_RANGE": "bucket >= $FROM AND bucket < $TO",
}


@dataclass(frozen=True)
class Panel:
    """One dashboard panel: what it shows and the query behind it.

    Args:
        id: URL-safe name.
        title: Heading shown above the chart.
        description: One sentence on what the numbers are.
        format: Result shape (see the module docstring).
        unit: Unit of the values (``count``, ``percent``, ``minutes``, ``agents``).
        sql: The query with ``$FROM``, ``$TO`` and ``$WIDTH``; its tables are written
            ``$SCHEMA.<table>`` (the analytics schema, given when the query is bound).
        min_width: Smallest bucket the panel uses (hourly data is not drawn per minute).
        stacked: Draw the series stacked (parts of a whole).
    """

    id: str
    title: str
    description: str
    format: PanelFormat
    unit: str
    sql: str
    min_width: timedelta = timedelta(minutes=1)
    stacked: bool = False

    def query(self, schema: str = ANALYTICS_SCHEMA) -> str:
        """The SQL with its shorthands expanded and its tables in ``schema``, still holding
        ``$FROM``/``$TO``/``$WIDTH``."""
        if not _IDENTIFIER.fullmatch(schema):
            raise ValueError(f"schema must be a plain SQL identifier, got {schema!r}")
        text = self.sql
        for short, long in _SHORTHANDS.items():
            text = text.replace(short, long)
        return text.replace("$SCHEMA.", f"{schema}.").strip()

    def width_for(self, start: datetime, end: datetime) -> timedelta:
        """The bucket width this panel uses for a range."""
        return max(self.min_width, bucket_width(start, end))

    def bind(
        self, start: datetime, end: datetime, *, schema: str = ANALYTICS_SCHEMA
    ) -> tuple[str, dict[str, Any]]:
        """The query with psycopg named parameters, and their values."""
        query = (
            self.query(schema)
            .replace("%", "%%")
            .replace("$FROM", "%(start)s")
            .replace("$TO", "%(end)s")
            .replace("$WIDTH", "%(width)s::interval")
        )
        return query, {"start": start, "end": end, "width": self.width_for(start, end)}

    def grafana_sql(self, schema: str = ANALYTICS_SCHEMA) -> str:
        """The query with Grafana's macros (PostgreSQL data source)."""
        seconds = int(self.min_width.total_seconds())
        return (
            self.query(schema)
            .replace("$FROM", "$__timeFrom()")
            .replace("$TO", "$__timeTo()")
            .replace(
                "$WIDTH",
                f"make_interval(secs => greatest($__interval_ms / 1000.0, {seconds}))",
            )
        )


PANELS: tuple[Panel, ...] = (
    Panel(
        id="volume",
        title="Ticket volume",
        description="Tickets created, solved and reopened per bucket.",
        format="wide",
        unit="count",
        sql="""
SELECT time, sum(created)::bigint AS created, sum(solved)::bigint AS solved,
       sum(reopened)::bigint AS reopened
  FROM (SELECT time_bucket($WIDTH, bucket) AS time, created, solved, reopened
          FROM $SCHEMA.metrics_minute
         WHERE $IN_MINUTES AND dimension = 'all' AND $IN_RANGE
        UNION ALL
        SELECT time_bucket($WIDTH, bucket), created, solved, reopened
          FROM $SCHEMA.metrics_hourly
         WHERE $IN_HOURS AND dimension = 'all' AND $IN_RANGE) AS m
 GROUP BY 1
 ORDER BY 1""",
    ),
    Panel(
        id="volume_by_category",
        title="New tickets by category",
        description="Tickets created per bucket, one series per category.",
        format="long",
        unit="count",
        stacked=True,
        sql="""
SELECT time, substr(dimension, 10) AS metric, sum(created)::bigint AS value
  FROM (SELECT time_bucket($WIDTH, bucket) AS time, dimension, created
          FROM $SCHEMA.metrics_minute
         WHERE $IN_MINUTES AND dimension LIKE 'category=%' AND $IN_RANGE
        UNION ALL
        SELECT time_bucket($WIDTH, bucket), dimension, created
          FROM $SCHEMA.metrics_hourly
         WHERE $IN_HOURS AND dimension LIKE 'category=%' AND $IN_RANGE) AS m
 GROUP BY 1, 2
 ORDER BY 1, 2""",
    ),
    Panel(
        id="backlog",
        title="Backlog",
        description="Open tickets at the end of each bucket.",
        format="wide",
        unit="count",
        sql="""
SELECT time, (array_agg(backlog ORDER BY bucket DESC))[1] AS backlog
  FROM (SELECT time_bucket($WIDTH, bucket) AS time, bucket, backlog
          FROM $SCHEMA.metrics_minute
         WHERE $IN_MINUTES AND dimension = 'all' AND $IN_RANGE
        UNION ALL
        SELECT time_bucket($WIDTH, bucket), bucket, backlog_last
          FROM $SCHEMA.metrics_hourly
         WHERE $IN_HOURS AND dimension = 'all' AND $IN_RANGE) AS m
 GROUP BY 1
 ORDER BY 1""",
    ),
    Panel(
        id="sla_compliance",
        title="SLA compliance",
        description=(
            "Share of SLA targets met among those that came to an outcome in the bucket: "
            "met when fulfilled on time, missed when the deadline passed."
        ),
        format="wide",
        unit="percent",
        sql="""
SELECT time, round(100.0 * sum(met) / nullif(sum(met) + sum(missed), 0), 2) AS compliance
  FROM (SELECT time_bucket($WIDTH, at) AS time,
               (kind = 'fulfill' AND NOT breached)::int AS met,
               (kind = 'breach')::int AS missed
          FROM $SCHEMA.sla_events
         WHERE $IN_MINUTES AND kind IN ('fulfill', 'breach') AND at >= $FROM AND at < $TO
        UNION ALL
        SELECT time_bucket($WIDTH, bucket), met, missed
          FROM $SCHEMA.sla_hourly
         WHERE $IN_HOURS AND $IN_RANGE) AS s
 GROUP BY 1
 ORDER BY 1""",
    ),
    Panel(
        id="response_times",
        title="Response times",
        description=(
            "First reply and resolution time in minutes: the mean over the bucket's "
            "minutes of each minute's 50th and 90th percentile."
        ),
        format="wide",
        unit="minutes",
        sql="""
SELECT time,
       round((sum(fr50) / nullif(sum(fr_n), 0) / 60)::numeric, 1) AS first_reply_p50,
       round((sum(fr90) / nullif(sum(fr_n), 0) / 60)::numeric, 1) AS first_reply_p90,
       round((sum(rs50) / nullif(sum(rs_n), 0) / 60)::numeric, 1) AS resolution_p50,
       round((sum(rs90) / nullif(sum(rs_n), 0) / 60)::numeric, 1) AS resolution_p90
  FROM (SELECT time_bucket($WIDTH, bucket) AS time,
               first_reply_p50_seconds AS fr50, first_reply_p90_seconds AS fr90,
               (first_reply_p50_seconds IS NOT NULL)::int AS fr_n,
               resolution_p50_seconds AS rs50, resolution_p90_seconds AS rs90,
               (resolution_p50_seconds IS NOT NULL)::int AS rs_n
          FROM $SCHEMA.metrics_minute
         WHERE $IN_MINUTES AND dimension = 'all' AND $IN_RANGE
        UNION ALL
        SELECT time_bucket($WIDTH, bucket),
               first_reply_p50_sum_seconds, first_reply_p90_sum_seconds, first_reply_minutes,
               resolution_p50_sum_seconds, resolution_p90_sum_seconds, resolution_minutes
          FROM $SCHEMA.metrics_hourly
         WHERE $IN_HOURS AND dimension = 'all' AND $IN_RANGE) AS m
 GROUP BY 1
 ORDER BY 1""",
    ),
    Panel(
        id="forecast_vs_actual",
        title="Forecast vs actual",
        description=(
            "New tickets per hour against the newest forecast made for that hour, with "
            "its 90% interval."
        ),
        format="wide",
        unit="count",
        min_width=timedelta(hours=1),
        sql="""
WITH actual AS (
    SELECT time_bucket($WIDTH, bucket) AS time, sum(created)::double precision AS actual
      FROM $SCHEMA.metrics_hourly
     WHERE dimension = 'all' AND $IN_RANGE
     GROUP BY 1
), latest AS (
    SELECT DISTINCT ON (hour) hour, value, lower, upper
      FROM $SCHEMA.forecasts
     WHERE series = 'all' AND hour >= $FROM AND hour < $TO
     ORDER BY hour, generated_at DESC
), forecast AS (
    SELECT time_bucket($WIDTH, hour) AS time,
           sum(value) AS forecast, sum(lower) AS lower, sum(upper) AS upper
      FROM latest
     GROUP BY 1
)
SELECT time, actual,
       round(forecast::numeric, 1) AS forecast,
       round(lower::numeric, 1)    AS lower,
       round(upper::numeric, 1)    AS upper
  FROM actual FULL JOIN forecast USING (time)
 ORDER BY 1""",
    ),
    Panel(
        id="staffing",
        title="Agents needed (latest forecast)",
        description=(
            "Agents needed per hour for the service-level target over the next seven days, "
            "from the newest forecast run, starting at the end of the range."
        ),
        format="wide",
        unit="agents",
        min_width=timedelta(hours=1),
        sql="""
SELECT hour AS time, agents_needed, round(value::numeric, 1) AS forecast
  FROM $SCHEMA.forecasts
 WHERE series = 'all'
   AND generated_at = (SELECT max(generated_at) FROM $SCHEMA.forecasts WHERE series = 'all')
   AND hour >= $TO - interval '1 hour' AND hour < $TO + interval '7 days'
 ORDER BY 1""",
    ),
    Panel(
        id="agent_load",
        title="Agent load",
        description=(
            "Assigned tickets against capacity over all agents (percent), and the highest "
            "burnout risk (0-100) of any agent, per bucket."
        ),
        format="wide",
        unit="percent",
        sql="""
SELECT time, round(100.0 * sum(assigned) / nullif(sum(capacity), 0), 1) AS utilisation,
       max(burnout_risk) AS max_burnout_risk
  FROM (SELECT time_bucket($WIDTH, bucket) AS time, assigned::bigint AS assigned,
               capacity::bigint AS capacity, burnout_risk
          FROM $SCHEMA.agent_load
         WHERE $IN_MINUTES AND $IN_RANGE
        UNION ALL
        SELECT time_bucket($WIDTH, bucket), assigned_sum, capacity_sum, burnout_risk_max
          FROM $SCHEMA.agent_load_hourly
         WHERE $IN_HOURS AND $IN_RANGE) AS l
 GROUP BY 1
 ORDER BY 1""",
    ),
    Panel(
        id="anomalies",
        title="Anomalies",
        description="Detected anomalies in the range, newest first, with what drove them.",
        format="table",
        unit="count",
        sql="""
SELECT bucket_start AS time, series,
       observed, round(expected::numeric, 1) AS expected, round(score::numeric, 1) AS score,
       drivers::text AS drivers
  FROM $SCHEMA.anomalies
 WHERE bucket_start >= $FROM AND bucket_start < $TO
 ORDER BY bucket_start DESC, score DESC
 LIMIT 50""",
    ),
)

PANELS_BY_ID: dict[str, Panel] = {p.id: p for p in PANELS}
