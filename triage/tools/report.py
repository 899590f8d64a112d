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


def _counts(conn: psycopg.Connection[Any], query: str) -> dict[str, int]:
    return {str(k): int(v) for k, v in conn.execute(query).fetchall()}


def enrichment_summary(analytics_dsn: str) -> dict[str, Any]:
    """What enrichment derived for the tickets in the analytics store."""
    with psycopg.connect(analytics_dsn) as conn:
        row = conn.execute(
            "SELECT count(*),"
            " count(*) FILTER (WHERE jsonb_array_length(coalesce(kb_suggestions, '[]')) > 0),"
            " count(*) FILTER (WHERE jsonb_array_length(coalesce(duplicates, '[]')) > 0),"
            " round(avg(sentiment)::numeric, 3)"
            " FROM analytics.ticket_facts"
        ).fetchone()
        total, with_kb, with_dups, mean_sentiment = row if row else (0, 0, 0, None)
        return {
            "tickets": int(total),
            "languages": _counts(
                conn, "SELECT language, count(*) FROM analytics.ticket_facts GROUP BY 1"
            ),
            "sentiment": _counts(
                conn, "SELECT sentiment_label, count(*) FROM analytics.ticket_facts GROUP BY 1"
            ),
            "mean_sentiment_en": None if mean_sentiment is None else float(mean_sentiment),
            "intents": _counts(
                conn,
                "SELECT coalesce(intent, 'none'), count(*) FROM analytics.ticket_facts GROUP BY 1",
            ),
            "intent_source": _counts(
                conn, "SELECT intent_source, count(*) FROM analytics.ticket_facts GROUP BY 1"
            ),
            "category_source": _counts(
                conn, "SELECT category_source, count(*) FROM analytics.ticket_facts GROUP BY 1"
            ),
            "priorities": _counts(
                conn, "SELECT priority, count(*) FROM analytics.ticket_facts GROUP BY 1"
            ),
            "with_kb_suggestions": int(with_kb),
            "with_duplicates": int(with_dups),
        }


def sla_summary(analytics_dsn: str) -> dict[str, Any]:
    """SLA events by metric and kind, fulfilment, breaches and breach risk."""
    with psycopg.connect(analytics_dsn) as conn:
        events = conn.execute(
            "SELECT metric, kind, count(*) FROM analytics.sla_events GROUP BY 1, 2 ORDER BY 1, 2"
        ).fetchall()
        fulfilled = conn.execute(
            "SELECT count(*) FILTER (WHERE NOT breached), count(*) FILTER (WHERE breached)"
            " FROM analytics.sla_events WHERE kind = 'fulfill'"
        ).fetchone()
        risk = conn.execute(
            "SELECT count(*), round(avg(risk)::numeric, 3), count(*) FILTER (WHERE risk >= 0.5)"
            " FROM analytics.ticket_risk"
        ).fetchone()
    by_metric: dict[str, dict[str, int]] = {}
    for metric, kind, n in events:
        by_metric.setdefault(str(metric), {})[str(kind)] = int(n)
    met, missed = fulfilled if fulfilled else (0, 0)
    scored, mean_risk, high = risk if risk else (0, None, 0)
    return {
        "events": by_metric,
        "fulfilled_in_time": int(met),
        "fulfilled_late": int(missed),
        "breaches": sum(m.get("breach", 0) for m in by_metric.values()),
        "tickets_risk_scored": int(scored),
        "mean_breach_risk": None if mean_risk is None else float(mean_risk),
        "tickets_risk_at_least_half": int(high),
    }
