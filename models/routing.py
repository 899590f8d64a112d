"""Rule-based routing of tickets to agents, one state object per queue.

Each queue (a team) owns its agents, their current load and a holding list of tickets
nobody could take. The dataflow keys this state by queue so a queue's agents and load
live on one worker. Decisions carry the reasons that produced them.

Routing is evaluated at the event's commit time (``at``), so a replay makes the same
choices; only ``decided_at`` records the wall clock.

Eligibility is a hard filter: the agent is online and on shift, speaks the ticket's
language, has at least ``min_skill`` in the category and has free capacity.

One router may also serve a *pool* of queues (its ``queue`` is then the pool's name): a
ticket of queue Q goes to the pool's agents whose team is Q or who list Q in
``Agent.queues``, and each agent's load counts all its queues at once, so an agent who
serves several queues is never booked twice. Decisions carry the ticket's own queue. Among the
eligible, the least-loaded agent (by load / capacity) wins; ties go to the higher skill,
then the lower agent id so decisions are deterministic.

Contact centres (capacity 1 per agent) need two more things, both off by default so the
helpdesk behaviour is unchanged: the router records since when each agent has been idle,
and with :attr:`RoutingPolicy.prefer_longest_idle` the agent idle longest wins among those
the ranker scores equally (at capacity 1 every free agent has load 0, so least-loaded alone
would be a fixed pecking order by id). :meth:`QueueRouter.complete` is the outcome input for
work that is not a helpdesk ticket: "item X of type T, handled by agent A, took N seconds".

Kept as one module: eligibility, ranking hooks, capacity and the holding list
are one queue state whose invariants (no agent over capacity) hold only when changed
together.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from models.helpdesk import OPEN_STATUSES, Agent, EnrichedTicket, RoutingDecision
from models.priority import priority_rank

MODEL_VERSION = "rules-least-loaded-1"

PAUSED_STATUSES = frozenset({"pending", "on_hold"})
"""Statuses that pause the SLA clock; assigned tickets in them free the agent's capacity."""

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
    # An agent must speak the ticket's language (helpdesk); off for work items that carry
    # none, as in a contact centre routing calls by type only.
    require_language: bool = True
    # Among agents the ranker scores equally, the one idle longest first (contact-centre
    # "longest idle agent"); off keeps the ranker's own order (higher skill, lower id).
    prefer_longest_idle: bool = False
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
    first_reply_at: datetime | None = None
    solved_at: datetime | None = None
    csat: int | None = None
    sla_deadline: datetime | None = None

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    @classmethod
    def work_item(
        cls,
        item_id: int,
        work_type: str,
        *,
        queue: str,
        at: datetime,
        version: int = 0,
        priority: str = "normal",
        language: str = "",
        customer_tier: str = "standard",
    ) -> RoutingRequest:
        """A new work item that carries only a type (a call, a chat): the helpdesk fields
        take neutral values; route it with ``RoutingPolicy(require_language=False)`` when
        it has no language.

        Example:
            >>> from datetime import UTC, datetime
            >>> item = RoutingRequest.work_item(
            ...     7, "billing", queue="calls", at=datetime(2026, 3, 2, tzinfo=UTC)
            ... )
            >>> item.category, item.priority, item.status, item.is_open
            ('billing', 'normal', 'new', True)
        """
        return cls(
            ticket_id=item_id,
            version=version,
            queue=queue,
            op="c",
            status="new",
            assigned_agent_id=None,
            language=language,
            category=work_type,
            priority=priority,
            customer_tier=customer_tier,
            created_at=at,
            committed_at=at,
        )

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
            first_reply_at=et.ticket.first_reply_at,
            solved_at=et.ticket.solved_at,
            csat=et.ticket.csat,
        )


@dataclass(frozen=True)
class RankedAgent:
    """An eligible agent with the ranker's score (higher is better) and its reasons."""

    agent: Agent
    score: float
    confidence: float
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class RoutingOutcome:
    """What happened to a ticket an agent handled: the signal a learned ranker learns from."""

    ticket_id: int
    agent_id: int
    category: str
    language: str
    priority: str
    customer_tier: str
    resolution_seconds: float | None
    first_reply_seconds: float | None
    csat: int | None
    reopened: bool
    at: datetime


class AgentRanker(Protocol):
    """Orders the eligible agents for a ticket; may learn from outcomes."""

    @property
    def version(self) -> str: ...

    def rank(
        self,
        request: RoutingRequest,
        candidates: Sequence[Agent],
        load: Mapping[int, int],
        *,
        at: datetime,
    ) -> list[RankedAgent]: ...

    def learn(self, outcome: RoutingOutcome) -> None: ...


@dataclass(frozen=True)
class HandlingOutcome:
    """A finished work item: which agent handled it, its type, and the handling time alone.

    The direct outcome input for work that has no helpdesk lifecycle (a contact-centre
    call): no creation time, first reply, CSAT or reopen, only the seconds of handling.
    """

    item_id: int
    agent_id: int
    work_type: str
    seconds: float
    at: datetime
    # Optional signals a contact centre may have: how long the item waited before it was
    # answered, and a quality score in [0, 1] (survey, QA review). Stored with the outcome;
    # the rankers learn the handling time.
    wait_seconds: float | None = None
    quality: float | None = None


def utilisation(agent: Agent, load: Mapping[int, int]) -> float:
    """Share of the agent's capacity in use (1.0 when the agent has no capacity)."""
    return load.get(agent.id, 0) / agent.capacity if agent.capacity else 1.0


class LeastLoadedRanker:
    """The baseline: lowest utilisation first, then higher skill, then lower id."""

    version = MODEL_VERSION

    def rank(
        self,
        request: RoutingRequest,
        candidates: Sequence[Agent],
        load: Mapping[int, int],
        *,
        at: datetime,
    ) -> list[RankedAgent]:
        ordered = sorted(
            candidates,
            key=lambda a: (utilisation(a, load), -a.skills.get(request.category, 0.0), a.id),
        )
        if not ordered:
            return []
        best_util = utilisation(ordered[0], load)
        tied = sum(1 for a in ordered if utilisation(a, load) == best_util)
        return [
            RankedAgent(
                agent=a,
                score=round(1.0 - utilisation(a, load), 4),
                confidence=round(1.0 / tied, 4),
                reasons=(
                    f"least loaded: {load.get(a.id, 0)}/{a.capacity}",
                    f"skill {request.category}: {a.skills.get(request.category, 0.0):.2f}",
                ),
            )
            for a in ordered
        ]

    def learn(self, outcome: RoutingOutcome) -> None:
        return None


class OracleRanker:
    """Ranks by known expected handling seconds per (agent, work type); evaluation only.

    A yardstick, not a router: it is told the truth (``means``) and never learns. Agents
    with no known mean for the type rank last; ties go to lower utilisation, then lower id.

    Example:
        >>> from datetime import UTC, datetime
        >>> at = datetime(2024, 1, 1, 9, tzinfo=UTC)
        >>> agents = [Agent(i, f"a{i}", "t", {"billing": 1.0}, ("en",), 1, "online")
        ...           for i in (1, 2)]
        >>> req = RoutingRequest(7, 1, "t", "c", "new", None, "en", "billing", "normal",
        ...                      "standard", at, at)
        >>> OracleRanker({(1, "billing"): 300.0, (2, "billing"): 120.0}).rank(
        ...     req, agents, {}, at=at)[0].agent.id
        2
    """

    version = "oracle-1"

    def __init__(self, means: Mapping[tuple[int, str], float]) -> None:
        self.means = dict(means)

    def rank(
        self,
        request: RoutingRequest,
        candidates: Sequence[Agent],
        load: Mapping[int, int],
        *,
        at: datetime,
    ) -> list[RankedAgent]:
        def mean(a: Agent) -> float:
            return self.means.get((a.id, request.category), math.inf)

        ordered = sorted(candidates, key=lambda a: (mean(a), utilisation(a, load), a.id))
        return [
            RankedAgent(
                agent=a,
                score=-mean(a) if math.isfinite(mean(a)) else -1e18,
                confidence=1.0,
                reasons=(f"known mean {request.category}: {mean(a):.0f} s",),
            )
            for a in ordered
        ]

    def learn(self, outcome: RoutingOutcome) -> None:
        return None


@dataclass
class _Held:
    ticket: RoutingRequest
    since: datetime


_MAX_SHIFT_STEPS = 1000
"""Shift starts one event may catch up on (a queue quiet for days); later ones are skipped."""

_HeldKey = tuple[int, datetime, int, int]
"""(priority rank, created at, place in the holding list, ticket id): the drain order."""

_Group = tuple[str, str, str]
"""(queue, language, category): held tickets of one group suit the same agents."""


def _group(et: RoutingRequest) -> _Group:
    return (et.queue, et.language, et.category)


def _remove_sorted(keys: list[_HeldKey], key: _HeldKey) -> None:
    at = bisect.bisect_left(keys, key)
    if at < len(keys) and keys[at] == key:
        del keys[at]


@dataclass
class QueueRouter:
    """Routing state of one queue: agents, loads, assignments and the holding list."""

    queue: str
    policy: RoutingPolicy = field(default_factory=RoutingPolicy)
    ranker: AgentRanker = field(default_factory=LeastLoadedRanker)
    agents: dict[int, Agent] = field(default_factory=dict)
    load: dict[int, int] = field(default_factory=dict)
    assignments: dict[int, int] = field(default_factory=dict)  # ticket id -> agent id
    holding: dict[int, _Held] = field(default_factory=dict)  # ticket id -> held ticket
    last_version: dict[int, int] = field(default_factory=dict)  # ticket id -> decision version
    # Assigned tickets waiting on the customer (pending, on hold): their SLA clock is paused,
    # so they do not count toward the agent's load.
    paused: set[int] = field(default_factory=set)
    # Recently solved tickets and who solved them, so a reopen can count against the agent.
    recently_solved: dict[int, int] = field(default_factory=dict)
    recently_solved_cap: int = 5000
    # Agent id -> when the agent last became free of counted work (load fell to 0), or came
    # online with none: what "longest idle" compares.
    idle_since: dict[int, datetime] = field(default_factory=dict)
    # Ticket id -> the request its agent is working on, so a work outcome can release it
    # with the ticket's own priority and deadline.
    work: dict[int, RoutingRequest] = field(default_factory=dict)
    # Items a work outcome finished while they stayed open, and who finished them: later
    # updates do not book the agent again (bounded like ``recently_solved``).
    completed: dict[int, int] = field(default_factory=dict)
    # Event time of the next agent shift start while tickets are held: the queue's next
    # event first routes held tickets as of that start (None: nothing to check).
    shift_check: datetime | None = None
    # The holding list in drain order (priority, creation, then arrival in the list), kept
    # sorted as tickets come and go so that a release does not sort the whole list again.
    _held_order: list[_HeldKey] = field(default_factory=list, repr=False, compare=False)
    _held_keys: dict[int, _HeldKey] = field(default_factory=dict, repr=False, compare=False)
    _held_seq: int = field(default=0, repr=False, compare=False)
    # The same keys per (queue, language, category): tickets of one group suit the same
    # agents, so a release checks one ticket per group, not every held ticket.
    _held_groups: dict[_Group, list[_HeldKey]] = field(
        default_factory=dict, repr=False, compare=False
    )

    def __setstate__(self, state: dict[str, Any]) -> None:
        # Snapshots written before the holding index existed rebuild it.
        self.__dict__.update(state)
        for name, empty in (("idle_since", {}), ("work", {}), ("completed", {})):
            self.__dict__.setdefault(name, empty)
        self.__dict__.setdefault("shift_check", None)
        if "_held_keys" not in state or "_held_groups" not in state:
            self._rebuild_holding_index()

    # -- the holding list ---------------------------------------------------------------

    def _hold(self, et: RoutingRequest, since: datetime) -> None:
        tid = et.ticket_id
        previous = self.holding.get(tid)
        old = self._held_keys.get(tid) if previous is not None else None
        if previous is not None and old is not None:
            # Updating a held ticket keeps its place among equals (as a dict keeps its key).
            seq = old[2]
            _remove_sorted(self._held_order, old)
            self._ungroup(_group(previous.ticket), old)
        else:
            self._held_seq += 1
            seq = self._held_seq
        self.holding[tid] = _Held(et, since)
        if self.shift_check is None and self.policy.respect_shifts:
            self.shift_check = self._next_shift_start(since)
        key = (priority_rank(et.priority), et.created_at, seq, tid)
        self._held_keys[tid] = key
        bisect.insort(self._held_order, key)
        bisect.insort(self._held_groups.setdefault(_group(et), []), key)

    def _unhold(self, tid: int) -> bool:
        held = self.holding.pop(tid, None)
        if held is None:
            return False
        key = self._held_keys.pop(tid, None)
        if key is not None:
            _remove_sorted(self._held_order, key)
            self._ungroup(_group(held.ticket), key)
        return True

    def _ungroup(self, group: _Group, key: _HeldKey) -> None:
        keys = self._held_groups.get(group)
        if keys is not None:
            _remove_sorted(keys, key)
            if not keys:
                del self._held_groups[group]

    def _rebuild_holding_index(self) -> None:
        self._held_seq = 0
        self._held_keys = {}
        self._held_groups = {}
        for tid, held in self.holding.items():
            self._held_seq += 1
            rank = priority_rank(held.ticket.priority)
            key = (rank, held.ticket.created_at, self._held_seq, tid)
            self._held_keys[tid] = key
            self._held_groups.setdefault(_group(held.ticket), []).append(key)
        self._held_order = sorted(self._held_keys.values())
        for keys in self._held_groups.values():
            keys.sort()

    # -- agents -------------------------------------------------------------------------

    def upsert_agent(self, agent: Agent, *, version: int, at: datetime) -> list[RoutingDecision]:
        """Add or update an agent; new capacity may let held tickets through."""
        current = self.agents.get(agent.id)
        if current is not None and current.version > agent.version:
            return []
        out = self._shift_starts(at=at, trigger_version=version)
        self.agents[agent.id] = agent
        if self.holding and self.policy.respect_shifts and agent.status == "online":
            start = agent.next_shift_start(at)
            if start is not None and (self.shift_check is None or start < self.shift_check):
                self.shift_check = start
        self.load.setdefault(agent.id, 0)
        came_online = agent.status == "online" and (current is None or current.status != "online")
        if came_online and self.load[agent.id] == 0:
            self.idle_since[agent.id] = at
        return out + self._drain_holding(trigger_version=version, at=at)

    def remove_agent(self, agent_id: int) -> None:
        """Forget an agent (deleted or moved to another team). Its tickets keep their owner."""
        self.agents.pop(agent_id, None)
        self.idle_since.pop(agent_id, None)

    # -- tickets ------------------------------------------------------------------------

    def on_ticket(self, et: RoutingRequest, *, at: datetime) -> list[RoutingDecision]:
        """React to a ticket change: release, respect a manual assignment, or route."""
        tid = et.ticket_id
        caught_up = self._shift_starts(at=at, trigger_version=et.version)
        if caught_up:
            return caught_up + self.on_ticket(et, at=at)
        if et.op == "d" or not et.is_open:
            return self._release(et, at=at)

        finisher = self.completed.get(tid)
        if finisher is not None:
            if et.assigned_agent_id in (None, finisher):
                return []  # the work was done; an update does not book the agent again
            del self.completed[tid]  # handed to someone else: route it as new work

        if tid in self.holding:
            self._hold(et, self.holding[tid].since)

        solver = self.recently_solved.pop(tid, None)
        if solver is not None:
            # A solved ticket came back: the solution did not hold.
            outcome = self._outcome(et, solver, at=at)
            self.ranker.learn(
                RoutingOutcome(**{**outcome.__dict__, "reopened": True, "resolution_seconds": None})
            )

        current = self.assignments.get(tid)
        if current is not None:
            self._account_pause(tid, current, waiting=et.status in PAUSED_STATUSES, at=at)
            self.work[tid] = et
        manual = et.assigned_agent_id
        if manual is not None and manual != current:
            # Someone assigned the ticket in the helpdesk (or the ticket arrived assigned):
            # honour it and account for the load.
            self._move(tid, manual, at=at)
            self.work[tid] = et
            self._unhold(tid)
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
        was_held = self._unhold(tid)
        agent_id = self.assignments.pop(tid, None)
        self.work.pop(tid, None)
        self.completed.pop(tid, None)
        was_paused = tid in self.paused
        self.paused.discard(tid)
        if agent_id is None and not was_held:
            self.last_version.pop(tid, None)
            return []
        if agent_id is not None:
            if not was_paused:
                self._unload(agent_id, at)
            if et.status == "solved" and et.op != "d":
                self.ranker.learn(self._outcome(et, agent_id, at=at))
                self.recently_solved[tid] = agent_id
                if len(self.recently_solved) > self.recently_solved_cap:
                    del self.recently_solved[next(iter(self.recently_solved))]
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

    @staticmethod
    def _outcome(et: RoutingRequest, agent_id: int, *, at: datetime) -> RoutingOutcome:
        def seconds(end: datetime | None) -> float | None:
            return None if end is None else max(0.0, (end - et.created_at).total_seconds())

        return RoutingOutcome(
            ticket_id=et.ticket_id,
            agent_id=agent_id,
            category=et.category,
            language=et.language,
            priority=et.priority,
            customer_tier=et.customer_tier,
            resolution_seconds=seconds(et.solved_at),
            first_reply_seconds=seconds(et.first_reply_at),
            csat=et.csat,
            reopened=False,
            at=at,
        )

    def complete(
        self, outcome: HandlingOutcome, *, trigger_version: int = 0
    ) -> list[RoutingDecision]:
        """A work item is done: free its agent, teach the ranker, route held items.

        The item's assignment (or its place in the holding list) ends with a ``released``
        decision (whoever held it; the outcome says the work is finished), and later updates
        of the item while it stays open do not book an agent again. The ranker learns
        ``outcome.seconds`` through its ``learn_handling`` method when it has one (rankers
        that do not learn ignore it); an outcome without a work type takes the routed
        item's category. An item the router does not know only teaches the ranker.
        """
        out = self._shift_starts(at=outcome.at, trigger_version=trigger_version)
        tid = outcome.item_id
        agent_id = self.assignments.pop(tid, None)
        request = self.work.pop(tid, None)
        held = self.holding.get(tid)
        if held is not None:
            # Handled outside routing while it waited: it no longer waits.
            self._unhold(tid)
            request = held.ticket
        if agent_id is not None and tid not in self.paused:
            self._unload(agent_id, outcome.at)
        self.paused.discard(tid)
        if agent_id is not None:
            self.completed[tid] = outcome.agent_id
            if len(self.completed) > self.recently_solved_cap:
                del self.completed[next(iter(self.completed))]
        if request is not None:
            version = max(trigger_version, self.last_version.get(tid, 0) + 1)
            out.append(
                self._decision(
                    replace(request, committed_at=outcome.at),
                    status="released",
                    agent_id=agent_id,
                    score=0.0,
                    confidence=1.0,
                    reasons=(f"work done by agent {outcome.agent_id} in {outcome.seconds:.0f} s",),
                    at=outcome.at,
                    version=version,
                )
            )
        self.last_version.pop(tid, None)
        work_type = outcome.work_type or (request.category if request is not None else "")
        learn = getattr(self.ranker, "learn_handling", None)
        if learn is not None and work_type:
            learn(replace(outcome, work_type=work_type))
        return out + self._drain_holding(trigger_version=trigger_version, at=outcome.at)

    def _next_shift_start(self, after: datetime) -> datetime | None:
        """The earliest shift start of an online agent after ``after``."""
        starts = [
            start
            for agent in self.agents.values()
            if agent.status == "online" and (start := agent.next_shift_start(after)) is not None
        ]
        return min(starts, default=None)

    def _shift_starts(self, *, at: datetime, trigger_version: int) -> list[RoutingDecision]:
        """Route held tickets as of each agent shift start that passed before ``at``.

        Routing stays event-driven: the queue's next event (a ticket, an agent change, an
        outcome) first catches up on the starts it passed, each at the start's own time,
        so a replay of the same events decides the same.
        """
        due = self.shift_check
        if due is None or due > at or not self.policy.respect_shifts:
            return []
        out: list[RoutingDecision] = []
        for _ in range(_MAX_SHIFT_STEPS):
            if due is None or due > at:
                break
            out += self._drain_holding(trigger_version=trigger_version, at=due)
            due = self._next_shift_start(due) if self.holding else None
        else:
            due = self._next_shift_start(at) if self.holding else None
        self.shift_check = due
        return out

    def _unload(self, agent_id: int, at: datetime) -> None:
        """One counted item less for the agent; an agent left with none is idle from ``at``."""
        left = max(0, self.load.get(agent_id, 0) - 1)
        self.load[agent_id] = left
        if left == 0:
            self.idle_since[agent_id] = at

    def _account_pause(self, ticket_id: int, agent_id: int, *, waiting: bool, at: datetime) -> None:
        if waiting and ticket_id not in self.paused:
            self.paused.add(ticket_id)
            self._unload(agent_id, at)
        elif not waiting and ticket_id in self.paused:
            self.paused.discard(ticket_id)
            self.load[agent_id] = self.load.get(agent_id, 0) + 1

    def _move(self, ticket_id: int, agent_id: int, *, at: datetime) -> None:
        previous = self.assignments.get(ticket_id)
        counted = ticket_id not in self.paused
        if previous is not None and counted:
            self._unload(previous, at)
        self.assignments[ticket_id] = agent_id
        if counted:
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
            elif et.queue != self.queue and not agent.serves(et.queue):
                why = f"does not serve {et.queue}"
            elif self.policy.require_language and et.language not in agent.languages:
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
            self._hold(et, at)
            reasons = (
                ("no eligible agent", *rejected[:3]) if self.agents else ("queue has no agents",)
            )
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

        ranked = self.ranker.rank(et, candidates, self.load, at=at)
        best = ranked[0]
        reasons = best.reasons
        if self.policy.prefer_longest_idle:
            best = self._longest_idle(ranked)
            if best.agent.id in self.idle_since and self.load.get(best.agent.id, 0) == 0:
                idle = (at - self.idle_since[best.agent.id]).total_seconds()
                reasons = (*best.reasons, f"idle {idle:.0f} s")
            else:
                reasons = best.reasons
        self._move(et.ticket_id, best.agent.id, at=at)
        self.work[et.ticket_id] = et
        reasons = (*reasons, f"speaks {et.language}", f"tier {et.customer_tier}")
        return self._decision(
            et,
            status="assigned",
            agent_id=best.agent.id,
            score=best.score,
            confidence=best.confidence,
            reasons=reasons,
            at=at,
            version=version,
            candidates=len(candidates),
        )

    def _longest_idle(self, ranked: Sequence[RankedAgent]) -> RankedAgent:
        """Among the agents tied with the ranker's best score, the one idle longest.

        Busy agents (load above 0) and agents never seen idle come after idle ones; among
        them the ranker's order stands (``min`` keeps the first of equals).
        """
        top = ranked[0].score
        tied = [r for r in ranked if abs(r.score - top) <= 1e-9]
        never = datetime.max.replace(tzinfo=UTC)

        def since(r: RankedAgent) -> datetime:
            if self.load.get(r.agent.id, 0) > 0:
                return never
            return self.idle_since.get(r.agent.id, never)

        return min(tied, key=since)

    def _drain_holding(self, *, trigger_version: int, at: datetime) -> list[RoutingDecision]:
        """Route held tickets, most urgent and oldest first, while someone can take them.

        Held tickets are grouped by what decides who may take them (queue, language,
        category): each step checks the first ticket of every group against the agents
        with room and routes the most urgent, oldest of those some agent suits. A release
        costs one check per group, not the whole list times every agent, and the walk
        stops once nobody has room.
        """
        if not self.holding:
            return []
        free = self._free_agents(at)
        if not free:
            return []
        if len(self._held_keys) != len(self.holding):
            self._rebuild_holding_index()
        out: list[RoutingDecision] = []
        while free and self._held_groups:
            best: _HeldKey | None = None
            for keys in self._held_groups.values():
                head = keys[0]
                if best is not None and head >= best:
                    continue
                if any(self._suits(agent, self.holding[head[3]].ticket) for agent in free):
                    best = head
            if best is None:
                break
            et = self.holding[best[3]].ticket
            self._unhold(et.ticket_id)
            # The decision must supersede the ticket's earlier "queued" decision in stores
            # that keep the newest version, even if the trigger's LSN is older.
            version = max(trigger_version, self.last_version.get(et.ticket_id, 0) + 1)
            decision = self._route(et, at=at, version=version)
            out.append(decision)
            if decision.status != "assigned":
                break  # cannot happen while _suits and eligible agree; never loop on it
            free = [a for a in free if self.load.get(a.id, 0) < a.capacity]
        return out

    def _free_agents(self, at: datetime) -> list[Agent]:
        """Agents that could take one more ticket now, whatever the ticket."""
        return [
            a
            for a in self.agents.values()
            if a.status == "online"
            and not (self.policy.respect_shifts and not a.on_shift(at))
            and self.load.get(a.id, 0) < a.capacity
        ]

    def _suits(self, agent: Agent, et: RoutingRequest) -> bool:
        """The ticket-dependent half of :meth:`eligible` (language and skill)."""
        return (
            (et.queue == self.queue or agent.serves(et.queue))
            and (not self.policy.require_language or et.language in agent.languages)
            and agent.skills.get(et.category, 0.0) >= self.policy.min_skill
        )

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
            queue=et.queue or self.queue,
            status=status,  # type: ignore[arg-type]
            agent_id=agent_id,
            score=score,
            confidence=confidence,
            reasons=reasons,
            priority=et.priority,
            sla_deadline=et.sla_deadline or self.policy.sla_deadline(et.created_at, et.priority),
            model_version=self.ranker.version,
            decided_at=datetime.now(UTC),
            source_committed_at=et.committed_at,
            candidates=candidates,
        )
