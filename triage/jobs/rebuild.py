"""Re-create Redis and the search index from the stores of record (``triage rebuild``).

Search (``triage rebuild search``): every ticket of ``ticket_facts`` (with its
description from the helpdesk database) and every KB article of the helpdesk database is
written again through the configured search sink; see :func:`rebuild_search`.

Redis (``triage rebuild redis``):

Redis holds the live view (each ticket's routing decision, agent and holding queues, SLA
clocks, breach risk) of what the analytics store also records. When Redis is lost, this
reads the rows back as the flow's own items and applies them through the Redis sink, whose
scripts keep only items newer than what is stored: each ticket's two newest decisions from
``routing_decision_history`` (the newer one is the current decision, the older one gives
its ``previous_agent_id``), the current SLA clocks (``ticket_sla``) and risk scores
(``ticket_risk``); the set of agents ever assigned comes from the history too. Hence the
rebuild is:

- idempotent: a second run (or the running pipeline writing meanwhile) changes nothing;
- resumable: rows are read in ticket-id order in pages, so an interrupted run just runs
  again (the pages already applied are skipped by the scripts);
- partial by design for history: the ``decisions``/``sla`` streams and the counters in
  ``stats`` get only the re-applied items, not the history Redis had.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, cast

import psycopg
import redis
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from psycopg import sql

from models.codecs import SEARCH_FACT_COLUMNS, ticket_from_facts
from models.helpdesk import EnrichedTicket, RoutingDecision
from models.kb import KbArticle
from models.signals import BreachRiskScore
from models.sla import SlaEvent
from sinks.postgres import (
    ROUTING_COLUMNS,
    ROUTING_DECISION_HISTORY,
    TICKET_RISK,
    TICKET_RISK_COLUMNS,
    TICKET_SLA,
    TICKET_SLA_COLUMNS,
)
from sinks.redis import RedisSink, agents_key


def decision_from_row(row: tuple[Any, ...]) -> RoutingDecision:
    """A ``routing_decisions`` row (:data:`~sinks.postgres.ROUTING_COLUMNS`) as a decision."""
    r = dict(zip(ROUTING_COLUMNS, row, strict=True))
    extra = r["extra"]
    return RoutingDecision(
        ticket_id=r["ticket_id"],
        version=r["version"],
        queue=r["queue"],
        status=r["status"],
        agent_id=r["agent_id"],
        score=r["score"],
        confidence=r["confidence"],
        reasons=tuple(r["reasons"] or ()),
        priority=r["priority"],
        sla_deadline=r["sla_deadline"],
        model_version=r["model_version"],
        decided_at=r["decided_at"],
        source_committed_at=r["source_committed_at"],
        candidates=r["candidates"],
        extra=json.loads(extra) if isinstance(extra, str) else dict(extra or {}),
    )


def sla_event_from_row(row: tuple[Any, ...]) -> SlaEvent:
    """A ``ticket_sla`` row (a metric's current clock) as the SLA event that set it."""
    r = dict(zip(TICKET_SLA_COLUMNS, row, strict=True))
    return SlaEvent(
        ticket_id=r["ticket_id"],
        metric=r["metric"],
        kind=r["kind"],
        at=r["updated_at"],
        deadline=r["deadline"],
        policy=r["policy"],
        business_seconds_elapsed=r["business_seconds_elapsed"],
        paused_seconds=r["paused_seconds"],
        breached=r["breached"],
    )


def risk_from_row(row: tuple[Any, ...]) -> BreachRiskScore:
    """A ``ticket_risk`` row as the breach-risk score."""
    r = dict(zip(TICKET_RISK_COLUMNS, row, strict=True))
    return BreachRiskScore(
        ticket_id=r["ticket_id"],
        queue=r["queue"],
        risk=r["risk"],
        scored_at=r["scored_at"],
        deadline=r["deadline"],
        metric=r["metric"],
        model_version=r["model_version"],
        version=r["version"],
    )


@dataclass(frozen=True)
class _Source:
    table: str
    columns: tuple[str, ...]
    order: tuple[str, ...]
    to_item: Callable[[tuple[Any, ...]], Any]
    newest: int | None = None  # per ticket, only this many newest versions

    def relation(self, schema: str) -> sql.Composable:
        table = sql.Identifier(schema, self.table)
        if self.newest is None:
            return table
        cols = sql.SQL(", ").join(map(sql.Identifier, self.columns))
        return sql.SQL(
            "(SELECT {cols} FROM (SELECT {cols}, row_number() OVER "
            "(PARTITION BY ticket_id ORDER BY version DESC) AS newest FROM {table}) AS h "
            "WHERE newest <= {n}) AS recent"
        ).format(cols=cols, table=table, n=sql.Literal(self.newest))


SOURCES = (
    _Source(
        ROUTING_DECISION_HISTORY,
        ROUTING_COLUMNS,
        ("ticket_id", "version"),
        decision_from_row,
        newest=2,
    ),
    _Source(TICKET_SLA, TICKET_SLA_COLUMNS, ("ticket_id", "metric"), sla_event_from_row),
    _Source(TICKET_RISK, TICKET_RISK_COLUMNS, ("ticket_id",), risk_from_row),
)
"""What Redis live state is rebuilt from, in application order."""


def _pages(
    conn: psycopg.Connection[Any], schema: str, source: _Source, page: int
) -> Iterator[list[tuple[Any, ...]]]:
    """The table's rows in key order, ``page`` at a time (keyset pagination)."""
    cols = sql.SQL(", ").join(map(sql.Identifier, source.columns))
    key = sql.SQL(", ").join(map(sql.Identifier, source.order))
    table = source.relation(schema)
    first = sql.SQL("SELECT {cols} FROM {table} ORDER BY {key} LIMIT %s").format(
        cols=cols, table=table, key=key
    )
    after = sql.SQL(
        "SELECT {cols} FROM {table} WHERE ({key}) > ({marks}) ORDER BY {key} LIMIT %s"
    ).format(
        cols=cols,
        table=table,
        key=key,
        marks=sql.SQL(", ").join(sql.Placeholder() * len(source.order)),
    )
    index = [source.columns.index(c) for c in source.order]
    rows = conn.execute(first, (page,)).fetchall()
    while rows:
        yield rows
        last = [rows[-1][i] for i in index]
        rows = conn.execute(after, (*last, page)).fetchall()


def count_rows(dsn: str, *, schema: str = "analytics") -> dict[str, int]:
    """Rows per source table (the progress bar's totals)."""
    with psycopg.connect(dsn) as conn:
        return {
            s.table: conn.execute(
                sql.SQL("SELECT count(*) FROM {}").format(s.relation(schema))
            ).fetchone()[0]  # type: ignore[index]
            for s in SOURCES
        }


def rebuild_redis(
    analytics_dsn: str,
    redis_url: str,
    *,
    prefix: str = "triage",
    schema: str = "analytics",
    page: int = 5000,
    progress: Callable[[str, int], None] | None = None,
) -> dict[str, int]:
    """Apply the analytics store's current rows to Redis; returns rows read per table.

    Args:
        analytics_dsn: The analytics database.
        redis_url: The Redis to rebuild (an empty one, or the live one: both are safe).
        prefix: Redis key prefix (``TRIAGE_REDIS__KEY_PREFIX``).
        schema: Schema of the analytics tables.
        page: Rows per read and per Redis batch.
        progress: Called with ``(table, rows)`` after each applied page.
    """
    partition = RedisSink(redis_url, prefix=prefix).build("rebuild_redis", 0, 1)
    read: dict[str, int] = {}
    try:
        with psycopg.connect(analytics_dsn) as conn:
            agents = conn.execute(
                sql.SQL(
                    "SELECT DISTINCT agent_id::text FROM {} WHERE status = 'assigned' "
                    "AND agent_id IS NOT NULL"
                ).format(sql.Identifier(schema, ROUTING_DECISION_HISTORY))
            ).fetchall()
            if agents:
                with redis.Redis.from_url(redis_url) as client:
                    client.sadd(agents_key(prefix), *(a for (a,) in agents))
            for source in SOURCES:
                read[source.table] = 0
                for rows in _pages(conn, schema, source, page):
                    partition.write_batch([source.to_item(row) for row in rows])
                    read[source.table] += len(rows)
                    if progress is not None:
                        progress(source.table, len(rows))
    finally:
        partition.close()
    return read


def ticket_from_fact(row: tuple[Any, ...], description: str) -> EnrichedTicket:
    """A ``ticket_facts`` row (:data:`models.codecs.SEARCH_FACT_COLUMNS`) and the ticket's
    description as the enriched ticket the search sinks index."""
    return ticket_from_facts(dict(zip(SEARCH_FACT_COLUMNS, row, strict=True)), description)


KB_COLUMNS = ("id", "title", "body", "category", "language", "published", "updated_at")


def rebuild_search(
    analytics_dsn: str,
    source_dsn: str,
    sink: DynamicSink[Any],
    *,
    schema: str = "analytics",
    page: int = 2000,
    progress: Callable[[str, int], None] | None = None,
) -> dict[str, int]:
    """Index every ticket and KB article again through a search sink; returns counts.

    Tickets come from ``ticket_facts`` (the flow's classification, in ticket-id pages) with
    their descriptions from the helpdesk database; KB articles from the helpdesk database.
    Tickets keep their version (the source LSN); KB articles get version 1, so any newer
    document already in the index wins and any later change replaces them. The sink masks
    PII and ignores versions that are not newer, so a rebuild is idempotent, resumable, and
    safe while the pipeline runs.

    Args:
        analytics_dsn: The analytics database.
        source_dsn: The helpdesk database (``TRIAGE_SOURCE__DSN``; read-only use).
        sink: The configured search sink (Elasticsearch or PostgreSQL full-text search).
        schema: Schema of the analytics tables.
        page: Rows per read and per write.
        progress: Called with ``("ticket_facts" | "kb_articles", rows)`` per page.
    """
    partition = cast(StatelessSinkPartition[Any], sink.build("rebuild_search", 0, 1))
    counts = {"ticket_facts": 0, "kb_articles": 0}
    facts = _Source("ticket_facts", SEARCH_FACT_COLUMNS, ("ticket_id",), lambda row: row)
    try:
        with psycopg.connect(analytics_dsn) as analytics, psycopg.connect(source_dsn) as source:
            for rows in _pages(analytics, schema, facts, page):
                ids = [row[0] for row in rows]
                descriptions: dict[int, str] = dict(
                    source.execute(
                        "SELECT id, description FROM tickets WHERE id = ANY(%s)", (ids,)
                    ).fetchall()
                )
                partition.write_batch(
                    [ticket_from_fact(row, descriptions.get(row[0], "")) for row in rows]
                )
                counts["ticket_facts"] += len(rows)
                if progress is not None:
                    progress("ticket_facts", len(rows))
            kb = _Source("kb_articles", KB_COLUMNS, ("id",), lambda row: row)
            for rows in _pages(source, "public", kb, page):
                partition.write_batch(
                    [
                        KbArticle(
                            id=r[0],
                            version=1,
                            title=r[1],
                            body=r[2],
                            category=r[3],
                            language=r[4],
                            published=r[5],
                            updated_at=r[6],
                        )
                        for r in rows
                    ]
                )
                counts["kb_articles"] += len(rows)
                if progress is not None:
                    progress("kb_articles", len(rows))
    finally:
        partition.close()
    return counts
