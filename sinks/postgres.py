"""PostgreSQL analytics sink: ticket facts, routing decisions and dead letters.

Writes go through a per-connection staging table: each batch is COPYed into it and merged
into the target with ``INSERT ... SELECT ... ON CONFLICT``, which is an order of magnitude
faster than row-by-row upserts and keeps one transaction per batch.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from psycopg import sql

from models.events import DeadLetter
from models.helpdesk import EnrichedTicket, RoutingDecision

log = logging.getLogger(__name__)

AnalyticsItem = EnrichedTicket | RoutingDecision | DeadLetter
"""What the analytics sink accepts."""

TICKET_FACTS = "ticket_facts"
ROUTING_DECISIONS = "routing_decisions"
ROUTING_DECISION_HISTORY = "routing_decision_history"
DEAD_LETTERS = "dead_letters"

TICKET_FACT_COLUMNS: tuple[str, ...] = (
    "ticket_id",
    "version",
    "customer_id",
    "customer_tier",
    "channel",
    "status",
    "priority",
    "priority_reasons",
    "category",
    "queue",
    "language",
    "language_confidence",
    "assigned_agent_id",
    "subject",
    "created_at",
    "updated_at",
    "first_reply_at",
    "solved_at",
    "csat",
    "source_committed_at",
    "enriched_at",
    "deleted",
)
ROUTING_COLUMNS: tuple[str, ...] = (
    "ticket_id",
    "version",
    "queue",
    "status",
    "agent_id",
    "score",
    "confidence",
    "reasons",
    "priority",
    "sla_deadline",
    "model_version",
    "decided_at",
    "source_committed_at",
    "candidates",
    "extra",
)
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

COLUMNS: dict[str, tuple[str, ...]] = {
    TICKET_FACTS: TICKET_FACT_COLUMNS,
    ROUTING_DECISIONS: ROUTING_COLUMNS,
    ROUTING_DECISION_HISTORY: ROUTING_COLUMNS,
    DEAD_LETTERS: DEAD_LETTER_COLUMNS,
}
"""Column order of the tuples :func:`batch_to_rows` produces, per table."""


def ticket_fact_row(item: EnrichedTicket) -> tuple[Any, ...]:
    """One ``ticket_facts`` row in :data:`TICKET_FACT_COLUMNS` order."""
    t = item.ticket
    return (
        t.id,
        t.version,
        t.customer_id,
        item.customer_tier,
        t.channel,
        t.status,
        item.priority,
        list(item.priority_reasons),
        item.category,
        item.queue,
        item.language,
        item.language_confidence,
        t.assigned_agent_id,
        t.subject,
        t.created_at,
        t.updated_at,
        t.first_reply_at,
        t.solved_at,
        t.csat,
        item.committed_at,
        item.enriched_at,
        item.op == "d",
    )


def routing_row(item: RoutingDecision) -> tuple[Any, ...]:
    """One ``routing_decisions`` / ``routing_decision_history`` row."""
    return (
        item.ticket_id,
        item.version,
        item.queue,
        item.status,
        item.agent_id,
        item.score,
        item.confidence,
        list(item.reasons),
        item.priority,
        item.sla_deadline,
        item.model_version,
        item.decided_at,
        item.source_committed_at,
        item.candidates,
        # Extra diagnostics are free-form; anything not JSON-native is kept as its text.
        json.dumps(dict(item.extra), default=str, sort_keys=True),
    )


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


def batch_to_rows(items: Iterable[AnalyticsItem]) -> dict[str, list[tuple[Any, ...]]]:
    """Turn a batch into rows per table, ready for an upsert.

    PostgreSQL rejects an ``INSERT ... ON CONFLICT DO UPDATE`` that touches the same key
    twice, so upserted tables keep only the newest version per ticket (the later item
    wins a tie). History keeps one row per ``(ticket_id, version)``. Rows are sorted by
    key so that concurrent workers lock rows in the same order and cannot deadlock.

    Args:
        items: Enriched tickets, routing decisions and dead letters, in any mix.

    Returns:
        A mapping from table name to rows in :data:`COLUMNS` order; every table is present.

    Raises:
        TypeError: For an item of another type.
    """
    facts: dict[int, EnrichedTicket] = {}
    current: dict[int, RoutingDecision] = {}
    history: dict[tuple[int, int], RoutingDecision] = {}
    dead: list[DeadLetter] = []
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
        else:
            raise TypeError(f"PostgresSink cannot write {type(item).__name__}")
    return {
        TICKET_FACTS: [ticket_fact_row(facts[k]) for k in sorted(facts)],
        ROUTING_DECISIONS: [routing_row(current[k]) for k in sorted(current)],
        ROUTING_DECISION_HISTORY: [routing_row(history[k]) for k in sorted(history)],
        DEAD_LETTERS: [dead_letter_row(d) for d in dead],
    }


@dataclass(frozen=True)
class _Statements:
    """SQL for one table: staging DDL, COPY and merge, composed once per partition."""

    create_staging: sql.Composed
    copy: sql.Composed
    merge: sql.Composed


def _statements(schema: str, table: str) -> _Statements:
    columns = COLUMNS[table]
    target = sql.Identifier(schema, table)
    staging = sql.Identifier(f"staging_{table}")
    col_list = sql.SQL(", ").join(map(sql.Identifier, columns))
    # Staging copies only the written columns' names and types (no constraints, no
    # defaults, no generated columns) and empties itself at every commit.
    create = sql.SQL(
        "CREATE TEMP TABLE IF NOT EXISTS {staging} ON COMMIT DELETE ROWS AS "
        "SELECT {cols} FROM {target} WITH NO DATA"
    ).format(staging=staging, cols=col_list, target=target)
    copy = sql.SQL("COPY {staging} ({cols}) FROM STDIN").format(staging=staging, cols=col_list)
    insert = sql.SQL("INSERT INTO {target} AS t ({cols}) SELECT {cols} FROM {staging} ").format(
        target=target, cols=col_list, staging=staging
    )
    if table in (TICKET_FACTS, ROUTING_DECISIONS):
        updates = sql.SQL(", ").join(
            sql.SQL("{c} = EXCLUDED.{c}").format(c=sql.Identifier(c))
            for c in columns
            if c != "ticket_id"
        )
        # Only a strictly newer version replaces a row: an older one never regresses it
        # and a replay of the same version changes nothing.
        merge = insert + sql.SQL(
            "ON CONFLICT (ticket_id) DO UPDATE SET {updates} WHERE t.version < EXCLUDED.version"
        ).format(updates=updates)
    else:
        merge = insert + sql.SQL("ON CONFLICT DO NOTHING")
    return _Statements(create_staging=create, copy=copy, merge=merge)


def _backoff(initial: float, maximum: float) -> Iterator[float]:
    delay = initial
    while True:
        yield delay
        delay = min(delay * 2, maximum)


class _PostgresPartition(StatelessSinkPartition[AnalyticsItem]):
    """One worker's connection; writes each batch in one transaction."""

    def __init__(
        self,
        dsn: str,
        *,
        schema: str,
        connect_timeout: int,
        backoff_initial: float,
        backoff_max: float,
        max_retries: int | None,
    ) -> None:
        self._dsn = dsn
        self._schema = schema
        self._connect_timeout = connect_timeout
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._max_retries = max_retries
        self._statements = {table: _statements(schema, table) for table in COLUMNS}
        self._conn: psycopg.Connection[Any] | None = None
        # Fail at start-up, not at the first batch, when the store or schema is missing.
        self._conn = self._connect()

    def _connect(self) -> psycopg.Connection[Any]:
        conn = psycopg.connect(self._dsn, connect_timeout=self._connect_timeout)
        try:
            with conn.transaction():
                for table in COLUMNS:
                    found = conn.execute(
                        "SELECT to_regclass(%s)", (f"{self._schema}.{table}",)
                    ).fetchone()
                    if found is None or found[0] is None:
                        raise RuntimeError(
                            f"table {self._schema}.{table} does not exist; apply the analytics "
                            "migrations first (sinks.migrations.apply_migrations with "
                            "sql/analytics)"
                        )
            # Temp tables live as long as the session, so they are created once here.
            with conn.transaction():
                for stmt in self._statements.values():
                    conn.execute(stmt.create_staging)
        except BaseException:
            conn.close()
            raise
        return conn

    def write_batch(self, items: list[AnalyticsItem]) -> None:
        """Upsert the batch; returns only once it is committed.

        Connection loss is retried with exponential backoff on a fresh connection, which
        slows the flow down instead of dropping data. Other errors propagate.
        """
        rows = batch_to_rows(items)
        if not any(rows.values()):
            return
        delays = _backoff(self._backoff_initial, self._backoff_max)
        attempt = 0
        while True:
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = self._connect()
                self._write(self._conn, rows)
                return
            except psycopg.OperationalError as exc:
                attempt += 1
                if self._max_retries is not None and attempt > self._max_retries:
                    raise
                delay = next(delays)
                log.warning(
                    "analytics write of %d items failed (attempt %d): %s; retrying in %.1fs",
                    len(items),
                    attempt,
                    exc,
                    delay,
                )
                self._discard_connection()
                time.sleep(delay)

    def _write(self, conn: psycopg.Connection[Any], rows: dict[str, list[tuple[Any, ...]]]) -> None:
        with conn.transaction():
            for table, table_rows in rows.items():
                if not table_rows:
                    continue
                stmt = self._statements[table]
                with conn.cursor() as cur:
                    with cur.copy(stmt.copy) as copy:
                        for row in table_rows:
                            copy.write_row(row)
                    cur.execute(stmt.merge)

    def _discard_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except psycopg.Error:
                log.debug("closing a broken analytics connection failed", exc_info=True)

    def close(self) -> None:
        """Close the connection when the dataflow ends."""
        self._discard_connection()


class PostgresSink(DynamicSink[AnalyticsItem]):
    """Write enriched tickets, routing decisions and dead letters to the analytics schema.

    Delivery guarantee: at-least-once from the flow, effectively-once in the tables.
    Idempotency keys: ``ticket_facts`` and ``routing_decisions`` are keyed by
    ``ticket_id`` and only a strictly newer ``version`` (the source LSN) replaces a row;
    ``routing_decision_history`` is keyed by ``(ticket_id, version)`` and
    ``dead_letters`` by ``(stage, topic, position_key)``, both insert-if-absent. Each
    batch is one transaction, so a crash leaves either all or none of it.

    Args:
        dsn: libpq connection string of the analytics database.
        schema: Schema holding the tables of ``sql/analytics``.
        connect_timeout: Seconds to wait for each connection attempt.
        backoff_initial: First retry delay after a connection loss, in seconds.
        backoff_max: Longest retry delay, in seconds.
        max_retries: Give up after this many failed attempts of one batch; ``None``
            retries for as long as it takes (the flow stalls rather than drop data).
    """

    def __init__(
        self,
        dsn: str,
        *,
        schema: str = "analytics",
        connect_timeout: int = 10,
        backoff_initial: float = 0.2,
        backoff_max: float = 30.0,
        max_retries: int | None = None,
    ) -> None:
        self._dsn = dsn
        self._schema = schema
        self._connect_timeout = connect_timeout
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._max_retries = max_retries

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _PostgresPartition:
        """Open this worker's connection and check that the schema is in place."""
        return _PostgresPartition(
            self._dsn,
            schema=self._schema,
            connect_timeout=self._connect_timeout,
            backoff_initial=self._backoff_initial,
            backoff_max=self._backoff_max,
            max_retries=self._max_retries,
        )
