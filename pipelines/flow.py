"""The triage dataflow: decode CDC → enrich tickets → route → analytics and live stores.

Wiring only: every rule lives in ``models/``; sources and sinks are passed in (or built
from settings by the caller), so the same flow runs on the embedded reader and on Kafka.

Step graph::

    read_cdc → decode_cdc ─┬→ dispatch_entities ─┬→ enrich_ticket (keyed by customer)
                           │                     └→ agents (keyed by team) ─┐
                           │                        enrich_ticket → key_by_queue ─┴→ route_ticket
                           └→ dead letters ──────────────────────────────────→ write_analytics
    enriched + decisions + dead letters → write_analytics;  decisions → write_decisions
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import bytewax.operators as op
from bytewax.dataflow import Dataflow, Stream
from bytewax.inputs import Source
from bytewax.outputs import Sink

from connectors.debezium import DecodeError, decode_change_event
from models.enrichment import CustomerContext, TicketEnricher
from models.events import ChangeEvent, DeadLetter, RawChange
from models.helpdesk import Agent, Customer, EnrichedTicket, RoutingDecision, RowError
from models.language import LanguageDetector
from models.routing import QueueRouter, RoutingPolicy, RoutingRequest
from pipelines.settings import PipelineSettings
from pipelines.state import stateful_flat_map

log = logging.getLogger(__name__)

REFERENCE_TABLES = frozenset({"customers", "agents"})
KNOWN_TABLES = frozenset({"customers", "agents", "tickets", "ticket_events", "kb_articles"})

# Process-local counters, reported by the CLI and benchmark (events seen per outcome).
FLOW_COUNTERS: Counter[str] = Counter()


@dataclass(frozen=True)
class AgentUpsert:
    """An agent joined or changed in a queue."""

    agent: Agent
    version: int
    at: datetime


@dataclass(frozen=True)
class AgentRemoval:
    """An agent left a queue (deleted or moved to another team)."""

    agent_id: int
    version: int


RoutingInput = RoutingRequest | AgentUpsert | AgentRemoval

InputFactory = Callable[[Dataflow], tuple[Stream[RawChange], Stream[DeadLetter]]]
"""Adds an input to a flow and returns its records and its own errors (e.g. Kafka's)."""


def _json_or_none(data: Any) -> str | None:
    if data is None:
        return None
    return json.dumps(data, default=str, separators=(",", ":"))


def dead_letter_from_raw(raw: RawChange, stage: str, reason: str) -> DeadLetter:
    return DeadLetter(
        stage=stage,
        reason=reason,
        topic=raw.topic,
        key=raw.key.decode("utf-8", "replace") if raw.key is not None else None,
        payload=raw.value.decode("utf-8", "replace") if raw.value is not None else None,
        position=raw.position,
        failed_at=datetime.now(UTC),
    )


def dead_letter_from_event(event: ChangeEvent, stage: str, reason: str) -> DeadLetter:
    return DeadLetter(
        stage=stage,
        reason=reason,
        topic=event.position.topic or f"table:{event.table}",
        key=_json_or_none(event.key),
        payload=_json_or_none({"op": event.op, "before": event.before, "after": event.after}),
        position=event.position,
        failed_at=datetime.now(UTC),
    )


def decode(raw: RawChange) -> ChangeEvent | DeadLetter | None:
    """Decode one record; malformed ones become dead letters, tombstones are skipped."""
    try:
        event = decode_change_event(raw)
    except DecodeError as exc:
        FLOW_COUNTERS["dead_letters"] += 1
        return dead_letter_from_raw(raw, "decode_cdc", str(exc))
    except Exception as exc:  # a decoder bug must not stop the flow: keep the record
        log.exception("unexpected decoder failure on %s", raw.topic)
        FLOW_COUNTERS["dead_letters"] += 1
        return dead_letter_from_raw(raw, "decode_cdc", f"unexpected {type(exc).__name__}: {exc}")
    if event is None:
        FLOW_COUNTERS["tombstones"] += 1
        return None
    FLOW_COUNTERS["events"] += 1
    return event


def dispatch_entities(event: ChangeEvent) -> Iterable[tuple[str, Any]]:
    """Key each change for the step that owns it.

    Returns ``("c:<customer id>", event)`` for customer and ticket changes (enrichment is
    keyed by customer), ``("q:<team>", AgentUpsert | AgentRemoval)`` for agent changes and
    ``("dead", DeadLetter)`` for rows that cannot be parsed. Other tables are counted and
    left to later stages.
    """
    try:
        if event.table == "tickets":
            row = event.row or {}
            return [(f"c:{int(row['customer_id'])}", event)]
        if event.table == "customers":
            return [(f"c:{_row_id(event)}", event)]
        if event.table == "agents":
            return list(_agent_items(event))
    except (KeyError, TypeError, ValueError, RowError) as exc:
        FLOW_COUNTERS["dead_letters"] += 1
        return [("dead", dead_letter_from_event(event, "dispatch_entities", f"bad row: {exc}"))]
    if event.table not in KNOWN_TABLES:
        FLOW_COUNTERS[f"unknown_table:{event.table}"] += 1
    else:
        FLOW_COUNTERS[f"unused_table:{event.table}"] += 1
    return []


def _row_id(event: ChangeEvent) -> int:
    """The row's ``id`` from the key, else from the row image (raises when absent)."""
    value = event.key.get("id", (event.row or {}).get("id"))
    if value is None:
        raise KeyError("id")
    return int(value)


def _agent_items(event: ChangeEvent) -> Iterable[tuple[str, RoutingInput]]:
    before_team = (event.before or {}).get("team")
    if event.op == "d" or event.after is None:
        agent_id = _row_id(event)
        if before_team:
            yield f"q:{before_team}", AgentRemoval(agent_id, event.version)
        return
    agent = Agent.from_row(event.after, version=event.version)
    if before_team and before_team != agent.team:
        yield f"q:{before_team}", AgentRemoval(agent.id, event.version)
    yield f"q:{agent.team}", AgentUpsert(agent, event.version, event.committed_at)


def make_enrich_step(enricher: TicketEnricher):
    """Keyed mapper for ``stateful_flat_map``: customer context in, enriched tickets out."""

    def enrich_step(
        ctx: CustomerContext | None, event: ChangeEvent
    ) -> tuple[CustomerContext | None, list[EnrichedTicket | DeadLetter]]:
        ctx = ctx or CustomerContext()
        out: list[EnrichedTicket | DeadLetter] = []
        try:
            if event.table == "customers":
                if event.op == "d" or event.after is None:
                    ctx.customer = None
                else:
                    ctx.customer = Customer.from_row(event.after, version=event.version)
            else:
                out.append(enricher.enrich(ctx, event))
                FLOW_COUNTERS["tickets_enriched"] += 1
        except (RowError, KeyError, TypeError, ValueError) as exc:
            FLOW_COUNTERS["dead_letters"] += 1
            out.append(dead_letter_from_event(event, "enrich_ticket", f"bad row: {exc}"))
        return (None if ctx.is_empty() else ctx), out

    return enrich_step


def make_route_step(policy: RoutingPolicy):
    """Keyed mapper for ``stateful_flat_map``: a queue's router in, decisions out."""

    def route_step(
        router: QueueRouter | None, item: RoutingInput
    ) -> tuple[QueueRouter | None, list[RoutingDecision]]:
        if isinstance(item, RoutingRequest):
            router = router or QueueRouter(queue=item.queue, policy=policy)
            decisions = router.on_ticket(item, at=item.committed_at)
        elif isinstance(item, AgentUpsert):
            router = router or QueueRouter(queue=item.agent.team, policy=policy)
            decisions = router.upsert_agent(item.agent, version=item.version, at=item.at)
        else:
            if router is not None:
                router.remove_agent(item.agent_id)
            decisions = []
        FLOW_COUNTERS["decisions"] += len(decisions)
        return router, decisions

    return route_step


def _value(kv: tuple[str, Any]) -> Any:
    return kv[1]


def build_flow(
    settings: PipelineSettings,
    *,
    source: Source[RawChange] | InputFactory,
    analytics_sink: Sink[Any],
    decision_sink: Sink[RoutingDecision],
) -> Dataflow:
    """Build the triage dataflow for a source of raw CDC records and the two sinks.

    Args:
        settings: what to compute (languages, routing policy).
        source: a Bytewax source of :class:`RawChange` (the embedded pgoutput reader), or
            an :data:`InputFactory` that adds its own input steps (the Kafka path).
        analytics_sink: receives enriched tickets, routing decisions and dead letters.
        decision_sink: receives routing decisions for the live store (Redis).
    """
    policy = settings.routing_policy()
    enricher = TicketEnricher(policy, LanguageDetector(settings.languages))

    flow = Dataflow(settings.flow_id)
    source_errors: Stream[DeadLetter] | None = None
    if isinstance(source, Source):
        raw = op.input("read_cdc", flow, source)
    else:
        raw, source_errors = source(flow)
    decoded = op.filter_map("decode_cdc", raw, decode)
    by_kind = op.branch("split_decode_errors", decoded, lambda x: isinstance(x, ChangeEvent))
    events = cast(Stream[ChangeEvent], by_kind.trues)

    dispatched = op.flat_map("dispatch_entities", events, dispatch_entities)
    by_owner = op.branch("split_dispatch_errors", dispatched, lambda kv: kv[0] != "dead")
    to_customers = op.branch("split_agents", by_owner.trues, lambda kv: kv[0].startswith("c:"))

    enriched_kv = stateful_flat_map("enrich_ticket", to_customers.trues, make_enrich_step(enricher))
    enriched_any = op.map("drop_customer_key", enriched_kv, _value)
    enriched_split = op.branch(
        "split_enrich_errors", enriched_any, lambda x: isinstance(x, EnrichedTicket)
    )
    enriched: Stream[EnrichedTicket] = enriched_split.trues

    tickets_by_queue = op.map(
        "key_by_queue", enriched, lambda et: (f"q:{et.queue}", RoutingRequest.from_enriched(et))
    )
    routing_in = op.merge("merge_routing_inputs", tickets_by_queue, to_customers.falses)
    decisions_kv = stateful_flat_map("route_ticket", routing_in, make_route_step(policy))
    decisions: Stream[RoutingDecision] = op.map("drop_queue_key", decisions_kv, _value)

    dead = op.merge(
        "merge_dead_letters",
        *([source_errors] if source_errors is not None else []),
        by_kind.falses,
        op.map("drop_dead_key", by_owner.falses, _value),
        enriched_split.falses,
    )
    op.output(
        "write_analytics", op.merge("merge_analytics", enriched, decisions, dead), analytics_sink
    )
    op.output("write_decisions", decisions, decision_sink)
    return flow
