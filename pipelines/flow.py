"""The triage dataflow: decode CDC → enrich tickets → route → analytics and live stores.

Wiring only: every rule lives in ``models/``; sources and sinks are passed in (or built
from settings by the caller), so the same flow runs on the embedded reader and on Kafka.

Step graph::

    read_cdc → decode_cdc → dispatch_entities
      tickets, customers ─→ enrich_ticket   (keyed by customer: profile, language, sentiment,
                                              keyword category, rule priority)
      → classify_ticket   (one key: learned category/intent/priority, duplicates, KB,
      kb_articles, comments ─┘                drafts; fixes the sticky queue)
      → route_ticket      (keyed by queue: SLA clocks, routing, breach risk; agents join here)
    tickets + decisions + SLA events + risks + model metrics + dead letters → write_analytics
    decisions + SLA events + risks → write_live
    anomaly alerts + SLA breaches → publish_alerts   (optional, e.g. Kafka triage.alerts)
    tickets + KB article changes → write_search      (optional: Elasticsearch or PostgreSQL FTS)
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
from models.affinity import AffinityModel, LearnedRanker, RoundRobinRanker
from models.anomaly import AnomalyAlert
from models.burnout import WorkloadScore
from models.enrichment import CustomerContext, TicketEnricher
from models.events import ChangeEvent, DeadLetter, RawChange
from models.helpdesk import (
    Agent,
    Customer,
    EnrichedTicket,
    RoutingDecision,
    RowError,
    parse_timestamp,
)
from models.intelligence import ModelMetric, TextIntelligence
from models.kb import KbArticle
from models.language import LanguageDetector
from models.live_metrics import LiveMetrics, LiveOutput
from models.queue_state import QueueOutput, QueueState
from models.routing import AgentRanker, LeastLoadedRanker, RoutingPolicy
from models.sla import SlaEvent, TicketComment
from pipelines.settings import PipelineSettings
from pipelines.state import stateful_flat_map, timed_stateful_flat_map

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


RoutingInput = AgentUpsert | AgentRemoval
QueueInput = EnrichedTicket | TicketComment | AgentUpsert | AgentRemoval

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
    keyed by customer), ``("q:<team>", AgentUpsert | AgentRemoval)`` for agent changes,
    ``("text", (kind, event))`` for KB articles and ticket comments (the shared text
    models) and ``("dead", DeadLetter)`` for rows that cannot be parsed. Other tables are
    counted and ignored.
    """
    try:
        if event.table == "tickets":
            row = event.row or {}
            return [(f"c:{int(row['customer_id'])}", event)]
        if event.table == "customers":
            return [(f"c:{_row_id(event)}", event)]
        if event.table == "agents":
            return list(_agent_items(event))
        if event.table == "kb_articles":
            return [("text", ("kb", event))]
        if event.table == "ticket_events":
            return [("text", ("comment", event))]
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
    """Keyed mapper: customer context in, (enriched ticket, its change) out."""

    def enrich_step(
        ctx: CustomerContext | None, event: ChangeEvent
    ) -> tuple[CustomerContext | None, list[tuple[EnrichedTicket, ChangeEvent] | DeadLetter]]:
        ctx = ctx or CustomerContext()
        out: list[tuple[EnrichedTicket, ChangeEvent] | DeadLetter] = []
        try:
            if event.table == "customers":
                if event.op == "d" or event.after is None:
                    ctx.customer = None
                else:
                    ctx.customer = Customer.from_row(event.after, version=event.version)
            else:
                out.append((enricher.enrich(ctx, event), event))
                FLOW_COUNTERS["tickets_enriched"] += 1
        except (RowError, KeyError, TypeError, ValueError) as exc:
            FLOW_COUNTERS["dead_letters"] += 1
            out.append(dead_letter_from_event(event, "enrich_ticket", f"bad row: {exc}"))
        return (None if ctx.is_empty() else ctx), out

    return enrich_step


def _comment(event: ChangeEvent) -> tuple[TicketComment, str] | None:
    row = event.after or {}
    if event.op not in ("c", "r") or row.get("kind") != "comment":
        return None
    author = str(row.get("author_type") or "system")
    comment = TicketComment(
        ticket_id=int(row["ticket_id"]),
        at=parse_timestamp(row.get("created_at")) or event.committed_at,
        author=author if author in ("agent", "customer") else "system",  # type: ignore[arg-type]
        public=bool(row.get("public", True)),
    )
    return comment, str(row.get("body") or "")


def make_text_step(settings: PipelineSettings, policy: RoutingPolicy):
    """Mapper of the single-key text step: the shared learned models."""

    def text_step(
        models: TextIntelligence | None, item: tuple[str, Any]
    ) -> tuple[TextIntelligence, list[tuple[str, Any]]]:
        models = models or TextIntelligence(
            policy,
            apply_threshold=settings.apply_threshold,
            min_examples=settings.min_examples,
            n_features=settings.text_features,
        )
        kind, payload = item
        out: list[tuple[str, Any]] = []
        try:
            if kind == "ticket":
                et, event = payload
                final, metrics = models.on_ticket(et, event)
                out.append((f"q:{final.queue}", final))
                out += [("metric", m) for m in metrics]
                out += [
                    (f"q:{q}", c) for q, c in models.release_comments(final.ticket_id, final.queue)
                ]
            elif kind == "kb":
                models.on_kb_article(payload)
            elif kind == "comment":
                parsed = _comment(payload)
                if parsed is not None:
                    out += [(f"q:{q}", c) for q, c in models.on_comment(*parsed)]
        except (RowError, KeyError, TypeError, ValueError) as exc:
            FLOW_COUNTERS["dead_letters"] += 1
            event = payload[1] if kind == "ticket" else payload
            out.append(
                ("dead", dead_letter_from_event(event, "classify_ticket", f"bad row: {exc}"))
            )
        return models, out

    return text_step


def make_queue_step(settings: PipelineSettings, policy: RoutingPolicy):
    """Mapper of the per-queue step: routing, SLA clocks and breach risk."""

    def queue_step(
        state: QueueState | None, item: QueueInput
    ) -> tuple[QueueState | None, list[QueueOutput]]:
        now = datetime.now(UTC)
        if isinstance(item, EnrichedTicket):
            state = state or _new_queue(settings, policy, item.queue)
            out = state.on_ticket(item, now=now)
        elif isinstance(item, TicketComment):
            out = state.on_comment(item) if state is not None else []
        elif isinstance(item, AgentUpsert):
            state = state or _new_queue(settings, policy, item.agent.team)
            out = state.on_agent(item.agent, version=item.version, at=item.at)
        else:
            if state is not None:
                state.remove_agent(item.agent_id)
            out = []
        FLOW_COUNTERS["decisions"] += sum(isinstance(x, RoutingDecision) for x in out)
        return state, out

    return queue_step


def _new_queue(settings: PipelineSettings, policy: RoutingPolicy, queue: str) -> QueueState:
    ranker: AgentRanker
    if settings.ranker == "learned":
        ranker = LearnedRanker(AffinityModel(seed=settings.seed))
    elif settings.ranker == "round_robin":
        ranker = RoundRobinRanker()
    else:
        ranker = LeastLoadedRanker()
    return QueueState(queue=queue, policy=policy, ranker=ranker)


def live_metrics_step(
    state: LiveMetrics | None, item: EnrichedTicket | SlaEvent
) -> tuple[LiveMetrics, list[LiveOutput]]:
    """Mapper of the single-key metrics step: minute windows and volume anomalies."""
    state = state or LiveMetrics()
    out = state.on_ticket(item) if isinstance(item, EnrichedTicket) else state.on_sla(item)
    return state, out


def _value(kv: tuple[str, Any]) -> Any:
    return kv[1]


def _is(kind: type) -> Callable[[Any], bool]:
    return lambda x: isinstance(x, kind)


def _is_breach(item: Any) -> bool:
    return isinstance(item, SlaEvent) and item.kind == "breach"


def kb_article(item: tuple[str, tuple[str, Any]]) -> KbArticle | None:
    """The KB article of a text-step input, or ``None`` for other inputs.

    A row that cannot be parsed is left out of search and counted (``kb_unsearchable``);
    the text step, which receives the same change, reports it to the dead letters when the
    suggestions cannot use it either.
    """
    kind, payload = item[1]
    if kind != "kb":
        return None
    try:
        return KbArticle.from_change(payload)
    except RowError as exc:
        FLOW_COUNTERS["kb_unsearchable"] += 1
        log.warning("kb_articles change at version %s not searchable: %s", payload.version, exc)
        return None


def build_flow(
    settings: PipelineSettings,
    *,
    source: Source[RawChange] | InputFactory,
    analytics_sink: Sink[Any],
    decision_sink: Sink[Any],
    warehouse_sink: Sink[Any] | None = None,
    alert_sink: Sink[Any] | None = None,
    search_sink: Sink[Any] | None = None,
) -> Dataflow:
    """Build the triage dataflow for a source of raw CDC records and the two sinks.

    Args:
        settings: what to compute (languages, models, routing policy).
        source: a Bytewax source of :class:`RawChange` (the embedded pgoutput reader), or
            an :data:`InputFactory` that adds its own input steps (the Kafka path).
        analytics_sink: receives enriched tickets, routing decisions, SLA events, breach
            risks, model metrics and dead letters.
        decision_sink: receives routing decisions, SLA events and breach risks for the
            live store (Redis).
        warehouse_sink: optional; receives enriched tickets, routing decisions, SLA
            events and model metrics for the BI warehouse (Parquet).
        alert_sink: optional; receives anomaly alerts and SLA breach events (e.g. the
            Kafka ``triage.alerts`` topic).
        search_sink: optional; receives enriched tickets (final category, intent and
            queue) and :class:`KbArticle` changes for ticket and KB search.
    """
    policy = settings.routing_policy()
    detector = LanguageDetector(settings.languages)
    detector.detect("warm up the language model before the first ticket", fallback="en")
    enricher = TicketEnricher(policy, detector)

    flow = Dataflow(settings.flow_id)
    source_errors: Stream[DeadLetter] | None = None
    if isinstance(source, Source):
        raw = op.input("read_cdc", flow, source)
    else:
        raw, source_errors = source(flow)
    decoded = op.filter_map("decode_cdc", raw, decode)
    by_kind = op.branch("split_decode_errors", decoded, _is(ChangeEvent))
    events = cast(Stream[ChangeEvent], by_kind.trues)

    dispatched = op.flat_map("dispatch_entities", events, dispatch_entities)
    by_owner = op.branch("split_dispatch_errors", dispatched, lambda kv: kv[0] != "dead")
    to_customers = op.branch("split_customers", by_owner.trues, lambda kv: kv[0].startswith("c:"))
    to_text_or_queue = op.branch(
        "split_text_inputs", to_customers.falses, lambda kv: kv[0] == "text"
    )

    enriched_kv = stateful_flat_map("enrich_ticket", to_customers.trues, make_enrich_step(enricher))
    enriched_any = op.map("drop_customer_key", enriched_kv, _value)
    enriched_split = op.branch("split_enrich_errors", enriched_any, lambda x: isinstance(x, tuple))
    tickets_to_text = op.map(
        "key_for_text", enriched_split.trues, lambda p: ("text", ("ticket", p))
    )

    text_in = op.merge("merge_text_inputs", tickets_to_text, to_text_or_queue.trues)
    text_out = op.map(
        "drop_text_key",
        stateful_flat_map("classify_ticket", text_in, make_text_step(settings, policy)),
        _value,
    )
    to_queue = op.branch("split_queue_items", text_out, lambda kv: kv[0].startswith("q:"))
    to_metrics = op.branch("split_metrics", to_queue.falses, lambda kv: kv[0] == "metric")
    final_tickets = op.filter_map(
        "final_tickets",
        to_queue.trues,
        lambda kv: kv[1] if isinstance(kv[1], EnrichedTicket) else None,
    )

    queue_in = op.merge("merge_queue_inputs", to_queue.trues, to_text_or_queue.falses)
    queue_out = op.map(
        "drop_queue_key",
        timed_stateful_flat_map("route_ticket", queue_in, make_queue_step(settings, policy)),
        _value,
    )

    metrics_in = op.merge(
        "merge_metric_inputs",
        final_tickets,
        op.filter("select_sla_events", queue_out, lambda x: isinstance(x, SlaEvent)),
    )
    live_metrics = op.map(
        "drop_metrics_key",
        timed_stateful_flat_map(
            "compute_live_metrics",
            op.key_on("key_metrics", metrics_in, lambda _: "metrics"),
            live_metrics_step,
        ),
        _value,
    )

    dead = op.merge(
        "merge_dead_letters",
        *([source_errors] if source_errors is not None else []),
        by_kind.falses,
        op.map("drop_dead_key", by_owner.falses, _value),
        enriched_split.falses,
        op.map("drop_text_dead_key", to_metrics.falses, _value),
    )
    analytics = op.merge(
        "merge_analytics",
        final_tickets,
        queue_out,
        live_metrics,
        op.map("drop_metric_key", to_metrics.trues, _value),
        dead,
    )
    anomaly_alerts = op.filter("select_alerts", live_metrics, _is(AnomalyAlert))
    # The live store first: agent tooling waits on it, analysts do not.
    op.output(
        "write_live",
        op.merge(
            "merge_live",
            op.filter("select_live", queue_out, lambda x: not isinstance(x, WorkloadScore)),
            anomaly_alerts,
        ),
        decision_sink,
    )
    if alert_sink is not None:
        breaches = op.filter("select_breaches", queue_out, _is_breach)
        op.output("publish_alerts", op.merge("merge_alerts", anomaly_alerts, breaches), alert_sink)
    op.output("write_analytics", analytics, analytics_sink)
    if search_sink is not None:
        articles = op.filter_map("select_kb_articles", to_text_or_queue.trues, kb_article)
        op.output("write_search", op.merge("merge_search", final_tickets, articles), search_sink)
    if warehouse_sink is not None:
        for_warehouse = op.filter(
            "select_warehouse_items",
            analytics,
            lambda x: isinstance(x, EnrichedTicket | RoutingDecision | SlaEvent | ModelMetric),
        )
        # Parquet wants few large files, the stream delivers small batches: buffer up to
        # ``warehouse_flush`` (the buffer is keyed state, so recovery keeps it).
        buffered = op.collect(
            "buffer_warehouse",
            op.key_on("key_warehouse", for_warehouse, lambda _: "warehouse"),
            timeout=settings.warehouse_flush,
            max_size=settings.warehouse_batch,
        )
        op.output(
            "write_warehouse",
            op.flat_map("unbuffer_warehouse", buffered, _value),
            warehouse_sink,
        )
    return flow
