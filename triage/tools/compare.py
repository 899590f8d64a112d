"""What must be equal between two runs of the same history, read from the analytics store.

Two runs of one database history (one process against a cluster, embedded against Kafka)
must leave the same results. :func:`store_snapshot` reads exactly those: ticket facts that
no learned model decides, the category, queue and sentiment where rules or people (not a
model) set the category, rule-set priorities, whether a ticket got KB suggestions, one
current routing decision per ticket, the SLA clock events,
the minute metrics' totals and the dead-letter count. What may differ is left out on
purpose, with the reason:

* which agent got a ticket and whether it waited first: a queue receives tickets from
  several workers, so two changes committed close together may arrive in either order;
* fields learned models decide (model-applied labels, confidences, KB rankings shaped by
  feedback): which published model version predicted a ticket depends on timing; the
  version is recorded with each ticket;
* SLA breaches, which fire on the wall clock.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import psycopg
import redis

from models.codecs import sla_key, stream_key, ticket_key

FACT_COLUMNS = (
    "ticket_id, version, customer_id, customer_tier, channel, status, language, subject, "
    "created_at, first_reply_at, solved_at, deleted"
)

_QUERIES = {
    "facts": f"SELECT {FACT_COLUMNS} FROM analytics.ticket_facts ORDER BY 1",  # noqa: S608
    "rule_categories": (
        "SELECT ticket_id, category, queue, sentiment_label, organization, region "
        "FROM analytics.ticket_facts "
        "WHERE category_source IN ('ticket', 'keywords', 'fallback') ORDER BY 1"
    ),
    # Priorities set by rules (tier, channel, sentiment, keywords) or by people; a
    # priority the learned model applied names it in its reasons and is left out.
    "rule_priorities": (
        "SELECT ticket_id, priority FROM analytics.ticket_facts f WHERE NOT EXISTS "
        "(SELECT 1 FROM unnest(f.priority_reasons) r WHERE r LIKE 'learned from agents%') "
        "ORDER BY 1"
    ),
    # Whether a ticket got KB suggestions at all (which ones, and their order, learn from
    # feedback): a ticket read before the KB in one run and after it in the other differs.
    "kb_suggested": (
        "SELECT ticket_id, jsonb_array_length(kb_suggestions) > 0 "
        "FROM analytics.ticket_facts ORDER BY 1"
    ),
    "decided_tickets": (
        "SELECT ticket_id, count(*) FROM analytics.routing_decisions GROUP BY 1 ORDER BY 1"
    ),
    "sla_events": (
        "SELECT ticket_id, metric, kind, at, deadline, policy FROM analytics.sla_events "
        "WHERE kind <> 'breach' ORDER BY 1, 2, 4, 3, 5, 6"
    ),
    "metric_totals": (
        "SELECT dimension, sum(created), sum(solved), sum(reopened) "
        "FROM analytics.metrics_minute GROUP BY 1 ORDER BY 1"
    ),
    "dead_letters": "SELECT count(*) FROM analytics.dead_letters",
}


def store_snapshot(dsn: str) -> dict[str, list[tuple[Any, ...]]]:
    """The parts of an analytics store that two runs of one history must share."""
    with psycopg.connect(dsn) as conn:
        return {part: conn.execute(query).fetchall() for part, query in _QUERIES.items()}


# Parts compared only on the tickets both runs hold (a category applied by a model in one
# run may have stayed with the keyword rules in the other).
_ON_COMMON_TICKETS = frozenset({"rule_categories", "rule_priorities"})


def _comparable(
    a: dict[str, list[tuple[Any, ...]]], b: dict[str, list[tuple[Any, ...]]], part: str
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    rows_a, rows_b = a.get(part, []), b.get(part, [])
    if part in _ON_COMMON_TICKETS:
        common = {r[0] for r in rows_a} & {r[0] for r in rows_b}
        rows_a = [r for r in rows_a if r[0] in common]
        rows_b = [r for r in rows_b if r[0] in common]
    return rows_a, rows_b


def differing_parts(
    a: dict[str, list[tuple[Any, ...]]], b: dict[str, list[tuple[Any, ...]]]
) -> list[str]:
    """Names of the parts in which two snapshots differ (empty: the same results)."""
    parts = dict.fromkeys([*a, *b])  # the analytics parts, then any live ones, in order
    return [part for part in parts if _comparable(a, b, part)[0] != _comparable(a, b, part)[1]]


def describe_difference(
    a: dict[str, list[tuple[Any, ...]]], b: dict[str, list[tuple[Any, ...]]], *, limit: int = 10
) -> dict[str, dict[str, list[tuple[Any, ...]]]]:
    """For each differing part, up to ``limit`` rows found only in ``a`` and only in ``b``."""
    out = {}
    for part in differing_parts(a, b):
        first, second = _comparable(a, b, part)
        rows_a, rows_b = set(first), set(second)
        out[part] = {
            "only_first": sorted(rows_a - rows_b, key=repr)[:limit],
            "only_second": sorted(rows_b - rows_a, key=repr)[:limit],
        }
    return out


def caught_up(source_dsn: str, analytics_dsn: str) -> bool:
    """Whether the analytics store holds every source ticket at its current status, each
    with a current routing decision (a run has processed the whole history so far)."""
    with psycopg.connect(source_dsn) as conn:
        source = set(conn.execute("SELECT id, status FROM tickets").fetchall())
    with psycopg.connect(analytics_dsn) as conn:
        facts = set(conn.execute("SELECT ticket_id, status FROM analytics.ticket_facts").fetchall())
        row = conn.execute("SELECT count(*) FROM analytics.routing_decisions").fetchone()
    return bool(source) and source == facts and (row[0] if row else 0) == len(source)


def live_snapshot(redis_url: str, prefix: str) -> dict[str, list[tuple[Any, ...]]]:
    """The parts of the live store (Redis) that two runs of one history must share.

    Which tickets have a current routing decision; each ticket's SLA deadlines per metric
    (a clock's state may differ by breaches, which fire on the wall clock); the tickets
    the decisions stream announced; and the (ticket, version) pairs the stream holds more
    than once, which a replay after a crash must never add (empty in every run).
    """
    client = redis.Redis.from_url(redis_url)
    try:
        pattern = ticket_key(prefix, "*")  # type: ignore[arg-type]  # a glob over ids
        tickets = sorted(
            int(key.decode().split(":")[-2]) for key in client.scan_iter(pattern, count=1000)
        )
        deadlines = []
        for tid in tickets:
            fields = client.hgetall(sla_key(prefix, tid))
            for name, value in fields.items():
                field = name.decode()
                if field.endswith(":deadline") and value:
                    deadlines.append((tid, field.removesuffix(":deadline"), value.decode()))
        announced: Counter[tuple[int, int]] = Counter()
        for _, entry in client.xrange(stream_key(prefix)):
            announced[(int(entry[b"ticket_id"]), int(entry[b"version"]))] += 1
    finally:
        client.close()
    return {
        "live_tickets": [(t,) for t in tickets],
        "live_sla_deadlines": sorted(deadlines),
        "streamed_tickets": sorted({(t,) for t, _ in announced}),
        "streamed_twice": sorted(pair for pair, n in announced.items() if n > 1),
    }
