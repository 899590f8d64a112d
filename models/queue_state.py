"""Everything a queue (team) keeps: routing, SLA clocks and breach risk of its tickets.

The dataflow keys this state by queue, so a queue's agents, load, SLA clocks and
breach-risk model live together on one worker: routing can see which clocks run, and
breach risk can see the queue's load.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from models.breach_risk import BreachRiskFeatures, BreachRiskModel
from models.burnout import AgentWorkload, WorkloadScore
from models.helpdesk import Agent, EnrichedTicket, RoutingDecision, WorkOutcome, evolve
from models.routing import (
    AgentRanker,
    HandlingOutcome,
    LeastLoadedRanker,
    QueueRouter,
    RoutingPolicy,
    RoutingRequest,
)
from models.signals import BreachRiskScore
from models.sla import SlaEvent, SlaTracker, TicketComment, TicketUpdate

QueueOutput = RoutingDecision | SlaEvent | BreachRiskScore | WorkloadScore
_MAX_SNAPSHOTS = 8
_EARLY_OUTCOMES = 5000


@dataclass
class _RiskContext:
    priority: str
    tier: str
    category: str
    created_at: datetime
    updates: int = 0
    reassignments: int = 0
    reopens: int = 0
    breached: bool = False
    last_features: BreachRiskFeatures | None = None
    last_risk: float | None = None
    agent_id: int | None = None
    status: str | None = None
    # Snapshots scored at the ticket's changes, learned once the outcome is known.
    snapshots: list[BreachRiskFeatures] = field(default_factory=list)

    def __setstate__(self, state: dict[str, object]) -> None:
        # Contexts saved before snapshots existed learn their last scored features.
        last = state.get("last_features")
        self.__dict__.update({"status": None, "snapshots": [last] if last else []} | state)


@dataclass
class QueueState:
    """Router, SLA tracker and breach-risk model of one queue.

    Args:
        queue: the queue (team) name.
        policy: routing policy.
        ranker: how eligible agents are ordered (least-loaded or learned).
        min_risk_change: a new score is emitted only when the risk moved this much.
        rescore_every: how often a slice (``rescore_batch``) of open tickets is rescored;
            small slices often keep each wake-up short (latency) while every open
            ticket is still revisited.
    """

    queue: str
    policy: RoutingPolicy = field(default_factory=RoutingPolicy)
    ranker: AgentRanker = field(default_factory=LeastLoadedRanker)
    rescore_every: timedelta = timedelta(seconds=5)
    router: QueueRouter = field(init=False)
    sla: SlaTracker = field(default_factory=SlaTracker)
    risk: BreachRiskModel = field(default_factory=BreachRiskModel)
    risk_context: dict[int, _RiskContext] = field(default_factory=dict)
    risk_version: int = 0
    next_rescore: datetime | None = None
    rescore_batch: int = 200
    workload: dict[int, AgentWorkload] = field(default_factory=dict)
    workload_bucket: datetime | None = None
    min_risk_change: float = 0.05
    rescore_cursor: int = 0
    # Ticket id -> an outcome that arrived before the ticket was routed here, and its version.
    early_outcomes: dict[int, tuple[HandlingOutcome, int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.router = QueueRouter(queue=self.queue, policy=self.policy, ranker=self.ranker)

    def __setstate__(self, state: dict[str, object]) -> None:
        # States saved before the outcome input existed.
        self.__dict__.update({"early_outcomes": {}} | state)

    # -- inputs ---------------------------------------------------------------------------

    def on_agent(self, agent: Agent, *, version: int, at: datetime) -> list[QueueOutput]:
        return list(self.router.upsert_agent(agent, version=version, at=at))

    def remove_agent(self, agent_id: int) -> None:
        self.router.remove_agent(agent_id)

    def on_outcome(self, outcome: WorkOutcome, *, version: int, at: datetime) -> list[QueueOutput]:
        """A ``work_outcomes`` row: free the agent, teach the ranker, route held tickets.

        ``at`` is the change's commit time (the router's clock, as for tickets). An outcome
        for an item this queue has not routed yet (it overtook the ticket on its shorter
        path through the flow) waits, bounded, and completes the item once it is routed.
        """
        handling = HandlingOutcome(
            item_id=outcome.ticket_id or 0,
            agent_id=outcome.agent_id,
            work_type=outcome.work_type,
            seconds=outcome.handling_seconds,
            at=at,
            wait_seconds=outcome.wait_seconds,
            quality=outcome.quality,
        )
        tid = outcome.ticket_id
        router = self.router
        if tid is not None and tid not in router.assignments and tid not in router.holding:
            if tid in router.completed:
                return []  # the item's outcome is known already: learn it once
            self.early_outcomes[tid] = (handling, version)
            if len(self.early_outcomes) > _EARLY_OUTCOMES:
                del self.early_outcomes[next(iter(self.early_outcomes))]
            return []
        return list(router.complete(handling, trigger_version=version))

    def on_ticket(self, et: EnrichedTicket, *, now: datetime) -> list[QueueOutput]:
        """Advance the ticket's SLA clocks, route it, and score its breach risk."""
        ticket = et.ticket
        out: list[QueueOutput] = []
        sla_events = self.sla.apply(
            TicketUpdate(
                ticket_id=ticket.id,
                at=et.committed_at,
                status=ticket.status,
                priority=et.priority,
                tier=et.customer_tier,
                region=et.region,
                created_at=ticket.created_at,
                deleted=et.op == "d",
            )
        )
        out += sla_events
        self._track(et, sla_events)
        request = evolve(
            RoutingRequest.from_enriched(et),
            sla_deadline=self.sla.next_deadline(ticket.id),
        )
        decisions = self.router.on_ticket(request, at=et.committed_at)
        out += decisions
        for decision in decisions:
            if decision.status == "assigned" and decision.agent_id is not None:
                self._on_assignment(decision.agent_id, et)
        early = self.early_outcomes.pop(ticket.id, None)
        if early is not None and ticket.id in self.router.assignments:
            handling, version = early
            out += self.router.complete(
                replace(handling, at=max(handling.at, et.committed_at)),
                trigger_version=max(version, et.version),
            )
        if ticket.is_open and et.op != "d":
            score = self._score(ticket.id, now, snapshot=True)
            if score is not None:
                out.append(score)
        else:
            self._learn_outcome(ticket.id, et.committed_at)
        return out

    def _on_assignment(self, agent_id: int, et: EnrichedTicket) -> None:
        agent = self.router.agents.get(agent_id)
        on_shift = agent.on_shift(et.committed_at) if agent is not None else True
        self.workload.setdefault(agent_id, AgentWorkload()).on_assignment(
            on_shift=on_shift, negative=et.sentiment_label == "negative", at=et.committed_at
        )
        ctx = self.risk_context.get(et.ticket.id)
        if ctx is not None:
            ctx.agent_id = agent_id

    def workload_scores(self, now: datetime) -> list[QueueOutput]:
        """One load sample and burnout risk per agent, at most once per minute."""
        bucket = now.replace(second=0, microsecond=0)
        if self.workload_bucket is not None and bucket <= self.workload_bucket:
            return []
        self.workload_bucket = bucket
        out: list[QueueOutput] = []
        for agent in self.router.agents.values():
            assigned = self.router.load.get(agent.id, 0)
            state = self.workload.setdefault(agent.id, AgentWorkload())
            state.sample_load(assigned, agent.capacity, now)
            risk, reasons = state.risk()
            out.append(
                WorkloadScore(agent.id, self.queue, bucket, assigned, agent.capacity, risk, reasons)
            )
        return out

    def on_comment(self, comment: TicketComment) -> list[QueueOutput]:
        events = self.sla.apply(comment)
        ctx = self.risk_context.get(comment.ticket_id)
        if ctx is not None:
            ctx.updates += 1
            if any(_is_breach(e) for e in events):
                self._breached(ctx)
        return list(events)

    def tick(self, now: datetime) -> list[QueueOutput]:
        """Breach events for passed deadlines and, every ``rescore_every``, fresh risks."""
        out: list[QueueOutput] = []
        events = self.sla.tick(now)
        for event in events:
            ctx = self.risk_context.get(event.ticket_id)
            if ctx is not None and _is_breach(event):
                self._breached(ctx)
        out += events
        if self.next_rescore is None or now >= self.next_rescore:
            self.next_rescore = now + self.rescore_every
            out += self.workload_scores(now)
            # Routing stays event-driven (held tickets move on ticket or agent changes):
            # a decision made on a timer would differ when a restart replays the events,
            # and the live and analytics stores could then disagree.
            # Rescore a bounded slice per tick, cycling through the open tickets, so an
            # overloaded queue does not stall the worker on one wake-up.
            tickets = list(self.risk_context)
            if tickets:
                start = self.rescore_cursor % len(tickets)
                batch = (tickets[start:] + tickets[:start])[: self.rescore_batch]
                self.rescore_cursor = start + len(batch)
                for ticket_id in batch:
                    score = self._score(ticket_id, now)
                    if score is not None:
                        out.append(score)
        return out

    def next_wakeup(self) -> datetime | None:
        """When :meth:`tick` next has something to do (a deadline or a rescoring)."""
        due = self.sla.next_due()
        candidates = [due] if due is not None else []
        if self.risk_context or self.router.agents:
            candidates.append(self.next_rescore or datetime.now(UTC))
        return min(candidates, default=None)

    def is_idle(self) -> bool:
        router = self.router
        return not (
            router.agents
            or router.assignments
            or router.holding
            or len(self.sla)
            or self.early_outcomes
        )

    # -- breach risk ------------------------------------------------------------------------

    def _track(self, et: EnrichedTicket, events: list[SlaEvent]) -> None:
        ticket = et.ticket
        ctx = self.risk_context.get(ticket.id)
        if ctx is None:
            if not ticket.is_open or et.op == "d":
                return
            ctx = _RiskContext(et.priority, et.customer_tier, et.category, ticket.created_at)
            self.risk_context[ticket.id] = ctx
        else:
            ctx.updates += 1
            if et.previous_status in ("solved", "closed") and ticket.is_open:
                ctx.reopens += 1
            if ticket.assigned_agent_id != self.router.assignments.get(ticket.id):
                ctx.reassignments += 1
        ctx.priority = et.priority
        ctx.status = ticket.status
        if any(_is_breach(e) for e in events):
            self._breached(ctx)

    def _features(self, ticket_id: int, now: datetime) -> BreachRiskFeatures | None:
        ctx = self.risk_context.get(ticket_id)
        progress = [p for p in self.sla.progress(ticket_id, now) if p.state == "running"]
        if ctx is None or not progress:
            return None
        nearest = max(progress, key=lambda p: p.fraction_elapsed)
        local = now.astimezone(UTC)
        return BreachRiskFeatures(
            fraction_elapsed=nearest.fraction_elapsed,
            remaining_business_minutes=nearest.remaining_business_seconds / 60.0,
            elapsed_hours=(now - ctx.created_at).total_seconds() / 3600.0,
            priority=ctx.priority,
            tier=ctx.tier,
            category=ctx.category,
            queue=self.queue,
            status=ctx.status,
            reassignments=ctx.reassignments,
            reopens=ctx.reopens,
            updates=ctx.updates,
            hour_of_week=local.weekday() * 24 + local.hour,
            queue_load=float(sum(self.router.load.values()) + len(self.router.holding)),
        )

    def _score(
        self, ticket_id: int, now: datetime, *, snapshot: bool = False
    ) -> BreachRiskScore | None:
        features = self._features(ticket_id, now)
        if features is None:
            return None
        ctx = self.risk_context[ticket_id]
        ctx.last_features = features
        if snapshot and not ctx.breached:
            # The model learns from the moments it predicts at: the opening and each
            # change (bounded: the opening and the latest ones are kept).
            if len(ctx.snapshots) >= _MAX_SNAPSHOTS:
                del ctx.snapshots[1]
            ctx.snapshots.append(features)
        risk = 1.0 if ctx.breached else self.risk.predict_one(features)
        if ctx.last_risk is not None and abs(risk - ctx.last_risk) < self.min_risk_change:
            return None  # nothing new for the stores
        ctx.last_risk = risk
        running = self.sla.running_deadline(ticket_id)
        self.risk_version += 1
        return BreachRiskScore(
            ticket_id=ticket_id,
            queue=self.queue,
            risk=round(risk, 4),
            scored_at=now,
            deadline=running[0] if running else None,
            metric=running[1] if running else None,
            model_version=self.risk.version,
            version=self.risk_version,
        )

    def _learn_outcome(self, ticket_id: int, at: datetime) -> None:
        ctx = self.risk_context.pop(ticket_id, None)
        if ctx is None:
            return
        if ctx.agent_id is not None and ctx.last_features is not None:
            self.workload.setdefault(ctx.agent_id, AgentWorkload()).on_outcome(
                breached=ctx.breached, at=at
            )
        self._learn_snapshots(ctx)

    def _breached(self, ctx: _RiskContext) -> None:
        """A deadline passed: the outcome of every snapshot so far is known now."""
        ctx.breached = True
        self._learn_snapshots(ctx)

    def _learn_snapshots(self, ctx: _RiskContext) -> None:
        for features in ctx.snapshots:
            self.risk.learn_one(features, ctx.breached)
        ctx.snapshots = []


def _is_breach(event: SlaEvent) -> bool:
    return event.kind == "breach" or (event.kind == "fulfill" and event.breached)
