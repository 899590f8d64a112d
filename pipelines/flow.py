"""The triage dataflow: decode CDC → enrich → classify → route → metrics → stores.

Wiring only: every rule lives in ``models/``; sources and sinks are passed in (or built
from settings by the caller), so the same flow runs on the embedded reader and on Kafka,
in one worker or in a cluster of processes.

Step graph (each keyed step names its key; every key spreads over workers except where
noted)::

    read_cdc → decode_cdc → split_tables
      customers, tickets → enrich_ticket    (by customer: profile, language, sentiment,
                                             keyword category, rule priority)
                         → find_duplicates  (by organisation, else customer: MinHash)
      ticket_events      ─┐
                         → classify_ticket  (by ticket: learned category/intent/priority,
                                             KB suggestions, draft, sticky queue; predicts
                                             with the newest published TextModels)
      kb_articles, labels, KB feedback
                         → learn_text       (one key: the learning copy of TextModels;
                                             publishes versions to the model store)
      agents             ─┐
                         → route_ticket     (by queue: SLA clocks, routing, breach risk;
                                             journaled snapshots, text left out)
                         → compute_live_metrics (one key, or by dimension family:
                                             minute windows, anomalies)
    → write_live (Redis), write_analytics (PostgreSQL), write_search, write_warehouse
      (buffered by ticket shard), publish_alerts; errors of every step → dead letters

Kept as one module: each step function sits beside the sub-flow that keys and
wires it, and the step ids are the recovery state's names, so the graph and its steps are
read and changed together.
"""

from __future__ import annotations

import json
import logging
import pickle
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import bytewax.operators as op
from bytewax.dataflow import Dataflow, Stream
from bytewax.inputs import Source
from bytewax.operators import StatefulLogic
from bytewax.outputs import Sink

from connectors.debezium import DecodeError, SkippedRecord, decode_record
from models.affinity import (
    AffinityModel,
    ExpectedTimeRanker,
    HandlingTimeModel,
    LearnedRanker,
    RoundRobinRanker,
)
from models.anomaly import AnomalyAlert
from models.budget import TimeBudget
from models.burnout import WorkloadScore
from models.calendar import warm_region_calendars
from models.duplicates import DuplicateDetector
from models.enrichment import CustomerContext, CustomerWaitExpired, TicketEnricher
from models.events import ChangeEvent, DeadLetter, RawChange, SourcePosition
from models.helpdesk import (
    Agent,
    Customer,
    EnrichedTicket,
    RoutingDecision,
    RowError,
    WorkOutcome,
    parse_id,
    parse_timestamp,
)
from models.intelligence import (
    KbFeedback,
    LabelExample,
    LocalModelStore,
    ModelMetric,
    ModelStore,
    TextModels,
    TicketText,
    classify_ticket,
    find_duplicates,
    hold_comment,
)
from models.kb import KbArticle
from models.language import LanguageDetector
from models.live_metrics import ALL_FAMILY, FAMILIES, LiveMetrics, LiveOutput
from models.queue_state import QueueOutput, QueueState
from models.routing import AgentRanker, LeastLoadedRanker, RoutingPolicy
from models.sla import HOLIDAY_YEARS, SlaEvent, TicketComment
from models.telemetry import StageRecorder, report_degraded
from models.telemetry import enabled as telemetry_enabled
from pipelines.settings import PipelineSettings
from pipelines.state import (
    AccountedState,
    buffer,
    journaled_flat_map,
    replaying,
    stateful_flat_map,
    timed_stateful_flat_map,
)

log = logging.getLogger(__name__)

KNOWN_TABLES = frozenset(
    {"customers", "agents", "tickets", "ticket_events", "kb_articles", "work_outcomes"}
)

# Process-local counters, reported by the CLI and benchmark (events seen per outcome).
FLOW_COUNTERS: Counter[str] = Counter()

T = TypeVar("T")


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


@dataclass(frozen=True)
class CommentIn:
    """A ticket comment on its way to its ticket's text state (body kept for KB links).

    It travels the same keyed path as its ticket's changes (ticket → customer →
    organisation → ticket), so it reaches the ticket's state in commit order; ``scope`` is
    the duplicate scope it passes through, set by the enrichment step.
    """

    comment: TicketComment
    body: str
    event: ChangeEvent
    scope: str = ""


@dataclass(frozen=True)
class OutcomeIn:
    """A ``work_outcomes`` row on its way to its queue, with the change's version and
    commit time (the router's clock)."""

    outcome: WorkOutcome
    version: int
    at: datetime


RoutingInput = AgentUpsert | AgentRemoval
QueueInput = EnrichedTicket | TicketComment | AgentUpsert | AgentRemoval | OutcomeIn
TicketChange = tuple[EnrichedTicket, ChangeEvent]
LearnInput = LabelExample | KbFeedback | ChangeEvent

InputFactory = Callable[[Dataflow], tuple[Stream[RawChange], Stream[DeadLetter]]]
"""Adds an input to a flow and returns its records and its own errors (e.g. Kafka's)."""


# -- dead letters ------------------------------------------------------------------------


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


def _origin(item: Any) -> ChangeEvent | None:
    """The change event an in-flow item came from, when it carries one."""
    if isinstance(item, ChangeEvent):
        return item
    if isinstance(item, CommentIn):
        return item.event
    if isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], ChangeEvent):
        return item[1]
    return None


def dead_letter_from_item(item: Any, stage: str, reason: str) -> DeadLetter:
    """A dead letter for whatever a step failed on, with its change event when known."""
    FLOW_COUNTERS["dead_letters"] += 1
    event = _origin(item)
    if event is not None:
        return dead_letter_from_event(event, stage, reason)
    if isinstance(item, RawChange):
        return dead_letter_from_raw(item, stage, reason)
    version = getattr(item, "version", None)
    return DeadLetter(
        stage=stage,
        reason=reason,
        topic=f"internal:{type(item).__name__}",
        key=str(getattr(item, "ticket_id", "")) or None,
        payload=repr(item)[:20_000],
        position=SourcePosition(lsn=version if isinstance(version, int) else None),
        failed_at=datetime.now(UTC),
    )


_DATA_ERRORS = (RowError, KeyError, TypeError, ValueError, OverflowError, ArithmeticError)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, RowError | KeyError | TypeError | ValueError):
        return f"bad row: {exc}"
    return f"unexpected {type(exc).__name__}: {exc}"


def guarded_state(
    stage: str, mapper: Callable[..., tuple[T | None, Iterable[Any]]]
) -> Callable[..., tuple[T | None, list[Any]]]:
    """Make a keyed mapper total: an exception becomes a dead letter, the state is kept.

    A data error (a malformed row) is expected and logged at INFO; anything else is a bug
    met on real data, logged with its traceback, and still does not stop the flow: the
    event is kept in the dead letters for a replay after the fix. Arguments after the
    item (a journaled step's time) are passed on.
    """

    def total(state: T | None, item: Any, *args: Any) -> tuple[T | None, list[Any]]:
        try:
            new, out = mapper(state, item, *args)
            return new, list(out)
        except Exception as exc:
            if isinstance(exc, _DATA_ERRORS):
                log.info("%s: dead letter: %s", stage, exc)
            else:
                log.exception("%s failed on %s", stage, type(item).__name__)
            return state, [dead_letter_from_item(item, stage, _reason(exc))]

    return total


def guarded(stage: str, fn: Callable[[Any], Iterable[Any]]) -> Callable[[Any], list[Any]]:
    """Make a stateless flat-mapper total (see :func:`guarded_state`)."""

    def total(item: Any) -> list[Any]:
        try:
            return list(fn(item))
        except Exception as exc:
            if not isinstance(exc, _DATA_ERRORS):
                log.exception("%s failed on %s", stage, type(item).__name__)
            return [dead_letter_from_item(item, stage, _reason(exc))]

    return total


# -- steps -------------------------------------------------------------------------------


def decode(raw: RawChange) -> ChangeEvent | DeadLetter | None:
    """Decode one record; malformed ones become dead letters; tombstones, messages,
    heartbeats and truncates are counted (``triage_flow_events_total``) and dropped."""
    try:
        event = decode_record(raw)
    except DecodeError as exc:
        FLOW_COUNTERS["dead_letters"] += 1
        return dead_letter_from_raw(raw, "decode_cdc", str(exc))
    except Exception as exc:  # a decoder bug must not stop the flow: keep the record
        log.exception("unexpected decoder failure on %s", raw.topic)
        FLOW_COUNTERS["dead_letters"] += 1
        return dead_letter_from_raw(raw, "decode_cdc", f"unexpected {type(exc).__name__}: {exc}")
    if isinstance(event, SkippedRecord):
        # Tombstones, logical decoding messages, heartbeats, transaction metadata.
        FLOW_COUNTERS["tombstones" if event.kind == "tombstone" else f"skipped:{event.kind}"] += 1
        return None
    if event.op == "t":
        # A TRUNCATE has no rows. The stores are a history of the helpdesk and keep it;
        # live routing state is changed by row changes only (see README, Operate).
        FLOW_COUNTERS[f"truncate:{event.table}"] += 1
        log.warning(
            "source table %s was truncated (commit %s); stores keep their rows",
            event.table,
            event.version,
        )
        return None
    FLOW_COUNTERS["events"] += 1
    if event.table not in KNOWN_TABLES:
        FLOW_COUNTERS[f"unknown_table:{event.table}"] += 1
    return event


def _row_id(event: ChangeEvent) -> int:
    """The row's ``id`` from the key, else from the row image (a RowError when absent)."""
    return parse_id(event.key.get("id", (event.row or {}).get("id")), "id")


UNOWNED = "unowned"
"""Customer key of comments whose ticket is not (or no longer) known: they pass through."""


def customer_changes(event: ChangeEvent) -> list[tuple[str, ChangeEvent]]:
    """Customer changes keyed by customer id (enrichment state); others dropped."""
    if event.table == "customers":
        return [(str(_row_id(event)), event)]
    return []


def ticket_items(event: ChangeEvent) -> list[tuple[str, ChangeEvent | CommentIn]]:
    """Ticket changes and new comments keyed by ticket, in one stream (one order)."""
    if event.table == "tickets":
        return [(str(_row_id(event)), event)]
    return list(ticket_comments(event))


def _version_of(item: ChangeEvent | CommentIn) -> int:
    return item.event.version if isinstance(item, CommentIn) else item.version


@dataclass
class TicketOwner:
    """Per ticket: its customer, and (with a reorder window) its items waiting for order.

    With Kafka a ticket's changes and comments come from two topics read independently,
    so they can arrive out of commit order. Within ``window`` of its arrival an item waits
    here and leaves in source-version (commit) order; one that arrives after a later item
    already left goes at once. Embedded CDC delivers one ordered stream: no window.
    """

    window: timedelta
    customer: int | None = None
    held: list[tuple[datetime, int, ChangeEvent | CommentIn]] = field(default_factory=list)
    emitted: int = -1

    def route(self, item: ChangeEvent | CommentIn) -> list[tuple[str, ChangeEvent | CommentIn]]:
        """Send an item to its customer's key; a ticket change updates the customer."""
        self.emitted = max(self.emitted, _version_of(item))
        if isinstance(item, CommentIn):
            return [(UNOWNED if self.customer is None else str(self.customer), item)]
        row = item.row or {}
        owner = parse_id(row.get("customer_id"), "customer_id")
        gone = item.op == "d" or row.get("status") == "closed"
        self.customer = None if gone else owner
        return [(str(owner), item)]

    def _release(self, until: datetime | None) -> list[tuple[str, ChangeEvent | CommentIn]]:
        due = [h for h in self.held if until is None or h[0] <= until]
        if not due:
            return []
        # Everything held that was committed before the newest due item goes with it.
        newest = max(h[1] for h in due)
        out = sorted((h for h in self.held if h[1] <= newest), key=lambda h: h[1])
        self.held = [h for h in self.held if h[1] > newest]
        return [kv for _, _, item in out for kv in self.route(item)]

    def tick(self, now: datetime) -> list[tuple[str, ChangeEvent | CommentIn]]:
        return self._release(now)

    def next_wakeup(self) -> datetime | None:
        return min(h[0] for h in self.held) if self.held else None

    def is_idle(self) -> bool:
        return self.customer is None and not self.held

    def finish(self) -> list[tuple[str, ChangeEvent | CommentIn]]:
        return self._release(None)


def make_owner_step(window: timedelta):
    """Keyed mapper per ticket: route its items to its customer, in commit order."""

    def owner_step(
        state: TicketOwner | None, item: ChangeEvent | CommentIn
    ) -> tuple[TicketOwner | None, list[tuple[str, ChangeEvent | CommentIn]]]:
        state = state or TicketOwner(window)
        if window <= timedelta(0) or _version_of(item) <= state.emitted:
            out = state.route(item)
        else:
            state.held.append((datetime.now(UTC) + window, _version_of(item), item))
            out = []
        return (None if state.is_idle() else state), out

    return owner_step


def agent_changes(event: ChangeEvent) -> list[tuple[str, RoutingInput]]:
    """Agent changes keyed by the queue (team) they join or leave."""
    if event.table != "agents":
        return []
    before_team = (event.before or {}).get("team")
    if event.op == "d" or event.after is None:
        agent_id = _row_id(event)
        return [(str(before_team), AgentRemoval(agent_id, event.version))] if before_team else []
    agent = Agent.from_row(event.after, version=event.version)
    out: list[tuple[str, RoutingInput]] = []
    if before_team and before_team != agent.team:
        out.append((str(before_team), AgentRemoval(agent.id, event.version)))
    out.append((agent.team, AgentUpsert(agent, event.version, event.committed_at)))
    return out


def work_outcomes(event: ChangeEvent) -> list[tuple[str, OutcomeIn]]:
    """New work outcomes keyed by their queue; edits and deletes of outcome rows change
    nothing already learned."""
    if event.table != "work_outcomes" or event.op not in ("c", "r") or event.after is None:
        return []
    outcome = WorkOutcome.from_row(event.after)
    return [(outcome.queue, OutcomeIn(outcome, event.version, event.committed_at))]


def ticket_comments(event: ChangeEvent) -> list[tuple[str, CommentIn]]:
    """New comments (``ticket_events`` of kind comment) keyed by their ticket."""
    row = event.after or {}
    if event.table != "ticket_events" or event.op not in ("c", "r"):
        return []
    if row.get("kind") != "comment":
        return []
    author = str(row.get("author_type") or "system")
    comment = TicketComment(
        ticket_id=int(row["ticket_id"]),
        at=parse_timestamp(row.get("created_at")) or event.committed_at,
        author=author if author in ("agent", "customer") else "system",  # type: ignore[arg-type]
        public=bool(row.get("public", True)),
    )
    return [(str(comment.ticket_id), CommentIn(comment, str(row.get("body") or ""), event))]


def _budget(limit: timedelta) -> TimeBudget | None:
    return TimeBudget(limit.total_seconds()) if limit > timedelta(0) else None


def _count_degraded(stage: str, budget: TimeBudget | None) -> None:
    if budget is not None and budget.skipped:
        report_degraded(stage, [note.split(":", 1)[0] for note in budget.skipped])


def make_enrich_step(enricher: TicketEnricher, wait: timedelta, budget: timedelta = timedelta(0)):
    """Keyed mapper: customer context in, (enriched ticket, its change) out.

    A ticket whose customer has not arrived yet waits for it (see :class:`CustomerContext`).
    Each change gets ``budget`` of time (see :class:`models.budget.TimeBudget`).
    """

    def enrich_one(ctx: CustomerContext, event: ChangeEvent) -> TicketChange | DeadLetter:
        try:
            FLOW_COUNTERS["tickets_enriched"] += 1
            allowance = _budget(budget)
            enriched = enricher.enrich(ctx, event, allowance)
            _count_degraded("enrich_ticket", allowance)
            return (enriched, event)
        except _DATA_ERRORS as exc:  # one bad held ticket must not block the others
            return dead_letter_from_item(event, "enrich_ticket", _reason(exc))

    def scoped(ctx: CustomerContext, comment: CommentIn) -> CommentIn:
        if ctx.customer is not None and ctx.customer.organization:
            return replace(comment, scope=f"org:{ctx.customer.organization}")
        return replace(comment, scope=f"customer:{ctx.customer.id}" if ctx.customer else UNOWNED)

    def passed(ctx: CustomerContext, item: ChangeEvent | CommentIn) -> Any:
        return scoped(ctx, item) if isinstance(item, CommentIn) else enrich_one(ctx, item)

    def enrich_step(
        ctx: CustomerContext | None, event: ChangeEvent | CommentIn
    ) -> tuple[CustomerContext | None, list[Any]]:
        ctx = ctx or CustomerContext(wait=wait)
        out: list[Any] = []
        if isinstance(event, CommentIn):
            # Behind its ticket's changes when they wait for the customer; else through.
            out += ctx.hold(event, datetime.now(UTC)) if ctx.waiting else [scoped(ctx, event)]
        elif event.table == "customers":
            if event.op == "d" or event.after is None:
                ctx.customer, ctx.deleted = None, True
            else:
                ctx.customer, ctx.deleted = (
                    Customer.from_row(event.after, version=event.version),
                    False,
                )
                out += [passed(ctx, held) for held in ctx.release()]  # type: ignore[arg-type]
        elif ctx.must_wait():
            FLOW_COUNTERS["tickets_waiting_for_customer"] += 1
            out += ctx.hold(event, datetime.now(UTC))
        else:
            out.append(enrich_one(ctx, event))
        return (None if ctx.is_empty() else ctx), out

    return enrich_step


def expired_wait(item: CustomerWaitExpired) -> DeadLetter:
    return dead_letter_from_item(item.item, "enrich_ticket", item.reason)


def duplicate_scope(item: TicketChange | CommentIn) -> str:
    """Duplicates are searched among an organisation's tickets, else a customer's."""
    if isinstance(item, CommentIn):
        return item.scope or UNOWNED
    et = item[0]
    return f"org:{et.organization}" if et.organization else f"customer:{et.ticket.customer_id}"


def duplicates_step(
    detector: DuplicateDetector | None, item: TicketChange | CommentIn
) -> tuple[DuplicateDetector | None, list[TicketChange | CommentIn]]:
    if isinstance(item, CommentIn):
        return detector, [item]
    et, event = item
    detector, et = find_duplicates(detector, et, event)
    return detector, [(et, event)]


def ticket_key(item: TicketChange | CommentIn) -> str:
    if isinstance(item, CommentIn):
        return str(item.comment.ticket_id)
    return str(item[0].ticket.id)


class ModelReplica:
    """This process's view of the shared :class:`TextModels`: the newest published copy.

    The store is asked at most every ``refresh`` seconds; until anything is published the
    replica predicts with fresh (untrained) models built by ``factory``.
    """

    def __init__(
        self, store: ModelStore, factory: Callable[[], TextModels], refresh: float
    ) -> None:
        self.store = store
        self.factory = factory
        self.refresh = refresh
        self.models: TextModels | None = None
        self._published = False
        self._checked = float("-inf")

    def current(self) -> TextModels:
        now = time.monotonic()
        if self.models is None or now - self._checked >= self.refresh:
            self._checked = now
            # -1 until a published copy is held: any published one replaces the fresh models.
            have = self.models.version if self.models is not None and self._published else -1
            newer = self.store.latest(have)
            if newer is not None:
                self.models, self._published = newer, True
            elif self.models is None:
                self.models = self.factory()
        return self.models


def make_classify_step(
    policy: RoutingPolicy,
    replica: ModelReplica,
    hold: timedelta,
    budget: timedelta = timedelta(0),
):
    """Keyed mapper per ticket: predictions with the shared models, labels for learning.

    Each change gets ``budget`` of time (see :class:`models.budget.TimeBudget`).
    """

    def classify_step(
        state: TicketText | None, item: TicketChange | CommentIn
    ) -> tuple[TicketText | None, list[Any]]:
        if isinstance(item, CommentIn):
            state, out = hold_comment(
                state,
                item.comment,
                item.body,
                version=item.event.version,
                now=datetime.now(UTC),
                hold=hold,
            )
            return (None if state.is_empty() else state), out
        et, event = item
        allowance = _budget(budget)
        state, done = classify_ticket(state, replica.current(), policy, et, event, allowance)
        _count_degraded("classify_ticket", allowance)
        # Tickets and comments leave as one stream of (queue, item): a queue must see a
        # ticket's changes and comments in the order they were decided here.
        out = [*done.earlier, (done.ticket.queue, done.ticket)]
        if done.example is not None:
            out.append(done.example)
        out += [(done.ticket.queue, c) for c in done.comments]
        return state, out

    return classify_step


def learn(models: TextModels, item: LearnInput) -> list[ModelMetric]:
    """The learning copy takes a human label, an agent's KB feedback or an article change."""
    if isinstance(item, LabelExample):
        return models.learn(item)
    if isinstance(item, KbFeedback):
        models.record_feedback(item)
        return []
    models.on_kb_article(item)
    return []


class _LearnLogic(AccountedState, StatefulLogic[LearnInput, Any, bytes]):
    """The single learning copy of the text models; publishes versions as it learns.

    With a publishing interval of zero (one process: the store shares the object itself)
    every change is visible at once. Otherwise lessons (labels, feedback: frequent) are
    published at most once per interval, and once more when the interval after the last
    one ends. A change of the KB (rare, and without it no ticket gets suggestions) is
    published ``kb_delay`` after it arrives (a burst of articles is published together),
    and at the latest at the end of its epoch, before the epoch completes: tickets that
    other processes classify more than ``kb_delay`` plus their refresh after the article
    arrived here can suggest it. Waiting for the epoch alone (10 s, then the default) left every
    ticket of the first seconds after a KB import without suggestions in a cluster.
    """

    def __init__(
        self,
        models: TextModels,
        store: ModelStore,
        interval: timedelta,
        kb_delay: timedelta = timedelta(0),
    ) -> None:
        self.models = models
        self.store = store
        self.interval = interval
        self.kb_delay = kb_delay
        self.due: datetime | None = None
        self.kb_changed = False
        self.total = guarded_state("learn_text", self._apply)
        store.publish(models)

    def _apply(self, models: TextModels | None, item: LearnInput) -> tuple[TextModels, list[Any]]:
        assert models is not None
        return models, learn(models, item)

    def on_item(self, value: LearnInput) -> tuple[Iterable[Any], bool]:
        _, out = self.total(self.models, value)
        if not self.interval:
            self.store.publish(self.models)
            return out, StatefulLogic.RETAIN
        wait = self.interval
        if isinstance(value, ChangeEvent):
            self.kb_changed = True
            wait = self.kb_delay
        due = datetime.now(UTC) + wait
        if self.due is None or due < self.due:
            self.due = due
        return out, StatefulLogic.RETAIN

    def _publish(self) -> None:
        self.due = None
        self.kb_changed = False
        self.store.publish(self.models)

    def on_notify(self) -> tuple[Iterable[Any], bool]:
        self._publish()
        return [], StatefulLogic.RETAIN

    def on_eof(self) -> tuple[Iterable[Any], bool]:
        return self.on_notify()

    def notify_at(self) -> datetime | None:
        return self.due

    def snapshot(self) -> bytes:
        if self.kb_changed:
            self._publish()
        started = time.perf_counter()
        data = zlib.compress(pickle.dumps(self.models, protocol=pickle.HIGHEST_PROTOCOL), 1)
        self._taken("TextModels (compressed)", len(data), started)
        return data


def make_queue_step(settings: PipelineSettings, policy: RoutingPolicy):
    """Mapper of the per-queue step: routing, SLA clocks and breach risk.

    Journaled (see :func:`pipelines.state.journaled_flat_map`): the state changes only
    through its inputs and the time it is given, so a resume replays them exactly.
    """

    def queue_step(
        state: QueueState | None, item: QueueInput, now: datetime
    ) -> tuple[QueueState | None, list[QueueOutput]]:
        if isinstance(item, EnrichedTicket):
            state = state or _new_queue(settings, policy, settings.pool_of(item.queue))
            out = state.on_ticket(item, now=now)
        elif isinstance(item, TicketComment):
            out = state.on_comment(item) if state is not None else []
        elif isinstance(item, AgentUpsert):
            state = state or _new_queue(settings, policy, settings.pool_of(item.agent.team))
            out = state.on_agent(item.agent, version=item.version, at=item.at)
        elif isinstance(item, OutcomeIn):
            state = state or _new_queue(settings, policy, settings.pool_of(item.outcome.queue))
            out = state.on_outcome(item.outcome, version=item.version, at=item.at)
        else:
            if state is not None:
                state.remove_agent(item.agent_id)
            out = []
        if not replaying():
            FLOW_COUNTERS["decisions"] += sum(isinstance(x, RoutingDecision) for x in out)
        return state, out

    return queue_step


def _new_queue(settings: PipelineSettings, policy: RoutingPolicy, queue: str) -> QueueState:
    ranker: AgentRanker
    if settings.ranker == "learned":
        ranker = LearnedRanker(AffinityModel(seed=settings.seed))
    elif settings.ranker == "expected_time":
        ranker = ExpectedTimeRanker(HandlingTimeModel(seed=settings.seed))
    elif settings.ranker == "round_robin":
        ranker = RoundRobinRanker()
    else:
        ranker = LeastLoadedRanker()
    return QueueState(queue=queue, policy=policy, ranker=ranker)


METRIC_KEYS = {
    family: "metrics" if family == ALL_FAMILY else f"metrics:{family}" for family in FAMILIES
}
"""The metrics step's key per dimension family (``metrics``: the single key of earlier
versions, whose snapshot resumes as the ``all`` family)."""


MetricInput = tuple[str | None, EnrichedTicket | SlaEvent]


def metric_families(item: EnrichedTicket | SlaEvent) -> list[tuple[str, MetricInput]]:
    """Every ticket change and SLA event goes to each dimension family's key."""
    return [(key, (family, item)) for family, key in METRIC_KEYS.items()]


def metrics_key(item: EnrichedTicket | SlaEvent) -> list[tuple[str, MetricInput]]:
    """One key for every family (``family`` None)."""
    return [(METRIC_KEYS[ALL_FAMILY], (None, item))]


def live_metrics_step(
    state: LiveMetrics | None, value: MetricInput
) -> tuple[LiveMetrics, list[LiveOutput]]:
    """Mapper of the metrics step: minute windows and anomalies of one dimension family, or
    of all of them (``family`` None)."""
    family, item = value
    if state is None:
        state = LiveMetrics(family=family)
    elif family is not None and state.family != family:
        state.narrow(family)  # the single key's state, now the ``all`` family's
    out = state.on_ticket(item) if isinstance(item, EnrichedTicket) else state.on_sla(item)
    return state, out


def kb_article(event: ChangeEvent) -> KbArticle | None:
    """The KB article of a ``kb_articles`` change for search, or ``None``.

    A row that cannot be parsed is left out of search and counted (``kb_unsearchable``);
    the learner, which receives the same change, reports it to the dead letters when the
    suggestions cannot use it either.
    """
    if event.table != "kb_articles":
        return None
    try:
        return KbArticle.from_change(event)
    except RowError as exc:
        FLOW_COUNTERS["kb_unsearchable"] += 1
        log.warning("kb_articles change at version %s not searchable: %s", event.version, exc)
        return None


def warehouse_shard(shards: int) -> Callable[[Any], str]:
    """Warehouse rows buffered per ticket shard, so every worker writes its own files."""

    def key(item: Any) -> str:
        ticket_id = getattr(item, "ticket_id", None)
        if ticket_id is None and isinstance(item, EnrichedTicket):
            ticket_id = item.ticket.id
        return f"w{int(ticket_id or 0) % shards}"

    return key


def _is_breach(item: Any) -> bool:
    return isinstance(item, SlaEvent) and item.kind == "breach"


# -- wiring ------------------------------------------------------------------------------


class _Split:
    """A stream split by item type: ``of(kind)`` is the stream of that type, ``rest`` what
    no ``of`` took so far."""

    def __init__(self, step_id: str, up: Stream[Any]) -> None:
        self.step_id = step_id
        self.rest: Stream[Any] = up

    def of(self, name: str, kind: type | tuple[type, ...]) -> Stream[Any]:
        parts = op.branch(f"{self.step_id}_{name}", self.rest, lambda x: isinstance(x, kind))
        self.rest = parts.falses
        return parts.trues


def _value(kv: tuple[str, T]) -> T:
    return kv[1]


def _keyed_flat_map(
    step_id: str,
    up: Stream[tuple[str, Any]],
    mapper: Callable[..., tuple[Any, Iterable[Any]]],
    *,
    timed: bool = False,
    journaled: bool = False,
) -> Stream[Any]:
    total = guarded_state(step_id, mapper)
    if journaled:
        keyed = journaled_flat_map(step_id, up, total, timed=timed)
    else:
        keyed = (timed_stateful_flat_map if timed else stateful_flat_map)(step_id, up, total)
    return op.map(f"{step_id}_values", keyed, _value)


@dataclass
class _Wiring:
    """What every sub-flow shares: the dead letters it adds to, and stage observation."""

    dead: list[Stream[DeadLetter]] = field(default_factory=list)

    def errors(self, split: _Split) -> None:
        """The split's dead letters join the flow's error stream."""
        self.dead.append(split.of("errors", DeadLetter))

    def observe(self, stage: str, stream: Stream[Any]) -> None:
        """Per-stage latency (source commit → leaving the stage) when metrics are served."""
        if telemetry_enabled():
            recorder = StageRecorder(stage)
            op.inspect(f"observe_{stage}", stream, lambda _step, x: recorder(x))


@dataclass
class _Tables:
    """Change events split by what they feed."""

    customers: Stream[tuple[str, ChangeEvent]]
    agents: Stream[tuple[str, RoutingInput]]
    outcomes: Stream[tuple[str, OutcomeIn]]
    ticket_items: Stream[Any]
    kb_changes: Stream[ChangeEvent]


def _cdc_in(
    flow: Dataflow, source: Source[RawChange] | InputFactory, w: _Wiring
) -> Stream[ChangeEvent]:
    """Raw CDC records → change events (undecodable records and source errors: dead)."""
    if isinstance(source, Source):
        raw = op.input("read_cdc", flow, source)
    else:
        raw, source_errors = source(flow)
        w.dead.append(source_errors)
    decoded = _Split("decode", op.filter_map("decode_cdc", raw, decode))
    w.errors(decoded)
    w.observe("decode", decoded.rest)
    return decoded.rest


def _by_table(events: Stream[ChangeEvent], settings: PipelineSettings, w: _Wiring) -> _Tables:
    """Customers, agents, ticket items (ordered per ticket) and KB articles."""

    def select(step_id: str, fn: Callable[[ChangeEvent], list[Any]]) -> Stream[Any]:
        split = _Split(step_id, op.flat_map(step_id, events, guarded(step_id, fn)))
        w.errors(split)
        return split.rest

    customers = select("select_customer_changes", customer_changes)
    agents = select("select_agent_changes", agent_changes)
    outcomes = select("select_work_outcomes", work_outcomes)
    # A ticket's changes and comments travel one keyed path (ticket → customer →
    # organisation → ticket), so its text state and its queue see them in commit order.
    owned = _Split(
        "own",
        _keyed_flat_map(
            "own_ticket_items",
            select("select_ticket_items", ticket_items),
            make_owner_step(settings.reorder_window or timedelta(0)),
            timed=True,
        ),
    )
    w.errors(owned)
    kb_changes = op.filter("select_kb_changes", events, lambda e: e.table == "kb_articles")
    return _Tables(customers, agents, outcomes, owned.rest, kb_changes)


def _enrich(
    tables: _Tables, enricher: TicketEnricher, settings: PipelineSettings, w: _Wiring
) -> Stream[Any]:
    """Per customer (tier, organisation, language, sentiment, SLA policy), then duplicates
    per organisation; tickets whose customer never arrived become dead letters."""
    enriched = _Split(
        "enrich",
        _keyed_flat_map(
            "enrich_ticket",
            op.merge("merge_enrich_inputs", tables.customers, tables.ticket_items),
            make_enrich_step(enricher, settings.customer_wait, settings.event_budget),
            timed=True,
        ),
    )
    w.errors(enriched)
    w.dead.append(
        op.map("expired_waits", enriched.of("expired", CustomerWaitExpired), expired_wait)
    )
    w.observe(
        "enrich",
        op.filter_map(
            "select_enriched", enriched.rest, lambda x: x[0] if isinstance(x, tuple) else None
        ),
    )
    deduped = _Split(
        "dedupe",
        _keyed_flat_map(
            "find_duplicates",
            op.key_on("key_duplicate_scope", enriched.rest, duplicate_scope),
            duplicates_step,
        ),
    )
    w.errors(deduped)
    return deduped.rest


@dataclass
class _Classified:
    """Classified tickets and comments keyed by queue, the final tickets, and the lessons
    (labels, KB feedback) for the learning copy of the text models."""

    to_queues: Stream[tuple[str, EnrichedTicket | TicketComment]]
    final_tickets: Stream[EnrichedTicket]
    lessons: Stream[LabelExample | KbFeedback]


def _classify(
    deduped: Stream[Any],
    policy: RoutingPolicy,
    replica: ModelReplica,
    settings: PipelineSettings,
    w: _Wiring,
) -> _Classified:
    """Per ticket, with the newest published text models: category, intent, priority,
    KB and response suggestions; the ticket's queue is fixed here."""
    classified = _Split(
        "classify",
        _keyed_flat_map(
            "classify_ticket",
            op.key_on("key_ticket", deduped, ticket_key),
            make_classify_step(policy, replica, settings.comment_hold, settings.event_budget),
            timed=True,
        ),
    )
    lessons = classified.of("lessons", (LabelExample, KbFeedback))
    w.errors(classified)
    to_queues = classified.rest
    final_tickets: Stream[EnrichedTicket] = op.filter_map(
        "final_tickets", to_queues, lambda kv: kv[1] if isinstance(kv[1], EnrichedTicket) else None
    )
    w.observe("classify", final_tickets)
    return _Classified(to_queues, final_tickets, lessons)


def _learn(
    lessons: Stream[Any],
    kb_changes: Stream[ChangeEvent],
    learner: Callable[[bytes | None], _LearnLogic],
    w: _Wiring,
) -> Stream[ModelMetric]:
    """The one learning copy of the text models: it learns labels and KB changes and
    publishes the models for every classifying worker."""
    learned = _Split(
        "learn",
        op.map(
            "learn_text_values",
            op.stateful(
                "learn_text",
                op.key_on(
                    "key_text_models",
                    op.merge("merge_lessons", lessons, kb_changes),
                    lambda _: "text-models",
                ),
                learner,
            ),
            _value,
        ),
    )
    metrics: Stream[ModelMetric] = learned.of("metrics", ModelMetric)
    w.dead.append(learned.rest)
    return metrics


def _routing_view(kv: tuple[str, T]) -> tuple[str, T]:
    queue, item = kv
    if isinstance(item, EnrichedTicket):
        return queue, item.for_routing()  # type: ignore[return-value]
    return kv


def _route(
    classified: _Classified,
    tables: _Tables,
    settings: PipelineSettings,
    policy: RoutingPolicy,
    w: _Wiring,
) -> Stream[QueueOutput]:
    """Per queue: SLA clocks, routing decisions, breach risks and agent load; agent
    changes and work outcomes join the classified tickets there."""
    # Routing reads no text: what crosses to a queue's worker and what its journal keeps
    # is the ticket without it.
    for_routing = op.map("routing_view", classified.to_queues, _routing_view)
    queue_inputs = op.merge("merge_queue_inputs", for_routing, tables.agents, tables.outcomes)
    if settings.routing_pools:
        # Queues that share agents share one routing state: key their inputs by pool.
        queue_inputs = op.map(
            "key_routing_pools", queue_inputs, lambda kv: (settings.pool_of(kv[0]), kv[1])
        )
    routed = _Split(
        "route",
        _keyed_flat_map(
            "route_ticket",
            queue_inputs,
            make_queue_step(settings, policy),
            timed=True,
            journaled=True,
        ),
    )
    w.errors(routed)
    queue_out: Stream[QueueOutput] = routed.rest
    w.observe(
        "route", op.filter("select_decisions", queue_out, lambda x: isinstance(x, RoutingDecision))
    )
    return queue_out


def _metrics(
    final_tickets: Stream[EnrichedTicket],
    queue_out: Stream[QueueOutput],
    settings: PipelineSettings,
    w: _Wiring,
) -> Stream[Any]:
    """Minute windows and anomaly baselines: one key, or with ``metrics_by_family`` a key
    per dimension family (all, category, priority, channel), each taking the whole stream
    and keeping its own family."""
    metrics_in = op.merge(
        "merge_metric_inputs",
        final_tickets,
        op.filter_map(
            "select_sla_events", queue_out, lambda x: x if isinstance(x, SlaEvent) else None
        ),
    )
    live = _Split(
        "metrics",
        _keyed_flat_map(
            "compute_live_metrics",
            op.flat_map(
                "key_metrics",
                metrics_in,
                metric_families if settings.metrics_by_family else metrics_key,
            ),
            live_metrics_step,
            timed=True,
        ),
    )
    w.errors(live)
    return live.rest


@dataclass
class _Sinks:
    analytics: Sink[Any]
    decisions: Sink[Any]
    warehouse: Sink[Any] | None
    alerts: Sink[Any] | None
    search: Sink[Any] | None
    dead_letters: Sink[Any] | None


def _fan_out(
    *,
    final_tickets: Stream[EnrichedTicket],
    queue_out: Stream[QueueOutput],
    live_metrics: Stream[Any],
    model_metrics: Stream[ModelMetric],
    kb_changes: Stream[ChangeEvent],
    sinks: _Sinks,
    settings: PipelineSettings,
    w: _Wiring,
) -> None:
    """Live store first (agent tooling waits on it), then alerts, analytics, dead letters,
    search and the warehouse."""
    dead_letters = op.merge("merge_dead_letters", *w.dead)
    anomaly_alerts = op.filter("select_alerts", live_metrics, lambda x: isinstance(x, AnomalyAlert))
    op.output(
        "write_live",
        op.merge(
            "merge_live",
            op.filter("select_live", queue_out, lambda x: not isinstance(x, WorkloadScore)),
            anomaly_alerts,
        ),
        sinks.decisions,
    )
    if sinks.alerts is not None:
        breaches = op.filter("select_breaches", queue_out, _is_breach)
        op.output(
            "publish_alerts", op.merge("merge_alerts", anomaly_alerts, breaches), sinks.alerts
        )
    analytics = op.merge(
        "merge_analytics", final_tickets, queue_out, live_metrics, model_metrics, dead_letters
    )
    op.output("write_analytics", analytics, sinks.analytics)
    if sinks.dead_letters is not None:
        op.output("publish_dead_letters", dead_letters, sinks.dead_letters)
    if sinks.search is not None:
        articles = op.filter_map("select_kb_articles", kb_changes, kb_article)
        op.output("write_search", op.merge("merge_search", final_tickets, articles), sinks.search)
    if sinks.warehouse is not None:
        for_warehouse = op.filter(
            "select_warehouse_items",
            analytics,
            lambda x: isinstance(x, EnrichedTicket | RoutingDecision | SlaEvent | ModelMetric),
        )
        # Parquet wants few large files, the stream delivers small batches: buffer up to
        # ``warehouse_flush`` per ticket shard (keyed state: recovery keeps the buffers;
        # shards spread the buffers and the writes over the workers, and each shard
        # flushes at its own moment of the period, so the writes do not pile up).
        buffered = buffer(
            "buffer_warehouse",
            op.key_on("key_warehouse", for_warehouse, warehouse_shard(settings.warehouse_shards)),
            timeout=settings.warehouse_flush,
            max_size=settings.warehouse_batch,
            staggered=True,
        )
        op.output(
            "write_warehouse",
            op.flat_map("unbuffer_warehouse", buffered, _value),
            sinks.warehouse,
        )


def build_flow(
    settings: PipelineSettings,
    *,
    source: Source[RawChange] | InputFactory,
    analytics_sink: Sink[Any],
    decision_sink: Sink[Any],
    warehouse_sink: Sink[Any] | None = None,
    alert_sink: Sink[Any] | None = None,
    search_sink: Sink[Any] | None = None,
    model_store: ModelStore | None = None,
    dead_letter_sink: Sink[Any] | None = None,
) -> Dataflow:
    """Build the triage dataflow for a source of raw CDC records and the stores.

    It reads as the README's diagram: ``cdc_in → by table → enrich → classify → route →
    metrics → fan_out``, with ``learn`` beside classify; every sub-flow adds its failures
    to one dead-letter stream.

    Args:
        settings: what to compute (languages, models, routing policy).
        source: a Bytewax source of :class:`RawChange` (the embedded pgoutput reader), or
            an :data:`InputFactory` that adds its own input steps (the Kafka path).
        analytics_sink: receives enriched tickets, routing decisions, SLA events, breach
            risks, model metrics, live metrics and dead letters.
        decision_sink: receives routing decisions, SLA events, breach risks and anomaly
            alerts for the live store (Redis).
        warehouse_sink: optional; enriched tickets, decisions, SLA events, model metrics.
        alert_sink: optional; anomaly alerts and SLA breaches (Kafka ``triage.alerts``).
        search_sink: optional; final tickets and :class:`KbArticle` changes.
        model_store: where the learning copy of the text models publishes them for every
            worker; default: shared by reference, which is right for one process only.
            A cluster of processes needs a shared store (``sinks.model_store``).
        dead_letter_sink: optional; the flow's dead letters, besides the analytics sink
            (Kafka ``triage.dead_letters``).
    """
    policy = settings.routing_policy()
    detector = LanguageDetector(settings.languages)
    detector.detect("warm up the language model before the first ticket", fallback="en")
    warm_region_calendars(HOLIDAY_YEARS)
    enricher = TicketEnricher(policy, detector)
    store: ModelStore = model_store or LocalModelStore()
    shared = isinstance(store, LocalModelStore)

    def new_models() -> TextModels:
        return TextModels(
            apply_threshold=settings.apply_threshold,
            min_examples=settings.min_examples,
            n_features=settings.text_features,
            seed=settings.seed,
        )

    replica = ModelReplica(store, new_models, 0.0 if shared else settings.model_refresh)
    publish_every = timedelta(0) if shared else settings.model_publish_interval

    def learner(resume: bytes | None) -> _LearnLogic:
        models = new_models() if resume is None else pickle.loads(zlib.decompress(resume))
        return _LearnLogic(models, store, publish_every, settings.kb_publish_delay)

    flow = Dataflow(settings.flow_id)
    w = _Wiring()
    events = _cdc_in(flow, source, w)
    tables = _by_table(events, settings, w)
    deduped = _enrich(tables, enricher, settings, w)
    classified = _classify(deduped, policy, replica, settings, w)
    model_metrics = _learn(classified.lessons, tables.kb_changes, learner, w)
    queue_out = _route(classified, tables, settings, policy, w)
    live_metrics = _metrics(classified.final_tickets, queue_out, settings, w)
    _fan_out(
        final_tickets=classified.final_tickets,
        queue_out=queue_out,
        live_metrics=live_metrics,
        model_metrics=model_metrics,
        kb_changes=tables.kb_changes,
        sinks=_Sinks(
            analytics_sink,
            decision_sink,
            warehouse_sink,
            alert_sink,
            search_sink,
            dead_letter_sink,
        ),
        settings=settings,
        w=w,
    )
    return flow
