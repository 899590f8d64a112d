"""Run summaries: what was created, what was routed, and how long it took."""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import psycopg
import redis


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of ``values``; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def first_decisions(client: redis.Redis, prefix: str) -> dict[int, dict[str, str]]:
    """The first non-release decision of each ticket, read from the decision stream."""
    first: dict[int, dict[str, str]] = {}
    last_id = "-"
    stream = f"{prefix}:decisions"
    while True:
        entries: list[Any] = client.xrange(stream, min=last_id, max="+", count=5000)  # type: ignore[assignment]
        if last_id != "-":
            entries = entries[1:]  # the range is inclusive of the last id already seen
        if not entries:
            break
        for _entry_id, raw in entries:
            fields = {k.decode(): v.decode() for k, v in raw.items()}
            if fields.get("status") == "released":
                continue
            first.setdefault(int(fields["ticket_id"]), fields)
        last_id = entries[-1][0].decode()
    return first


def latency_ms(fields: dict[str, str]) -> float:
    """Source commit → decision applied in Redis, in milliseconds."""
    committed = datetime.fromisoformat(fields["source_committed_at"]).timestamp()
    applied = int(fields["applied_at_us"]) / 1e6
    return (applied - committed) * 1000.0


def routed_summary(client: redis.Redis, prefix: str, ticket_ids: Iterable[int]) -> dict[str, Any]:
    """How many of ``ticket_ids`` have a decision, by status, and latency percentiles."""
    ids = list(ticket_ids)
    first = first_decisions(client, prefix)
    mine = [first[t] for t in ids if t in first]
    latencies = [latency_ms(f) for f in mine]
    statuses: dict[str, int] = {}
    for f in mine:
        statuses[f["status"]] = statuses.get(f["status"], 0) + 1
    return {
        "tickets_routed": len(mine),
        "routed_by_status": statuses,
        "latency_ms": {
            "p50": _round(percentile(latencies, 50)),
            "p90": _round(percentile(latencies, 90)),
            "p99": _round(percentile(latencies, 99)),
            "max": _round(max(latencies) if latencies else None),
        },
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def dead_letter_count(analytics_dsn: str) -> int:
    with psycopg.connect(analytics_dsn) as conn:
        row = conn.execute("SELECT count(*) FROM analytics.dead_letters").fetchone()
    return int(row[0]) if row else 0
