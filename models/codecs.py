"""How the stores keep a record: an enriched ticket's fields, a routing decision's columns,
live hash, keys and ranks.

An enriched ticket is flattened once, by :func:`ticket_fields`; the analytics store takes
:data:`TICKET_FACT_COLUMNS` of it, the warehouse and the search index the fields of their
own schemas. A routing decision has one codec, pure (no I/O): the PostgreSQL sink writes
:func:`routing_row` in :data:`ROUTING_COLUMNS` order, the Redis sink writes
:func:`routing_hash` under :func:`ticket_key` (its Lua script receives the fields from
here), and the API reads both back with :func:`routing_from_hash` and
:data:`DECISION_FIELDS`. A new field of :class:`~models.helpdesk.RoutingDecision` is added
here, in the table's migration and in the public schema, and nowhere else.

Example:
    >>> from datetime import UTC, datetime
    >>> at = datetime(2025, 3, 1, 9, 30, tzinfo=UTC)
    >>> decision = RoutingDecision(
    ...     ticket_id=7, version=120, queue="billing", status="assigned", agent_id=3,
    ...     score=0.8, confidence=0.6, reasons=("skills:billing",), priority="high",
    ...     sla_deadline=None, model_version="router-1", decided_at=at,
    ...     source_committed_at=at, candidates=2,
    ... )
    >>> routing_hash(decision)["agent_id"], routing_hash(decision)["sla_deadline"]
    ('3', '')
    >>> routing_from_hash(routing_hash(decision)) == decision
    True
    >>> ticket_key("triage", 7), queue_score("high", at) > queue_score("urgent", at)
    ('triage:ticket:7:routing', True)
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from models.helpdesk import EnrichedTicket, RoutingDecision, Ticket
from models.pii import mask_pii

ANALYTICS_SCHEMA = "analytics"
"""The schema the analytics migrations create (``sql/analytics``), every store and reader's
default."""

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
    "organization",
    "region",
    "sentiment",
    "sentiment_label",
    "sentiment_confidence",
    "intent",
    "intent_confidence",
    "intent_source",
    "category_confidence",
    "category_source",
    "category_suggestion",
    "duplicates",
    "kb_suggestions",
    "response_suggestion",
    "first_reply_due",
    "resolution_due",
    "sla_policy",
    "sla_breached",
    "model_versions",
    "categories",
)
"""Columns of the analytics store's ``ticket_facts``, in order."""


_FIELDS_KEPT = 2048
"""Flattened tickets kept for the next sink: each ticket goes to three of them in turn."""
_fields_memo: dict[tuple[int, bool], tuple[EnrichedTicket, Mapping[str, Any]]] = {}
_fields_lock = threading.Lock()


def ticket_fields(item: EnrichedTicket, *, allow_pii: bool = False) -> Mapping[str, Any]:
    """Every stored field of an enriched ticket, by name; free text masked unless allowed.

    Nested values are JSON text (``duplicates``, ``kb_suggestions``, ``model_versions``)
    or lists (``priority_reasons``, ``categories``), as the stores keep them.

    The analytics store, the search index and the warehouse each flatten the same ticket
    object within one batch, so the result is kept for the most recent tickets (by object
    identity; the entry holds the object, so its id cannot be reused meanwhile) and is
    read-only. The masked variant is derived from the plain one.
    """
    key = (id(item), allow_pii)
    kept = _fields_memo.get(key)
    if kept is not None and kept[0] is item:
        return kept[1]
    if allow_pii:
        fields: Mapping[str, Any] = MappingProxyType(_flatten(item))
    else:
        plain = ticket_fields(item, allow_pii=True)
        t = item.ticket
        masked = {"subject": mask_pii(t.subject), "description": mask_pii(t.description)}
        fields = MappingProxyType({**plain, **masked})
    with _fields_lock:  # worker threads of one process share the memo
        if len(_fields_memo) >= _FIELDS_KEPT:
            del _fields_memo[next(iter(_fields_memo))]  # oldest first (insertion order)
        _fields_memo[key] = (item, fields)
    return fields


def _flatten(item: EnrichedTicket) -> dict[str, Any]:
    t = item.ticket
    return {
        "ticket_id": t.id,
        "version": t.version,
        "op": item.op,
        "customer_id": t.customer_id,
        "customer_tier": item.customer_tier,
        "channel": t.channel,
        "status": t.status,
        "priority": item.priority,
        "priority_reasons": list(item.priority_reasons),
        "category": item.category,
        "queue": item.queue,
        "language": item.language,
        "language_confidence": item.language_confidence,
        "assigned_agent_id": t.assigned_agent_id,
        "subject": t.subject,
        "description": t.description,
        "created_at": t.created_at,
        "updated_at": t.updated_at,
        "first_reply_at": t.first_reply_at,
        "solved_at": t.solved_at,
        "csat": t.csat,
        "source_committed_at": item.committed_at,
        "enriched_at": item.enriched_at,
        "deleted": item.op == "d",
        "organization": item.organization,
        "region": item.region,
        "sentiment": item.sentiment,
        "sentiment_label": item.sentiment_label,
        "sentiment_confidence": item.sentiment_confidence,
        "intent": item.intent,
        "intent_confidence": item.intent_confidence,
        "intent_source": item.intent_source,
        "category_confidence": item.category_confidence,
        "category_source": item.category_source,
        "category_suggestion": item.category_suggestion,
        "duplicates": json.dumps(
            [{"ticket_id": t_id, "similarity": sim} for t_id, sim in item.duplicates]
        ),
        "kb_suggestions": json.dumps(
            [
                {"article_id": a_id, "title": title, "score": score}
                for a_id, title, score in item.kb_suggestions
            ]
        ),
        "response_suggestion": item.response_suggestion,
        "first_reply_due": item.first_reply_due,
        "resolution_due": item.resolution_due,
        "sla_policy": item.sla_policy,
        "sla_breached": item.sla_breached,
        "model_versions": json.dumps(dict(item.model_versions), sort_keys=True),
        "categories": list(item.categories),
    }


DECISION_FIELDS: tuple[str, ...] = (
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
)
"""The fields every store keeps and the API serves."""

ROUTING_COLUMNS: tuple[str, ...] = (*DECISION_FIELDS, "extra")
"""Columns of ``routing_decisions`` and ``routing_decision_history``: the fields, plus the
free-form diagnostics (``extra``, JSON) that only the analytics store keeps."""


def routing_row(decision: RoutingDecision) -> tuple[Any, ...]:
    """One ``routing_decisions`` row in :data:`ROUTING_COLUMNS` order."""
    values = {name: getattr(decision, name) for name in DECISION_FIELDS}
    values["reasons"] = list(decision.reasons)
    # Extra diagnostics are free-form; anything not JSON-native is kept as its text.
    values["extra"] = json.dumps(dict(decision.extra), default=str, sort_keys=True)
    return tuple(values[name] for name in ROUTING_COLUMNS)


def routing_from_row(row: Mapping[str, Any]) -> RoutingDecision:
    """The decision read back from a row keyed by column name (``extra`` optional)."""
    extra = row.get("extra") or {}
    return RoutingDecision(
        **{name: row[name] for name in DECISION_FIELDS if name != "reasons"},
        reasons=tuple(row["reasons"] or ()),
        extra=json.loads(extra) if isinstance(extra, str) else dict(extra),
    )


SEARCH_FACT_COLUMNS: tuple[str, ...] = (
    "ticket_id", "version", "deleted", "customer_id", "customer_tier", "channel", "status",
    "priority", "category", "intent", "queue", "language", "language_confidence",
    "organization", "assigned_agent_id", "subject", "created_at", "updated_at",
    "first_reply_at", "solved_at", "csat", "source_committed_at", "enriched_at",
)  # fmt: skip
"""The ``ticket_facts`` columns that, with the ticket's description, rebuild its search
document (:func:`ticket_from_facts`)."""


def ticket_from_facts(row: Mapping[str, Any], description: str) -> EnrichedTicket:
    """The enriched ticket the search index is rebuilt from, read back from the stored
    :data:`SEARCH_FACT_COLUMNS` (the inverse of :func:`ticket_fields` for those columns)."""
    ticket = Ticket(
        id=row["ticket_id"],
        customer_id=row["customer_id"],
        subject=row["subject"],
        description=description,
        channel=row["channel"],
        status=row["status"],
        priority=row["priority"],
        category=row["category"],
        intent=row["intent"],
        assigned_agent_id=row["assigned_agent_id"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        first_reply_at=row["first_reply_at"],
        solved_at=row["solved_at"],
        csat=row["csat"],
        version=row["version"],
    )
    return EnrichedTicket(
        ticket=ticket,
        op="d" if row["deleted"] else "u",
        committed_at=row["source_committed_at"],
        customer_tier=row["customer_tier"],
        customer_language=row["language"],
        language=row["language"],
        language_confidence=row["language_confidence"],
        priority=row["priority"],
        priority_reasons=(),
        category=row["category"],
        queue=row["queue"],
        enriched_at=row["enriched_at"],
        organization=row["organization"],
        intent=row["intent"],
    )


def _iso(value: datetime | None) -> str:
    return "" if value is None else value.isoformat()


def _time(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def routing_hash(decision: RoutingDecision) -> dict[str, str]:
    """The decision as flat string fields, as the live hash and stream keep it.

    Times are ISO-8601 strings; ``reasons`` is a JSON list; absent values are ``""``;
    floats keep their exact ``repr``.
    """
    return {
        "ticket_id": str(decision.ticket_id),
        "version": str(decision.version),
        "status": decision.status,
        "queue": decision.queue,
        "agent_id": "" if decision.agent_id is None else str(decision.agent_id),
        "score": repr(float(decision.score)),
        "confidence": repr(float(decision.confidence)),
        "reasons": json.dumps(list(decision.reasons)),
        "priority": decision.priority,
        "sla_deadline": _iso(decision.sla_deadline),
        "model_version": decision.model_version,
        "decided_at": decision.decided_at.isoformat(),
        "source_committed_at": decision.source_committed_at.isoformat(),
        "candidates": str(decision.candidates),
    }


def routing_from_hash(fields: Mapping[str, str]) -> RoutingDecision:
    """Inverse of :func:`routing_hash`; raises KeyError/ValueError on a malformed hash."""
    return RoutingDecision(
        ticket_id=int(fields["ticket_id"]),
        version=int(fields["version"]),
        queue=fields["queue"],
        status=fields["status"],  # type: ignore[arg-type]
        agent_id=int(fields["agent_id"]) if fields.get("agent_id") else None,
        score=float(fields["score"]),
        confidence=float(fields["confidence"]),
        reasons=tuple(json.loads(fields.get("reasons") or "[]")),
        priority=fields["priority"],
        sla_deadline=_time(fields["sla_deadline"]) if fields.get("sla_deadline") else None,
        model_version=fields["model_version"],
        decided_at=_time(fields["decided_at"]),
        source_committed_at=_time(fields["source_committed_at"]),
        candidates=int(fields.get("candidates") or 0),
    )


# -- live-state keys and queue order ---------------------------------------------------------

PRIORITY_RANK: dict[str, int] = {"urgent": 0, "high": 1, "normal": 2, "low": 3}
"""Queue order by priority; unknown priorities sort with ``normal``."""

PRIORITIES: tuple[str, ...] = tuple(sorted(PRIORITY_RANK, key=PRIORITY_RANK.__getitem__))
"""Priority names, most urgent first."""

RANK_WEIGHT = 1e10
"""Score weight of one priority rank; larger than any epoch second, so rank dominates."""


def queue_score(priority: str, decided_at: datetime) -> float:
    """Sorted-set score: priority rank first, then decision time (oldest first)."""
    rank = PRIORITY_RANK.get(priority, PRIORITY_RANK["normal"])
    return rank * RANK_WEIGHT + decided_at.timestamp()


def priority_from_score(score: float) -> str:
    """Invert :func:`queue_score` to the priority name."""
    rank = int(score // RANK_WEIGHT)
    for name, value in PRIORITY_RANK.items():
        if value == rank:
            return name
    return "normal"


def queued_at_from_score(score: float) -> datetime:
    """Invert :func:`queue_score` to the time the ticket was routed to the list."""
    return datetime.fromtimestamp(score - int(score // RANK_WEIGHT) * RANK_WEIGHT, tz=UTC)


def ticket_key(prefix: str, ticket_id: int) -> str:
    """Hash holding the current routing decision of a ticket."""
    return f"{prefix}:ticket:{ticket_id}:routing"


def agent_queue_key(prefix: str, agent_id: int | str) -> str:
    """Sorted set of the tickets assigned to an agent."""
    return f"{prefix}:agent:{agent_id}:queue"


def holding_key(prefix: str, queue: str) -> str:
    """Sorted set of the tickets waiting in a queue for an eligible agent."""
    return f"{prefix}:queue:{queue}:holding"


def agents_key(prefix: str) -> str:
    """Set of agent ids that ever received a ticket (tells unknown agents from idle ones)."""
    return f"{prefix}:agents"


def stream_key(prefix: str) -> str:
    """Stream of applied decisions for agent tooling."""
    return f"{prefix}:decisions"


def stats_key(prefix: str) -> str:
    """Hash of decision counters."""
    return f"{prefix}:stats"


def sla_key(prefix: str, ticket_id: int) -> str:
    """Hash holding a ticket's SLA clocks per metric and its newest breach-risk score."""
    return f"{prefix}:ticket:{ticket_id}:sla"


def sla_stream_key(prefix: str) -> str:
    """Stream of applied SLA events."""
    return f"{prefix}:sla"


def alerts_key(prefix: str) -> str:
    """Stream of SLA breaches, for paging and dashboards."""
    return f"{prefix}:alerts"


def anomalies_key(prefix: str) -> str:
    """Set of anomaly alerts already applied (series and bucket start)."""
    return f"{prefix}:anomalies"
