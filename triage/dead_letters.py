"""Reading the dead letters back (``triage dead-letters list``).

Every record a step could not process and every row a store refused is kept in the
analytics store's ``dead_letters`` table with its stage, the reason and the record (see
``sinks/dead_letters.py``). This lists them, newest first, and counts them per stage.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

COLUMNS = ("id", "stage", "reason", "topic", "key", "payload", "failed_at", "recorded_at")


def list_dead_letters(
    dsn: str,
    *,
    stage: str | None = None,
    since: datetime | None = None,
    limit: int = 50,
    schema: str = "analytics",
) -> list[dict[str, Any]]:
    """The newest dead letters, optionally of one stage and failed at or after ``since``."""
    query = sql.SQL(
        "SELECT {cols} FROM {table}"
        " WHERE (%(stage)s::text IS NULL OR stage = %(stage)s)"
        " AND (%(since)s::timestamptz IS NULL OR failed_at >= %(since)s)"
        " ORDER BY failed_at DESC, id DESC LIMIT %(limit)s"
    ).format(
        cols=sql.SQL(", ").join(map(sql.Identifier, COLUMNS)),
        table=sql.Identifier(schema, "dead_letters"),
    )
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(query, {"stage": stage, "since": since, "limit": limit}).fetchall()
    return [dict(zip(COLUMNS, row, strict=True)) for row in rows]


def count_by_stage(dsn: str, *, schema: str = "analytics") -> dict[str, int]:
    """How many dead letters each stage has, most first."""
    query = sql.SQL(
        "SELECT stage, count(*) FROM {} GROUP BY stage ORDER BY count(*) DESC, stage"
    ).format(sql.Identifier(schema, "dead_letters"))
    with psycopg.connect(dsn) as conn:
        return {stage: count for stage, count in conn.execute(query).fetchall()}
