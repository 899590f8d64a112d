"""Rule-based routing of tickets to agents, one state object per queue.

Each queue (a team) owns its agents, their current load and a holding list of tickets
nobody could take. The dataflow keys this state by queue so a queue's agents and load
live on one worker. Decisions carry the reasons that produced them.

Routing is evaluated at the event's commit time (``at``), so a replay makes the same
choices; only ``decided_at`` records the wall clock.

Eligibility is a hard filter: the agent is online and on shift, speaks the ticket's
language, has at least ``min_skill`` in the category and has free capacity. Among the
eligible, the least-loaded agent (by load / capacity) wins; ties go to the higher skill,
then the lower agent id so decisions are deterministic.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from models.helpdesk import OPEN_STATUSES, Agent, EnrichedTicket, RoutingDecision
from models.priority import priority_rank

MODEL_VERSION = "rules-least-loaded-1"

DEFAULT_CATEGORY_QUEUES: dict[str, str] = {
    "billing": "billing",
    "technical": "technical",
    "account": "account",
    "shipping": "logistics",
    "general": "general",
}

# First-reply targets by priority until the SLA engine owns deadlines.
DEFAULT_FIRST_REPLY_TARGETS: dict[str, timedelta] = {
    "urgent": timedelta(hours=1),
    "high": timedelta(hours=4),
    "normal": timedelta(hours=8),
    "low": timedelta(hours=24),
}


@dataclass(frozen=True)
class RoutingPolicy:
    """Settings of the rule-based router (pure data, serialisable)."""

    category_queues: Mapping[str, str] = field(
        default_factory=lambda: dict(DEFAULT_CATEGORY_QUEUES)
    )
    default_queue: str = "general"
    min_skill: float = 0.3
    respect_shifts: bool = True
    first_reply_targets: Mapping[str, timedelta] = field(
        default_factory=lambda: dict(DEFAULT_FIRST_REPLY_TARGETS)
    )

    def queue_for(self, category: str) -> str:
        return self.category_queues.get(category, self.default_queue)

    def sla_deadline(self, created_at: datetime, priority: str) -> datetime:
        target = self.first_reply_targets.get(priority, timedelta(hours=8))
        return created_at + target


@dataclass(frozen=True)
class RoutingRequest:
    """The part of an enriched ticket that routing needs (kept small: it lives in state)."""

    ticket_id: int
    version: int
    queue: str
    op: str
    status: str
    assigned_agent_id: int | None
    language: str
    category: str
    priority: str
    customer_tier: str
    created_at: datetime
    committed_at: datetime

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    @classmethod
    def from_enriched(cls, et: EnrichedTicket) -> RoutingRequest:
        return cls(
            ticket_id=et.ticket.id,
            version=et.version,
            queue=et.queue,
            op=et.op,
            status=et.ticket.status,
            assigned_agent_id=et.ticket.assigned_agent_id,
            language=et.language,
            category=et.category,
            priority=et.priority,
            customer_tier=et.customer_tier,
            created_at=et.ticket.created_at,
            committed_at=et.committed_at,
        )


@dataclass
class _Held:
    ticket: RoutingRequest
    since: datetime


@dataclass
class QueueRouter:
    """Routing state of one queue: agents, loads, assignments and the holding list."""

    queue: str
    policy: RoutingPolicy = field(default_factory=RoutingPolicy)
    agents: dict[int, Agent] = field(default_factory=dict)
    load: dict[int, int] = field(default_factory=dict)
    assignments: dict[int, int] = field(default_factory=dict)  # ticket id -> agent id
    holding: dict[int, _Held] = field(default_factory=dict)  # ticket id -> held ticket
    last_version: dict[int, int] = field(default_factory=dict)  # ticket id -> decision version

    # -- agents -------------------------------------------------------------------------

    def upsert_agent(self, agent: Agent, *, version: int, at: datetime) -> list[RoutingDecision]:
        """Add or update an agent; new capacity may let held tickets through."""
        current = self.agents.get(agent.id)
        if current is not None and current.version > agent.version:
            return []
        self.agents[agent.id] = agent
        self.load.setdefault(agent.id, 0)
        return self._drain_holding(trigger_version=version, at=at)

    def remove_agent(self, agent_id: int) -> None:
        """Forget an agent (deleted or moved to another team). Its tickets keep their owner."""
        self.agents.pop(agent_id, None)

    # -- tickets ------------------------------------------------------------------------

    def on_ticket(self, et: RoutingRequest, *, at: datetime) -> list[RoutingDecision]:
        """React to a ticket change: release, respect a manual assignment, or route."""
        tid = et.ticket_id
        if et.op == "d" or not et.is_open:
            return self._release(et, at=at)

        if tid in self.holding:
            self.holding[tid] = _Held(et, self.holding[tid].since)

        current = self.assignments.get(tid)
        manual = et.assigned_agent_id
        if manual is not None and manual != current:
            # Someone assigned the ticket in the helpdesk (or the ticket arrived assigned):
            # honour it and account for the load.
            self._move(tid, manual)
            self.holding.pop(tid, None)
            return [
                self._decision(
                    et,
                    status="assigned",
                    agent_id=manual,
                    score=1.0,
                    confidence=1.0,
                    reasons=("assigned in helpdesk",),
                    at=at,
                    version=et.version,
                )
            ]
        if current is not None or tid in self.holding:
            return []  # already routed or waiting; nothing changed for routing
        return [self._route(et, at=at, version=et.version)]

    def _release(self, et: RoutingRequest, *, at: datetime) -> list[RoutingDecision]:
        tid = et.ticket_id
        was_held = self.holding.pop(tid, None) is not None
        agent_id = self.assignments.pop(tid, None)
        if agent_id is None and not was_held:
            self.last_version.pop(tid, None)
            return []
        if agent_id is not None:
            self.load[agent_id] = max(0, self.load.get(agent_id, 0) - 1)
        reason = "ticket deleted" if et.op == "d" else f"ticket {et.status}"
        released = self._decision(
            et,
            status="released",
            agent_id=agent_id,
            score=0.0,
            confidence=1.0,
            reasons=(reason,),
            at=at,
            version=et.version,
        )
        # Closed tickets leave the state so memory does not grow with history.
        self.last_version.pop(tid, None)
        return [released, *self._drain_holding(trigger_version=et.version, at=at)]

    def _move(self, ticket_id: int, agent_id: int) -> None:
        previous = self.assignments.get(ticket_id)
        if previous is not None:
            self.load[previous] = max(0, self.load.get(previous, 0) - 1)
        self.assignments[ticket_id] = agent_id
        self.load[agent_id] = self.load.get(agent_id, 0) + 1

    def eligible(self, et: RoutingRequest, *, at: datetime) -> tuple[list[Agent], list[str]]:
        """Agents that may take the ticket, and why the others may not (for the reasons)."""
        ok: list[Agent] = []
        rejected: dict[str, int] = {}
        for agent in self.agents.values():
            if agent.status != "online":
                why = f"agent {agent.status}"
            elif self.policy.respect_shifts and not agent.on_shift(at):
                why = "off shift"
            elif et.language not in agent.languages:
                why = f"does not speak {et.language}"
            elif agent.skills.get(et.category, 0.0) < self.policy.min_skill:
                why = f"skill {et.category} below {self.policy.min_skill}"
            elif self.load.get(agent.id, 0) >= agent.capacity:
                why = "at capacity"
            else:
                ok.append(agent)
                continue
            rejected[why] = rejected.get(why, 0) + 1
        notes = [f"{n} {why}" for why, n in sorted(rejected.items(), key=lambda kv: -kv[1])]
        return ok, notes

    def _route(self, et: RoutingRequest, *, at: datetime, version: int) -> RoutingDecision:
        candidates, rejected = self.eligible(et, at=at)
        if not candidates:
            self.holding[et.ticket_id] = _Held(et, at)
            reasons = ("no eligible agent", *rejected[:3]) if self.agents else ("queue has no agents",)
            return self._decision(
                et,
                status="queued",
                agent_id=None,
                score=0.0,
                confidence=1.0,
                reasons=reasons,
                at=at,
                version=version,
            )

        def utilisation(a: Agent) -> float:
            return self.load.get(a.id, 0) / a.capacity if a.capacity else 1.0

        ranked = sorted(
            candidates, key=lambda a: (utilisation(a), -a.skills.get(et.category, 0.0), a.id)
        )
        best = ranked[0]
        best_util = utilisation(best)
        tied = sum(1 for a in ranked if utilisation(a) == best_util)
        load_before = self.load.get(best.id, 0)
        self._move(et.ticket_id, best.id)
        reasons = (
            f"least loaded: {load_before}/{best.capacity}",
            f"skill {et.category}: {best.skills.get(et.category, 0.0):.2f}",
            f"speaks {et.language}",
            f"tier {et.customer_tier}",
        )
        return self._decision(
            et,
            status="assigned",
            agent_id=best.id,
            score=round(1.0 - best_util, 4),
            confidence=round(1.0 / tied, 4),
            reasons=reasons,
            at=at,
            version=version,
            candidates=len(candidates),
        )

    def _drain_holding(self, *, trigger_version: int, at: datetime) -> list[RoutingDecision]:
        """Route held tickets, most urgent and oldest first, while someone can take them."""
        if not self.holding:
            return []
        order = sorted(
            self.holding.values(),
            key=lambda h: (priority_rank(h.ticket.priority), h.ticket.created_at),
        )
        out: list[RoutingDecision] = []
        for held in order:
            et = held.ticket
            if not self.eligible(et, at=at)[0]:
                continue
            del self.holding[et.ticket_id]
            # The decision must supersede the ticket's earlier "queued" decision in stores
            # that keep the newest version, even if the trigger's LSN is older.
            version = max(trigger_version, self.last_version.get(et.ticket_id, 0) + 1)
            decision = self._route(et, at=at, version=version)
            out.append(decision)
        return out

    def _decision(
        self,
        et: RoutingRequest,
        *,
        status: str,
        agent_id: int | None,
        score: float,
        confidence: float,
        reasons: tuple[str, ...],
        at: datetime,
        version: int,
        candidates: int = 0,
    ) -> RoutingDecision:
        self.last_version[et.ticket_id] = version
        return RoutingDecision(
            ticket_id=et.ticket_id,
            version=version,
            queue=self.queue,
            status=status,  # type: ignore[arg-type]
            agent_id=agent_id,
            score=score,
            confidence=confidence,
            reasons=reasons,
            priority=et.priority,
            sla_deadline=self.policy.sla_deadline(et.created_at, et.priority),
            model_version=MODEL_VERSION,
            decided_at=datetime.now(UTC),
            source_committed_at=et.committed_at,
            candidates=candidates,
        )
