"""PostgreSQL analytics sink: ticket facts, routing decisions, SLA, risk, model quality.

Writes go through a per-connection staging table: each batch is COPYed into it and merged
into the target with ``INSERT ... SELECT ... ON CONFLICT``, which is an order of magnitude
faster than row-by-row upserts and keeps one transaction per batch.

Kept as one module: the analytics tables are written in one transaction per
batch, so their rows, merge rules and the writer share one ordering of tables.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from psycopg import sql

from models.anomaly import AnomalyAlert
from models.burnout import WorkloadScore
from models.codecs import (
    ANALYTICS_SCHEMA,
    ROUTING_COLUMNS,
    TICKET_FACT_COLUMNS,
    routing_row,
    ticket_fields,
)
from models.events import DeadLetter
from models.helpdesk import EnrichedTicket, RoutingDecision
from models.intelligence import ModelMetric
from models.signals import BreachRiskScore
from models.sla import SlaEvent
from models.telemetry import report_dead_letters, report_stage, telemetry
from models.windows import WindowResult
from sinks.dead_letters import rejected_dead_letter, store_reason, write_isolating
from sinks.retry import DEFAULT_RETRY, RetryPolicy, retry_connection_loss
from sinks.staged import StagedTable, StagedWriter
from sinks.timescale import continuous_aggregates_present, refresh_late_hours

log = logging.getLogger(__name__)

AnalyticsItem = (
    EnrichedTicket
    | RoutingDecision
    | DeadLetter
    | SlaEvent
    | BreachRiskScore
    | ModelMetric
    | WindowResult
    | AnomalyAlert
    | WorkloadScore
)
"""What the analytics sink accepts."""

REJECTED_STAGE = "write_analytics"
"""Stage of the dead letters for items the analytics store rejected."""

TICKET_FACTS = "ticket_facts"
ROUTING_DECISIONS = "routing_decisions"
ROUTING_DECISION_HISTORY = "routing_decision_history"
DEAD_LETTERS = "dead_letters"
SLA_EVENTS = "sla_events"
TICKET_SLA = "ticket_sla"
TICKET_RISK = "ticket_risk"
MODEL_METRICS = "model_metrics"

DEAD_LETTER_COLUMNS: tuple[str, ...] = (
    "stage",
    "reason",
    "topic",
    "key",
    "payload",
    "lsn",
    "kafka_topic",
    "kafka_partition",
    "kafka_offset",
    "failed_at",
)

SLA_EVENT_COLUMNS: tuple[str, ...] = (
    "ticket_id",
    "metric",
    "kind",
    "at",
    "deadline",
    "policy",
    "business_seconds_elapsed",
    "paused_seconds",
    "breached",
)
TICKET_SLA_COLUMNS: tuple[str, ...] = (
    "ticket_id",
    "metric",
    "kind",
    "state",
    "deadline",
    "breached",
    "policy",
    "business_seconds_elapsed",
    "paused_seconds",
    "updated_at",
)
TICKET_RISK_COLUMNS: tuple[str, ...] = (
    "ticket_id",
    "version",
    "queue",
    "risk",
    "scored_at",
    "deadline",
    "metric",
    "model_version",
)
MODEL_METRIC_COLUMNS: tuple[str, ...] = (
    "model",
    "version",
    "at",
    "n_seen",
    "accuracy",
    "weighted_f1",
    "drift_detected",
)

METRICS_MINUTE = "metrics_minute"
METRICS_MINUTE_COLUMNS: tuple[str, ...] = (
    "bucket",
    "dimension",
    "created",
    "solved",
    "reopened",
    "backlog",
    "first_reply_p50_seconds",
    "first_reply_p90_seconds",
    "resolution_p50_seconds",
    "resolution_p90_seconds",
    "breaches",
    "late_events",
)
AGENT_LOAD = "agent_load"
AGENT_LOAD_COLUMNS: tuple[str, ...] = (
    "bucket",
    "agent_id",
    "queue",
    "assigned",
    "capacity",
    "burnout_risk",
    "burnout_reasons",
)
ANOMALIES = "anomalies"
ANOMALY_COLUMNS: tuple[str, ...] = (
    "detected_at",
    "series",
    "bucket_start",
    "observed",
    "expected",
    "score",
    "drivers",
)

COLUMNS: dict[str, tuple[str, ...]] = {
    TICKET_FACTS: TICKET_FACT_COLUMNS,
    ROUTING_DECISIONS: ROUTING_COLUMNS,
    ROUTING_DECISION_HISTORY: ROUTING_COLUMNS,
    DEAD_LETTERS: DEAD_LETTER_COLUMNS,
    SLA_EVENTS: SLA_EVENT_COLUMNS,
    TICKET_SLA: TICKET_SLA_COLUMNS,
    TICKET_RISK: TICKET_RISK_COLUMNS,
    MODEL_METRICS: MODEL_METRIC_COLUMNS,
    METRICS_MINUTE: METRICS_MINUTE_COLUMNS,
    ANOMALIES: ANOMALY_COLUMNS,
    AGENT_LOAD: AGENT_LOAD_COLUMNS,
}
"""Column order of the tuples :func:`batch_to_rows` produces, per table."""


@dataclass(frozen=True)
class _Upsert:
    """How a current-state table is merged: its key and when a new row replaces the stored.

    ``where`` is static SQL over the stored row ``t``, the incoming ``EXCLUDED`` and
    ``{events}`` (the SLA event table); it never holds values.
    """

    key: tuple[str, ...]
    where: str


_NEWER_VERSION = "t.version < EXCLUDED.version"

_UPSERTS: dict[str, _Upsert] = {
    # A replay of the same version changes nothing; only a strictly newer one replaces.
    TICKET_FACTS: _Upsert(key=("ticket_id",), where=_NEWER_VERSION),
    ROUTING_DECISIONS: _Upsert(key=("ticket_id",), where=_NEWER_VERSION),
    TICKET_RISK: _Upsert(key=("ticket_id",), where=_NEWER_VERSION),
    # A window's metrics are recomputed identically on replay; the latest write wins.
    METRICS_MINUTE: _Upsert(key=("bucket", "dimension"), where="true"),
    AGENT_LOAD: _Upsert(key=("bucket", "agent_id", "queue"), where="true"),
    # Several clock events can share an instant (apply then pause at creation), so an
    # event of the stored instant replaces the row too, unless it is already in the event
    # log: that is a replay, which must not undo the later event of the same instant. The
    # merge runs before the batch's events are logged (see batch_to_rows' table order).
    TICKET_SLA: _Upsert(
        key=("ticket_id", "metric"),
        where=(
            "t.updated_at < EXCLUDED.updated_at OR (t.updated_at = EXCLUDED.updated_at"
            " AND NOT EXISTS (SELECT 1 FROM {events} AS e WHERE e.ticket_id = EXCLUDED.ticket_id"
            " AND e.metric = EXCLUDED.metric AND e.kind = EXCLUDED.kind"
            " AND e.at = EXCLUDED.updated_at))"
        ),
    ),
}
"""Tables holding one current row per key; every other table is insert-if-absent."""


def ticket_fact_row(item: EnrichedTicket) -> tuple[Any, ...]:
    """One ``ticket_facts`` row in :data:`TICKET_FACT_COLUMNS` order (text as written)."""
    fields = ticket_fields(item, allow_pii=True)
    return tuple(fields[name] for name in TICKET_FACT_COLUMNS)


def dead_letter_row(item: DeadLetter) -> tuple[Any, ...]:
    """One ``dead_letters`` row (the id and position key are filled in by PostgreSQL)."""
    pos = item.position
    return (
        item.stage,
        item.reason,
        item.topic,
        item.key,
        item.payload,
        pos.lsn,
        pos.topic,
        pos.partition,
        pos.offset,
        item.failed_at,
    )


def sla_event_row(item: SlaEvent) -> tuple[Any, ...]:
    """One ``sla_events`` row in :data:`SLA_EVENT_COLUMNS` order."""
    return (
        item.ticket_id,
        item.metric,
        item.kind,
        item.at,
        item.deadline,
        item.policy,
        item.business_seconds_elapsed,
        item.paused_seconds,
        item.breached,
    )


def ticket_sla_row(item: SlaEvent) -> tuple[Any, ...]:
    """One ``ticket_sla`` row: the metric clock as of ``item``."""
    return (
        item.ticket_id,
        item.metric,
        item.kind,
        item.clock_state,
        item.deadline,
        item.breached,
        item.policy,
        item.business_seconds_elapsed,
        item.paused_seconds,
        item.at,
    )


def ticket_risk_row(item: BreachRiskScore) -> tuple[Any, ...]:
    """One ``ticket_risk`` row in :data:`TICKET_RISK_COLUMNS` order."""
    return (
        item.ticket_id,
        item.version,
        item.queue,
        item.risk,
        item.scored_at,
        item.deadline,
        item.metric,
        item.model_version,
    )


def model_metric_row(item: ModelMetric) -> tuple[Any, ...]:
    """One ``model_metrics`` row in :data:`MODEL_METRIC_COLUMNS` order."""
    return (
        item.model,
        item.version,
        item.at,
        item.n_seen,
        item.accuracy,
        item.weighted_f1,
        item.drift_detected,
    )


def batch_to_rows(items: Iterable[AnalyticsItem]) -> dict[str, list[tuple[Any, ...]]]:
    """Turn a batch into rows per table, ready for an upsert.

    PostgreSQL rejects an ``INSERT ... ON CONFLICT DO UPDATE`` that touches the same key
    twice, so upserted tables keep only the newest row per key (the later item wins a
    tie): the newest version per ticket, the latest event per ticket and metric. Append-only
    tables keep one row per key: ``(ticket_id, version)`` for decision history,
    ``(ticket_id, metric, kind, at)`` for SLA events, ``(model, n_seen)`` for model
    metrics. Rows are sorted by key so that concurrent workers lock rows in the same order
    and cannot deadlock. Tables come in write order: ``ticket_sla`` before ``sla_events``,
    whose content tells its merge a replayed event from a new one.

    Args:
        items: Enriched tickets, routing decisions, dead letters, SLA events, breach-risk
            scores and model metrics, in any mix.

    Returns:
        A mapping from table name to rows in :data:`COLUMNS` order; every table is present.

    Raises:
        TypeError: For an item of another type.
    """
    facts: dict[int, EnrichedTicket] = {}
    current: dict[int, RoutingDecision] = {}
    history: dict[tuple[int, int], RoutingDecision] = {}
    dead: list[DeadLetter] = []
    sla_events: dict[tuple[int, str, str, datetime], SlaEvent] = {}
    sla_current: dict[tuple[int, str], SlaEvent] = {}
    risks: dict[int, BreachRiskScore] = {}
    metrics: dict[tuple[str, int], ModelMetric] = {}
    windows: dict[tuple[datetime, str], WindowResult] = {}
    anomalies: dict[tuple[str, datetime], AnomalyAlert] = {}
    loads: dict[tuple[datetime, int, str], WorkloadScore] = {}
    for item in items:
        if isinstance(item, EnrichedTicket):
            seen = facts.get(item.ticket_id)
            if seen is None or item.version >= seen.version:
                facts[item.ticket_id] = item
        elif isinstance(item, RoutingDecision):
            latest = current.get(item.ticket_id)
            if latest is None or item.version >= latest.version:
                current[item.ticket_id] = item
            history[(item.ticket_id, item.version)] = item
        elif isinstance(item, DeadLetter):
            dead.append(item)
        elif isinstance(item, SlaEvent):
            event_key = (item.ticket_id, item.metric, item.kind, item.at)
            if event_key in sla_events:
                continue  # a repeat must not undo a later event of the same instant
            sla_events[event_key] = item
            clock = sla_current.get((item.ticket_id, item.metric))
            if clock is None or item.at >= clock.at:
                sla_current[(item.ticket_id, item.metric)] = item
        elif isinstance(item, BreachRiskScore):
            risk = risks.get(item.ticket_id)
            if risk is None or item.version >= risk.version:
                risks[item.ticket_id] = item
        elif isinstance(item, ModelMetric):
            metrics[(item.model, item.n_seen)] = item
        elif isinstance(item, WindowResult):
            windows[(item.start, item.dimension)] = item
        elif isinstance(item, AnomalyAlert):
            anomalies[(item.series, item.start)] = item
        elif isinstance(item, WorkloadScore):
            loads[(item.at, item.agent_id, item.queue)] = item
        else:
            raise TypeError(f"PostgresSink cannot write {type(item).__name__}")
    return {
        TICKET_FACTS: [ticket_fact_row(facts[k]) for k in sorted(facts)],
        ROUTING_DECISIONS: [routing_row(current[k]) for k in sorted(current)],
        ROUTING_DECISION_HISTORY: [routing_row(history[k]) for k in sorted(history)],
        DEAD_LETTERS: [dead_letter_row(d) for d in dead],
        TICKET_SLA: [ticket_sla_row(sla_current[k]) for k in sorted(sla_current)],
        SLA_EVENTS: [sla_event_row(sla_events[k]) for k in sorted(sla_events)],
        TICKET_RISK: [ticket_risk_row(risks[k]) for k in sorted(risks)],
        MODEL_METRICS: [model_metric_row(metrics[k]) for k in sorted(metrics)],
        METRICS_MINUTE: [window_row(windows[k]) for k in sorted(windows)],
        ANOMALIES: [anomaly_row(anomalies[k]) for k in sorted(anomalies)],
        AGENT_LOAD: [
            (w.at, w.agent_id, w.queue, w.assigned, w.capacity, w.risk, list(w.reasons))
            for w in (loads[k] for k in sorted(loads))
        ],
    }


def rollup_hours(
    rows: dict[str, list[tuple[Any, ...]]],
) -> tuple[list[datetime], list[datetime], list[datetime]]:
    """The UTC hours whose hourly rollups a batch of rows changes, sorted, per rollup.

    Returns the hours of ``metrics_hourly`` (minute metrics by bucket), of
    ``agent_load_hourly`` (agent load by bucket) and of ``sla_hourly`` (SLA events by
    their time, outcomes only: fulfilled or breached); other tables have no rollup.
    """
    at_index = SLA_EVENT_COLUMNS.index("at")
    kind_index = SLA_EVENT_COLUMNS.index("kind")

    def hours(stamps: Iterable[datetime]) -> list[datetime]:
        return sorted(
            {s.astimezone(UTC).replace(minute=0, second=0, microsecond=0) for s in stamps}
        )

    return (
        hours(r[0] for r in rows.get(METRICS_MINUTE, ())),
        hours(r[0] for r in rows.get(AGENT_LOAD, ())),
        hours(
            r[at_index] for r in rows.get(SLA_EVENTS, ()) if r[kind_index] in ("fulfill", "breach")
        ),
    )


def window_row(item: WindowResult) -> tuple[Any, ...]:
    """One ``metrics_minute`` row in :data:`METRICS_MINUTE_COLUMNS` order."""
    counts = item.counts
    return (
        item.start,
        item.dimension,
        counts.get("created", 0),
        counts.get("solved", 0),
        counts.get("reopened", 0),
        item.backlog,
        item.first_reply_p50,
        item.first_reply_p90,
        item.resolution_p50,
        item.resolution_p90,
        counts.get("breach", 0),
        item.too_late,
    )


def anomaly_row(item: AnomalyAlert) -> tuple[Any, ...]:
    """One ``anomalies`` row; drivers as ``{"dimension:value": lift}``, largest first."""
    drivers = {f"{d.dimension}:{d.value}": round(d.lift, 3) for d in item.drivers}
    return (
        datetime.now(UTC),
        item.series,
        item.start,
        item.observed,
        item.expected,
        item.score,
        json.dumps(drivers),
    )


def _statements(schema: str, table: str) -> StagedTable:
    columns = COLUMNS[table]
    target = sql.Identifier(schema, table)
    staging = sql.Identifier(f"staging_{table}")
    col_list = sql.SQL(", ").join(map(sql.Identifier, columns))
    # Staging copies only the written columns' names and types (no constraints, no
    # defaults, no generated columns); the writer empties it after each merge.
    create = sql.SQL(
        "CREATE TEMP TABLE IF NOT EXISTS {staging} AS SELECT {cols} FROM {target} WITH NO DATA"
    ).format(staging=staging, cols=col_list, target=target)
    copy = sql.SQL("COPY {staging} ({cols}) FROM STDIN").format(staging=staging, cols=col_list)
    insert = sql.SQL("INSERT INTO {target} AS t ({cols}) SELECT {cols} FROM {staging} ").format(
        target=target, cols=col_list, staging=staging
    )
    upsert = _UPSERTS.get(table)
    if upsert is not None:
        updates = sql.SQL(", ").join(
            sql.SQL("{c} = EXCLUDED.{c}").format(c=sql.Identifier(c))
            for c in columns
            if c not in upsert.key
        )
        # An older row never regresses the stored one.
        merge = insert + sql.SQL(
            "ON CONFLICT ({key}) DO UPDATE SET {updates} WHERE {where}"
        ).format(
            key=sql.SQL(", ").join(map(sql.Identifier, upsert.key)),
            updates=updates,
            where=sql.SQL(upsert.where).format(events=sql.Identifier(schema, SLA_EVENTS)),
        )
    else:
        merge = insert + sql.SQL("ON CONFLICT DO NOTHING")
    return StagedTable(create_staging=create, copy=copy, merge=merge, staging=staging)


class _PostgresPartition(StatelessSinkPartition[AnalyticsItem]):
    """One worker's connection; writes each batch in one transaction."""

    def __init__(
        self,
        dsn: str,
        *,
        schema: str,
        connect_timeout: int,
        retry: RetryPolicy,
    ) -> None:
        self._schema = schema
        self._dsn = dsn
        self._connect_timeout = connect_timeout
        self._retry = retry
        self._refresh_rollups: sql.Composed | None = None
        # TimescaleDB: the continuous aggregates late rows must refresh, and the autocommit
        # connection that refreshes them (opened at the first late row).
        self._caggs: list[str] = []
        self._refresh_conn: psycopg.Connection[Any] | None = None
        self._writer = StagedWriter(
            dsn,
            schema=schema,
            tables={table: _statements(schema, table) for table in COLUMNS},
            sink="postgres",
            connect_timeout=connect_timeout,
            retry=retry,
            on_connect=self._find_rollups,
            after_merge=self._refresh_touched_hours,
        )

    def _find_rollups(self, conn: psycopg.Connection[Any]) -> None:
        # Plain PostgreSQL keeps hourly rollup tables next to the minute tables
        # (006_dashboard_rollups); under TimescaleDB continuous aggregates do it.
        found = conn.execute(
            "SELECT to_regprocedure(%s)",
            (f"{self._schema}.refresh_rollups(timestamptz[], timestamptz[], timestamptz[])",),
        ).fetchone()
        self._refresh_rollups = (
            sql.SQL("SELECT {}(%s::timestamptz[], %s::timestamptz[], %s::timestamptz[])").format(
                sql.Identifier(self._schema, "refresh_rollups")
            )
            if found is not None and found[0] is not None
            else None
        )
        self._caggs = continuous_aggregates_present(conn, self._schema)

    def _refresh_touched_hours(
        self, conn: psycopg.Connection[Any], rows: dict[str, list[tuple[Any, ...]]]
    ) -> None:
        hours = rollup_hours(rows)
        if any(hours) and self._refresh_rollups is not None:
            conn.execute(self._refresh_rollups, hours)

    def write_batch(self, items: list[AnalyticsItem]) -> None:
        """Upsert the batch; returns only once it is committed.

        Connection loss is retried with exponential backoff on a fresh connection, which
        slows the flow down instead of dropping data. Items the store rejects (a constraint
        violation, a value a column cannot hold) are isolated by splitting the batch and
        written to ``dead_letters`` with PostgreSQL's reason; the rest is written. Other
        errors (a missing table, a bug) propagate.
        """
        rejected = write_isolating(items, self._write)
        if self._caggs:
            self._refresh_late_hours(items)
        if not rejected:
            return
        letters = []
        for item, exc in rejected:
            reason = store_reason(exc)
            log.error("analytics store rejected %s: %s", type(item).__name__, reason)
            letters.append(rejected_dead_letter(item, stage=REJECTED_STAGE, reason=reason))
        # Escaped text and no constraints beyond the table's own: these are accepted.
        for letter, exc in write_isolating(letters, self._write):
            log.error("dead letter refused too, dropped: %r (%s)", letter, store_reason(exc))

    def _refresh_late_hours(self, items: Sequence[AnalyticsItem]) -> None:
        """TimescaleDB: refresh the exact hours of each continuous aggregate that rows
        older than its policy window touched (after the commit, on an autocommit
        connection, as TimescaleDB requires). A crash before this replays the batch,
        whose rows are the same, so the refresh happens then."""
        metric_hours, load_hours, sla_hours = rollup_hours(batch_to_rows(items))
        touched = {
            "metrics_hourly": metric_hours,
            "agent_load_hourly": load_hours,
            "sla_hourly": sla_hours,
        }
        wanted = {name: hours for name, hours in touched.items() if hours and name in self._caggs}
        if not wanted:
            return

        def attempt() -> None:
            if self._refresh_conn is None or self._refresh_conn.closed:
                self._refresh_conn = psycopg.connect(
                    self._dsn, autocommit=True, connect_timeout=self._connect_timeout
                )
            try:
                done = refresh_late_hours(
                    self._refresh_conn, self._schema, wanted, now=datetime.now(UTC)
                )
            except psycopg.errors.InsufficientPrivilege as exc:
                # The rows are committed; only the aggregates lag. Not worth stopping the
                # flow for: say once what fixes it, and stop trying.
                log.error(
                    "cannot refresh continuous aggregates for late rows (%s); run the "
                    "pipeline as the aggregates' owner, or refresh them with "
                    "refresh_continuous_aggregate after back-fills",
                    exc,
                )
                self._caggs = []
                return
            for name, start, end in done:
                log.info("refreshed %s for late rows in [%s, %s)", name, start, end)

        retry_connection_loss(
            attempt,
            on_loss=self._drop_refresh_connection,
            describe="continuous aggregate refresh",
            on_retry=lambda: telemetry().sink_retry("postgres"),
            policy=self._retry,
        )

    def _drop_refresh_connection(self) -> None:
        conn, self._refresh_conn = self._refresh_conn, None
        if conn is not None:
            conn.close()

    def _write(self, items: Sequence[AnalyticsItem]) -> None:
        rows = batch_to_rows(items)
        if not any(rows.values()):
            return
        self._writer.write(rows, describe=f"analytics write of {len(items)} items")
        telemetry().items_written("postgres", {t: len(r) for t, r in rows.items()})
        report_dead_letters((row[0], row[1]) for row in rows[DEAD_LETTERS])
        report_stage("write_analytics", (i for i in items if isinstance(i, RoutingDecision)))

    def close(self) -> None:
        """Close the connection(s) when the dataflow ends."""
        self._writer.close()
        self._drop_refresh_connection()


class PostgresSink(DynamicSink[AnalyticsItem]):
    """Write the flow's analytics items to the analytics schema.

    Enriched tickets go to ``ticket_facts``, routing decisions to ``routing_decisions``
    and its history, dead letters to ``dead_letters``, SLA events to ``sla_events`` and
    ``ticket_sla``, breach-risk scores to ``ticket_risk``, model metrics to
    ``model_metrics``.

    Delivery guarantee: at-least-once from the flow, effectively-once in the tables.
    Idempotency keys: ``ticket_facts``, ``routing_decisions`` and ``ticket_risk`` are
    keyed by ``ticket_id`` and only a strictly greater ``version`` replaces a row;
    ``ticket_sla`` is keyed by ``(ticket_id, metric)`` and replaced by a newer event, or
    by a new (not yet logged) event of the same instant. Insert-if-absent:
    ``routing_decision_history`` by ``(ticket_id, version)``, ``dead_letters`` by
    ``(stage, topic, position_key)``, ``sla_events`` by ``(ticket_id, metric, kind, at)``,
    ``model_metrics`` by ``(model, n_seen)``. Each batch is one transaction, so a crash
    leaves either all or none of it. An item the store rejects becomes a dead letter
    (stage ``write_analytics``, the store's reason) and the rest of the batch is written,
    so one bad row never stops the flow.

    Args:
        dsn: libpq connection string of the analytics database.
        schema: Schema holding the tables of ``sql/analytics``.
        connect_timeout: Seconds to wait for each connection attempt.
        retry: Delays and limit of the retries after a connection loss; by default
            it retries for as long as it takes (the flow stalls rather than drop data).
    """

    def __init__(
        self,
        dsn: str,
        *,
        schema: str = ANALYTICS_SCHEMA,
        connect_timeout: int = 10,
        retry: RetryPolicy = DEFAULT_RETRY,
    ) -> None:
        self._dsn = dsn
        self._schema = schema
        self._connect_timeout = connect_timeout
        self._retry = retry

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _PostgresPartition:
        """Open this worker's connection and check that the schema is in place."""
        return _PostgresPartition(
            self._dsn,
            schema=self._schema,
            connect_timeout=self._connect_timeout,
            retry=self._retry,
        )


class DeadLetterWriter:
    """Dead letters into the analytics store's ``dead_letters``, for the other sinks.

    The search sinks record the documents their store refused here. Insert-if-absent on
    ``(stage, topic, position_key)``, so a replayed refusal is stored once; one
    transaction per call; a lost connection is retried with backoff as in
    :class:`PostgresSink`. The connection is opened (and the table checked) at once.

    Args:
        dsn: libpq connection string of the analytics database.
        schema: Schema holding ``dead_letters``.
        sink: Name of the sink that owns the writer, for logs and retry metrics.
        connect_timeout: Seconds to wait for each connection attempt.
        retry: Delays and limit of the retries after a connection loss.
    """

    def __init__(
        self,
        dsn: str,
        *,
        schema: str = ANALYTICS_SCHEMA,
        sink: str = "dead_letters",
        connect_timeout: int = 10,
        retry: RetryPolicy = DEFAULT_RETRY,
    ) -> None:
        self._writer = StagedWriter(
            dsn,
            schema=schema,
            tables={DEAD_LETTERS: _statements(schema, DEAD_LETTERS)},
            sink=sink,
            connect_timeout=connect_timeout,
            retry=retry,
        )

    def write(self, letters: Sequence[DeadLetter]) -> None:
        """Store the dead letters; returns once they are committed."""
        if not letters:
            return

        def write(part: Sequence[DeadLetter]) -> None:
            rows = {DEAD_LETTERS: [dead_letter_row(d) for d in part]}
            self._writer.write(rows, describe=f"{len(part)} dead letters")

        for letter, exc in write_isolating(letters, write):
            # Only possible for text the table cannot hold; escaped, it is accepted.
            write([rejected_dead_letter(letter, stage=letter.stage, reason=store_reason(exc))])
        report_dead_letters((d.stage, d.reason) for d in letters)

    def close(self) -> None:
        """Close the connection."""
        self._writer.close()


class RefusalStore:
    """Where a sink other than the analytics store keeps what its store refused.

    With ``dsn`` (the analytics database) the dead letters go to its ``dead_letters``
    table through a :class:`DeadLetterWriter`, opened at the first refusal;
    without it only the dead-letter metric counts them (and the sink's log).

    Args:
        dsn: The analytics database, or None.
        sink: The owning sink's name, for logs and retry metrics.
    """

    def __init__(self, dsn: str | None, *, sink: str) -> None:
        self.dsn = dsn
        self.sink = sink
        self._writer: Any = None

    def write(self, letters: Sequence[DeadLetter]) -> None:
        if not letters:
            return
        if self.dsn is None:
            report_dead_letters((d.stage, d.reason) for d in letters)
            return
        if self._writer is None:
            self._writer = DeadLetterWriter(self.dsn, sink=self.sink)
        self._writer.write(list(letters))

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
