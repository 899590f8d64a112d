"""TimescaleDB features on top of the analytics schema, when the extension is available.

The numbered migrations (``sql/analytics``) run on plain PostgreSQL and create ordinary
tables, views and a ``time_bucket`` shim. :func:`apply_timescale` upgrades such a schema in
place when TimescaleDB is there:

* time-series tables become hypertables (existing rows are moved into chunks);
* the rollups ``metrics_hourly``, ``agent_load_hourly`` and ``sla_hourly`` (tables the sink
  refreshes on plain PostgreSQL, 006_dashboard_rollups) are replaced by continuous
  aggregates of the same names and columns (real-time: recent, not yet materialised rows
  are included), each with a refresh policy; ``refresh_rollups`` then skips them;
* compression and retention policies are added;
* the ``time_bucket`` shim is dropped so that the extension's own function is used.

A continuous aggregate's policy refreshes only its recent window (3 days; 7 for
``sla_hourly``): the analytics sink refreshes the exact hours that late or back-filled rows
touch before that window (:func:`refresh_late_hours`, after its commit).

Tables keyed without their time column cannot be hypertables, so ``ticket_facts`` (one
current row per ticket, upserted by ticket id) and ``routing_decision_history`` stay plain
tables, and the report views over them (``volume_hourly``, ``volume_daily``,
``response_times_daily``, ``agent_performance_daily``, ``sla_compliance_daily``) stay views.

Every step checks the catalog first, so the function is idempotent and cheap to call on
every start. Without TimescaleDB it changes nothing and says so.

Kept as one module: the hypertables, continuous aggregates and policies are
applied as one idempotent conversion.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql

from models.codecs import ANALYTICS_SCHEMA

log = logging.getLogger(__name__)

NOT_AVAILABLE = "timescaledb not available"
"""Prefix of :attr:`TimescaleReport.reason` when nothing could be done."""


@dataclass(frozen=True)
class TimescaleReport:
    """What :func:`apply_timescale` did.

    Attributes:
        available: Whether the TimescaleDB extension is installed in the database.
        actions: Human-readable steps performed by this call, in order (empty when the
            schema was already up to date or the extension is missing).
        reason: Why nothing was done, starting with :data:`NOT_AVAILABLE`; ``None`` when
            the extension is available.
    """

    available: bool
    actions: tuple[str, ...] = ()
    reason: str | None = None


@dataclass(frozen=True)
class Hypertable:
    """How one analytics table is converted and maintained.

    Attributes:
        table: Table name in the analytics schema.
        time_column: Partitioning column; part of every unique constraint of the table.
        chunk_interval: Time span of one chunk.
        segment_by: Compression ``segmentby`` columns; ``None`` disables compression.
        order_by: Compression ``orderby`` clause.
        compress_after: Age after which chunks are compressed.
        drop_after: Age after which chunks are dropped; ``None`` keeps them forever.
    """

    table: str
    time_column: str
    chunk_interval: timedelta
    segment_by: str | None = None
    order_by: str | None = None
    compress_after: timedelta | None = None
    drop_after: timedelta | None = None


@dataclass(frozen=True)
class ContinuousAggregate:
    """A continuous aggregate replacing the plain view of the same name.

    ``query`` is static SQL whose ``{schema}`` placeholder is the analytics schema and
    ``{time_bucket}`` the extension's function; it must return the view's columns.
    """

    name: str
    query: str
    start_offset: timedelta
    end_offset: timedelta
    schedule_interval: timedelta


HYPERTABLES: tuple[Hypertable, ...] = (
    # Minute metrics are rolled up hourly by metrics_hourly, which keeps its rows when
    # the minute chunks are dropped.
    Hypertable(
        "metrics_minute",
        "bucket",
        timedelta(days=1),
        segment_by="dimension",
        order_by="bucket DESC",
        compress_after=timedelta(days=7),
        drop_after=timedelta(days=90),
    ),
    Hypertable(
        "agent_load",
        "bucket",
        timedelta(days=1),
        segment_by="agent_id, queue",
        order_by="bucket DESC",
        compress_after=timedelta(days=7),
        drop_after=timedelta(days=90),
    ),
    # The SLA event log is compliance history: compressed, never dropped. Recent chunks
    # stay uncompressed, which is where the ticket_sla merge looks events up.
    Hypertable(
        "sla_events",
        "at",
        timedelta(days=7),
        segment_by="metric",
        order_by="at DESC",
        compress_after=timedelta(days=30),
    ),
    Hypertable("forecasts", "generated_at", timedelta(days=7), drop_after=timedelta(days=180)),
)
"""The tables converted to hypertables; each one's keys include its time column."""

CONTINUOUS_AGGREGATES: tuple[ContinuousAggregate, ...] = (
    ContinuousAggregate(
        "metrics_hourly",
        "SELECT {time_bucket}(interval '1 hour', m.bucket) AS bucket, m.dimension,"
        " sum(m.created) AS created, sum(m.solved) AS solved, sum(m.reopened) AS reopened,"
        " last(m.backlog, m.bucket) AS backlog_last, max(m.backlog) AS backlog_max,"
        " max(m.first_reply_p90_seconds) AS first_reply_p90_max_seconds,"
        " max(m.resolution_p90_seconds) AS resolution_p90_max_seconds,"
        " sum(m.breaches) AS breaches, sum(m.late_events) AS late_events,"
        " sum(m.first_reply_p50_seconds) AS first_reply_p50_sum_seconds,"
        " sum(m.first_reply_p90_seconds) AS first_reply_p90_sum_seconds,"
        " count(m.first_reply_p50_seconds) AS first_reply_minutes,"
        " sum(m.resolution_p50_seconds) AS resolution_p50_sum_seconds,"
        " sum(m.resolution_p90_seconds) AS resolution_p90_sum_seconds,"
        " count(m.resolution_p50_seconds) AS resolution_minutes"
        " FROM {schema}.metrics_minute AS m"
        " GROUP BY {time_bucket}(interval '1 hour', m.bucket), m.dimension",
        start_offset=timedelta(days=3),
        end_offset=timedelta(hours=1),
        schedule_interval=timedelta(minutes=30),
    ),
    ContinuousAggregate(
        "agent_load_hourly",
        "SELECT {time_bucket}(interval '1 hour', l.bucket) AS bucket, l.agent_id, l.queue,"
        " max(l.assigned) AS assigned_max,"
        " avg(l.assigned)::double precision AS assigned_avg,"
        " max(l.capacity) AS capacity_max,"
        " max(l.assigned::double precision / nullif(l.capacity, 0)) AS utilisation_max,"
        " sum(l.assigned) AS assigned_sum, sum(l.capacity) AS capacity_sum,"
        " count(*) AS samples, max(l.burnout_risk) AS burnout_risk_max"
        " FROM {schema}.agent_load AS l"
        " GROUP BY {time_bucket}(interval '1 hour', l.bucket), l.agent_id, l.queue",
        start_offset=timedelta(days=3),
        end_offset=timedelta(hours=1),
        schedule_interval=timedelta(minutes=30),
    ),
    ContinuousAggregate(
        "sla_hourly",
        "SELECT {time_bucket}(interval '1 hour', e.at) AS bucket, e.metric,"
        " sum(CASE WHEN e.kind = 'fulfill' AND NOT e.breached THEN 1 ELSE 0 END) AS met,"
        " sum(CASE WHEN e.kind = 'breach' THEN 1 ELSE 0 END) AS missed"
        " FROM {schema}.sla_events AS e"
        " WHERE e.kind IN ('fulfill', 'breach')"
        " GROUP BY {time_bucket}(interval '1 hour', e.at), e.metric",
        # SLA outcomes can be recorded well after the fact (a replayed backlog).
        start_offset=timedelta(days=7),
        end_offset=timedelta(hours=1),
        schedule_interval=timedelta(minutes=30),
    ),
)
"""Continuous aggregates with the same names and columns as the rollup tables of 006."""


def apply_timescale(
    dsn: str,
    *,
    schema: str = ANALYTICS_SCHEMA,
    create_extension: bool = True,
    connect_timeout: int = 10,
) -> TimescaleReport:
    """Turn the analytics schema's time series into TimescaleDB objects when possible.

    Run it after the analytics migrations. Safe to repeat: finished steps are skipped.

    Args:
        dsn: libpq connection string of the analytics database.
        schema: Schema holding the tables of ``sql/analytics``.
        create_extension: Try ``CREATE EXTENSION IF NOT EXISTS timescaledb`` when the
            server offers the extension but the database does not have it yet.
        connect_timeout: Seconds to wait for the connection.

    Returns:
        What was done, or why nothing was (``reason`` starts with ``timescaledb not
        available``); the database is left untouched in that case.

    Raises:
        RuntimeError: When the analytics migrations have not been applied.
        psycopg.Error: When a TimescaleDB step fails; that step is rolled back.
    """
    actions: list[str] = []
    with psycopg.connect(dsn, autocommit=True, connect_timeout=connect_timeout) as conn:
        reason = _ensure_extension(conn, create=create_extension, actions=actions)
        if reason is not None:
            log.info("%s; the analytics schema stays plain PostgreSQL", reason)
            return TimescaleReport(available=False, reason=reason)
        _check_schema(conn, schema)
        ts_schema = _extension_schema(conn)
        _drop_time_bucket_shim(conn, schema, actions)
        for table in HYPERTABLES:
            with conn.transaction():
                _convert(conn, schema, table, actions)
        created: list[ContinuousAggregate] = []
        for cagg in CONTINUOUS_AGGREGATES:
            with conn.transaction():
                if _create_continuous_aggregate(conn, schema, ts_schema, cagg, actions):
                    created.append(cagg)
        # Materialising history cannot run inside a transaction block; until it has run,
        # real-time aggregation still answers from the raw rows.
        for cagg in created:
            conn.execute(
                sql.SQL("CALL {}.refresh_continuous_aggregate({}, NULL, NULL)").format(
                    sql.Identifier(ts_schema),
                    sql.Literal(_qualified(conn, schema, cagg.name)),
                )
            )
            actions.append(f"refreshed continuous aggregate {schema}.{cagg.name}")
    for action in actions:
        log.info("timescale: %s", action)
    return TimescaleReport(available=True, actions=tuple(actions))


def _ensure_extension(
    conn: psycopg.Connection[Any], *, create: bool, actions: list[str]
) -> str | None:
    """Install the extension if allowed; returns why it is unavailable, or ``None``."""
    if _scalar(conn, "SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'") is not None:
        return None
    if _scalar(conn, "SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'") is None:
        return f"{NOT_AVAILABLE}: the server has no timescaledb extension to install"
    if not create:
        return f"{NOT_AVAILABLE}: not installed in this database (create_extension=False)"
    try:
        with conn.transaction():
            conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    except psycopg.Error as exc:
        # Typically shared_preload_libraries lacks timescaledb, or the role may not create
        # extensions; the message names which.
        return f"{NOT_AVAILABLE}: CREATE EXTENSION timescaledb failed: {exc}".strip()
    actions.append("created extension timescaledb")
    return None


def _check_schema(conn: psycopg.Connection[Any], schema: str) -> None:
    for table in HYPERTABLES:
        if (
            _scalar(conn, "SELECT to_regclass(%s)", (_qualified(conn, schema, table.table),))
            is None
        ):
            raise RuntimeError(
                f"table {schema}.{table.table} does not exist; apply the analytics migrations "
                "first (sinks.migrations.apply_migrations with sql/analytics)"
            )


def _extension_schema(conn: psycopg.Connection[Any]) -> str:
    found = _scalar(
        conn,
        "SELECT n.nspname FROM pg_extension AS e JOIN pg_namespace AS n"
        " ON n.oid = e.extnamespace WHERE e.extname = 'timescaledb'",
    )
    return str(found)


def _drop_time_bucket_shim(conn: psycopg.Connection[Any], schema: str, actions: list[str]) -> None:
    """Drop 003_timeseries' ``time_bucket`` functions, which would shadow the real one."""
    signatures = conn.execute(
        "SELECT p.oid::regprocedure::text FROM pg_proc AS p"
        " JOIN pg_namespace AS n ON n.oid = p.pronamespace"
        " WHERE n.nspname = %s AND p.proname = 'time_bucket'"
        " AND NOT EXISTS (SELECT 1 FROM pg_depend AS d"
        "  WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e')"
        " ORDER BY p.oid",
        (schema,),
    ).fetchall()
    if not signatures:
        return
    try:
        with conn.transaction():
            for (signature,) in signatures:
                # regprocedure's text is a schema-qualified, quoted signature from the catalog.
                conn.execute(sql.SQL("DROP FUNCTION IF EXISTS {}").format(sql.SQL(signature)))
    except psycopg.errors.DependentObjectsStillExist as exc:
        log.warning("kept the time_bucket shim in %s: other objects use it (%s)", schema, exc)
        return
    actions.append(f"dropped the time_bucket shim from schema {schema}")


def _convert(
    conn: psycopg.Connection[Any], schema: str, table: Hypertable, actions: list[str]
) -> None:
    name = _qualified(conn, schema, table.table)
    info = conn.execute(
        "SELECT compression_enabled FROM timescaledb_information.hypertables"
        " WHERE hypertable_schema = %s AND hypertable_name = %s",
        (schema, table.table),
    ).fetchone()
    if info is None:
        conn.execute(
            "SELECT create_hypertable(%s::regclass, %s::name, chunk_time_interval => %s,"
            " migrate_data => true, if_not_exists => true)",
            (name, table.time_column, table.chunk_interval),
        )
        actions.append(f"converted {schema}.{table.table} to a hypertable on {table.time_column}")
    compression_enabled = bool(info[0]) if info is not None else False
    if table.segment_by is not None and not compression_enabled:
        conn.execute(
            sql.SQL(
                "ALTER TABLE {} SET (timescaledb.compress,"
                " timescaledb.compress_segmentby = {}, timescaledb.compress_orderby = {})"
            ).format(
                sql.Identifier(schema, table.table),
                sql.Literal(table.segment_by),
                sql.Literal(table.order_by or f"{table.time_column} DESC"),
            )
        )
        actions.append(f"enabled compression on {schema}.{table.table}")
    if table.compress_after is not None and not _has_job(
        conn, "policy_compression", schema, table.table
    ):
        conn.execute(
            "SELECT add_compression_policy(%s::regclass, compress_after => %s,"
            " if_not_exists => true)",
            (name, table.compress_after),
        )
        actions.append(
            f"compression policy on {schema}.{table.table}: after {table.compress_after}"
        )
    if table.drop_after is not None and not _has_job(conn, "policy_retention", schema, table.table):
        conn.execute(
            "SELECT add_retention_policy(%s::regclass, drop_after => %s, if_not_exists => true)",
            (name, table.drop_after),
        )
        actions.append(f"retention policy on {schema}.{table.table}: drop after {table.drop_after}")


def _create_continuous_aggregate(
    conn: psycopg.Connection[Any],
    schema: str,
    ts_schema: str,
    cagg: ContinuousAggregate,
    actions: list[str],
) -> bool:
    """Replace the plain view by a continuous aggregate; ``False`` when already done."""
    exists = _scalar(
        conn,
        "SELECT 1 FROM timescaledb_information.continuous_aggregates"
        " WHERE view_schema = %s AND view_name = %s",
        (schema, cagg.name),
    )
    if exists is not None:
        return False
    target = sql.Identifier(schema, cagg.name)
    # Plain PostgreSQL keeps the rollup as a view (003) or a table the sink refreshes (006).
    kind = _scalar(
        conn,
        "SELECT c.relkind::text FROM pg_class AS c JOIN pg_namespace AS n"
        " ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s",
        (schema, cagg.name),
    )
    if kind == "r":
        conn.execute(sql.SQL("DROP TABLE {}").format(target))
    elif kind == "v":
        conn.execute(sql.SQL("DROP VIEW {}").format(target))
    query = sql.SQL(cagg.query).format(
        schema=sql.Identifier(schema),
        time_bucket=sql.Identifier(ts_schema, "time_bucket"),
    )
    conn.execute(
        sql.SQL(
            "CREATE MATERIALIZED VIEW {} WITH (timescaledb.continuous,"
            " timescaledb.materialized_only = false) AS {} WITH NO DATA"
        ).format(target, query)
    )
    conn.execute(
        "SELECT add_continuous_aggregate_policy(%s::regclass, start_offset => %s,"
        " end_offset => %s, schedule_interval => %s, if_not_exists => true)",
        (
            _qualified(conn, schema, cagg.name),
            cagg.start_offset,
            cagg.end_offset,
            cagg.schedule_interval,
        ),
    )
    actions.append(f"replaced view {schema}.{cagg.name} by a continuous aggregate")
    return True


def _has_job(conn: psycopg.Connection[Any], proc: str, schema: str, table: str) -> bool:
    found = _scalar(
        conn,
        "SELECT 1 FROM timescaledb_information.jobs WHERE proc_name = %s"
        " AND hypertable_schema = %s AND hypertable_name = %s",
        (proc, schema, table),
    )
    return found is not None


def _qualified(conn: psycopg.Connection[Any], schema: str, name: str) -> str:
    """``"schema"."name"``, quoted as a regclass input expects."""
    return sql.Identifier(schema, name).as_string(conn)


def _scalar(conn: psycopg.Connection[Any], query: str, params: tuple[Any, ...] = ()) -> Any:
    row = conn.execute(query, params).fetchone()
    return None if row is None else row[0]


HOUR = timedelta(hours=1)


def late_refresh_windows(
    hours: list[datetime], *, now: datetime, start_offset: timedelta
) -> list[tuple[datetime, datetime]]:
    """The ranges of a continuous aggregate to refresh for rows written to ``hours`` (pure).

    The aggregate's policy refreshes ``[now - start_offset, now - end_offset)`` on every
    run, and real-time aggregation answers for what is newer; an hour that starts before
    ``now - start_offset`` is never refreshed again by the policy, so a late or back-filled
    row there would stay out of the aggregate forever. Those hours, and only those, are
    returned as ``[start, end)`` ranges, consecutive hours merged into one range.

    Example:
        >>> from datetime import UTC, datetime, timedelta
        >>> now = datetime(2026, 3, 10, 12, tzinfo=UTC)
        >>> h = [datetime(2026, 3, 1, x, tzinfo=UTC) for x in (3, 4, 7)]
        >>> h.append(now - timedelta(hours=2))  # the policy's own window
        >>> [(a.hour, b.hour) for a, b in late_refresh_windows(h, now=now,
        ...                                                    start_offset=timedelta(days=3))]
        [(3, 5), (7, 8)]
    """
    horizon = now - start_offset
    late = sorted({h for h in hours if h < horizon})
    windows: list[tuple[datetime, datetime]] = []
    for hour in late:
        if windows and windows[-1][1] == hour:
            windows[-1] = (windows[-1][0], hour + HOUR)
        else:
            windows.append((hour, hour + HOUR))
    return windows


def continuous_aggregates_present(conn: psycopg.Connection[Any], schema: str) -> list[str]:
    """The names of :data:`CONTINUOUS_AGGREGATES` that exist as continuous aggregates."""
    if _scalar(conn, "SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'") == 0:
        return []
    rows = conn.execute(
        "SELECT view_name FROM timescaledb_information.continuous_aggregates"
        " WHERE view_schema = %s",
        (schema,),
    ).fetchall()
    names = {name for (name,) in rows}
    return [c.name for c in CONTINUOUS_AGGREGATES if c.name in names]


def refresh_late_hours(
    conn: psycopg.Connection[Any],
    schema: str,
    hours_by_aggregate: dict[str, list[datetime]],
    *,
    now: datetime,
) -> list[tuple[str, datetime, datetime]]:
    """Refresh the ranges of each continuous aggregate that late rows touched.

    ``conn`` must be in autocommit mode: TimescaleDB refuses to refresh inside a
    transaction block, so this runs after the rows' own transaction committed.

    Returns:
        ``(aggregate, start, end)`` for every range refreshed.
    """
    offsets = {c.name: c.start_offset for c in CONTINUOUS_AGGREGATES}
    ts_schema = _extension_schema(conn)
    done = []
    for name, hours in hours_by_aggregate.items():
        for start, end in late_refresh_windows(hours, now=now, start_offset=offsets[name]):
            conn.execute(
                sql.SQL("CALL {}.refresh_continuous_aggregate(%s::regclass, %s, %s)").format(
                    sql.Identifier(ts_schema)
                ),
                (f"{schema}.{name}", start, end),
            )
            done.append((name, start, end))
    return done
