"""Offline evaluation of agent rankers on the synthetic workload, without any database.

A discrete-event simulation in simulated time (no wall clock): agents and tickets come
from :mod:`evaluation.workload` with fixed seeds, so every agent's true skill per category
and every ticket's true category are known. Each queue (team) has its own
:class:`models.routing.QueueRouter`, with the production eligibility rules (shift at the
simulated time, language, minimum skill, capacity) and a holding list. The simulation:

* feeds each arriving ticket to its queue's router (category = the true category,
  priority from :func:`models.priority.score_priority` on the ticket's text and tier);
* works every assignment: first reply after an exponential delay (mean
  ``first_reply_minutes``), solve after a further :func:`evaluation.workload.
  draw_service_seconds` for the agent's TRUE skill in the ticket's TRUE category. Agents
  work their tickets in parallel, as the live agent simulator does;
* sends the solve back to the router as a ticket update (capacity frees, held tickets are
  routed, the ranker learns), with a CSAT that falls with handling time (the generator's
  rule) and, sometimes, a reopen hours later. Reopen odds grow as skill falls
  (``reopen_probability`` at skill 0.85). A reopened ticket comes back unassigned, so the
  router places it again within capacity; the rework takes half a fresh service time;
* raises an agent update at each shift start, as a helpdesk does when an agent comes
  online, which is what lets the router hand held tickets to the new shift.

Fairness: every random draw of a lifecycle comes from a generator seeded by (seed,
ticket, agent, attempt), so two rankers that give a ticket to the same agent see the same
handling; arrivals are identical across rankers.

Rankers: ``round_robin``, ``least_loaded`` (the default), ``longest_idle`` (least-loaded,
ties to the agent idle longest), ``learned`` (the helpdesk's affinity ranker), and
``oracle``, told every agent's true mean service time per category (from the true skill):
the fastest eligible agent with room first. ``expected_time`` (the expected-handling-time
ranker of :mod:`models.affinity`) can be asked for by name.

Metrics per ranker: resolution time (arrival → first solve, waiting included), its p90,
wait (arrival → first assignment), first-reply SLA compliance (first reply within
:data:`models.routing.DEFAULT_FIRST_REPLY_TARGETS` for the ticket's priority), reopen
rate, mean CSAT, and capacity violations (an assignment that left an agent with more open
tickets than their capacity; counted independently of the router's own load, must be 0).

Kept as one module: the scenarios, the replay loop and the report share the
generated workload and its known skills.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from rich.table import Table

from evaluation.workload import (
    AgentSpec,
    TicketSpec,
    WorkloadConfig,
    draw_service_seconds,
    mean_service_seconds,
    plan_agents,
    plan_customers,
    plan_tickets,
)
from models.affinity import (
    AffinityModel,
    ExpectedTimeRanker,
    HandlingTimeModel,
    LearnedRanker,
    RoundRobinRanker,
)
from models.helpdesk import Agent, RoutingDecision
from models.priority import score_priority
from models.routing import (
    DEFAULT_FIRST_REPLY_TARGETS,
    AgentRanker,
    LeastLoadedRanker,
    OracleRanker,
    QueueRouter,
    RoutingPolicy,
    RoutingRequest,
)

RANKERS: tuple[str, ...] = ("round_robin", "least_loaded", "longest_idle", "learned", "oracle")
OPTIONAL_RANKERS: tuple[str, ...] = ("expected_time",)
LAYOUTS: tuple[str, ...] = ("teams", "pooled")
"""``teams``: one queue per team, as the pipeline keys routing state (production layout);
``pooled``: one queue holding every agent and category (a generalist helpdesk)."""
POOLED_QUEUE = "support"
GOAL_IMPROVEMENT = 0.20
"""Target: the learned ranker's mean resolution time at least 20% below least-loaded's."""

MIN_ORACLE_GAIN = 0.01
"""Below this oracle gain over least-loaded, shares of the oracle's gain are not reported."""

_REOPEN_MEAN_DELAY = 6 * 3600.0  # customers notice a failed fix hours later
_REWORK_SHARE = 0.5  # a reopened ticket needs about half a fresh service time


def make_ranker(
    name: str, *, seed: int, means: dict[tuple[int, str], float] | None = None
) -> AgentRanker:
    """A fresh ranker by name (see :data:`RANKERS`); the oracle needs the true ``means``."""
    if name == "round_robin":
        return RoundRobinRanker()
    if name in ("least_loaded", "longest_idle"):
        return LeastLoadedRanker()
    if name == "learned":
        return LearnedRanker(AffinityModel(seed=seed))
    if name == "expected_time":
        return ExpectedTimeRanker(HandlingTimeModel(seed=seed))
    if name == "oracle":
        return OracleRanker(means or {})
    raise ValueError(f"unknown ranker {name!r}; choose from {RANKERS + OPTIONAL_RANKERS}")


def _agent(spec: AgentSpec) -> Agent:
    return Agent(
        id=spec.index + 1,
        name=spec.name,
        team=spec.team,
        skills=dict(spec.skills),
        languages=spec.languages,
        capacity=spec.capacity,
        status=spec.status,
        shift_start=spec.shift_start,
        shift_end=spec.shift_end,
        version=1,
    )


@dataclass
class _Ticket:
    spec: TicketSpec
    id: int
    queue: str
    priority: str
    tier: str
    created: float  # simulated seconds since the start
    version: int = 0
    agent_id: int | None = None
    attempt: int = 0
    first_assigned: float | None = None
    first_reply: float | None = None
    first_solved: float | None = None
    csat: int | None = None
    reopened: bool = False


@dataclass(frozen=True)
class _Plan:
    """What one agent does with one assignment, in seconds after the assignment."""

    first_reply: float
    solve: float
    csat: int
    reopen_after: float | None


def plan_assignment(
    cfg: WorkloadConfig, *, ticket_id: int, agent_id: int, attempt: int, skill: float
) -> _Plan:
    """Draw one assignment's lifecycle from its own (seed, ticket, agent, attempt) stream."""
    rng = random.Random(f"{cfg.seed}:evaluate:{ticket_id}:{agent_id}:{attempt}")
    reply = rng.expovariate(1.0 / (cfg.first_reply_minutes * 60.0))
    work = draw_service_seconds(rng, cfg, skill)
    if attempt:
        work *= _REWORK_SHARE
    solve = reply + work
    reference = (cfg.first_reply_minutes + cfg.service_minutes) * 60.0
    # CSAT falls with handling time relative to the reference, as in the live generator.
    csat = int(min(5, max(1, round(5.2 - 1.4 * solve / reference + rng.gauss(0.0, 0.6)))))
    clamped = min(max(skill, 0.0), 1.0)
    reopen_p = cfg.reopen_probability * (1.6 - clamped) / (1.6 - 0.85)
    reopen_after = None
    if attempt == 0 and rng.random() < reopen_p:
        reopen_after = solve + rng.expovariate(1.0 / _REOPEN_MEAN_DELAY)
    return _Plan(first_reply=reply, solve=solve, csat=csat, reopen_after=reopen_after)


class _Simulation:
    """One run of one ranker over a fixed workload."""

    def __init__(
        self,
        cfg: WorkloadConfig,
        agents: Sequence[Agent],
        tickets: Sequence[_Ticket],
        ranker_factory: Callable[[str], AgentRanker],
        *,
        policy: RoutingPolicy,
        pooled: bool,
    ) -> None:
        self.cfg = cfg
        self.start = cfg.sim_start
        self.policy = policy
        self.agents = {a.id: a for a in agents}
        self.queue_of = {a.id: POOLED_QUEUE if pooled else a.team for a in agents}
        self.routers: dict[str, QueueRouter] = {}
        for agent in agents:
            queue = self.queue_of[agent.id]
            router = self.routers.get(queue)
            if router is None:
                router = QueueRouter(queue=queue, policy=policy, ranker=ranker_factory(queue))
                self.routers[queue] = router
            router.upsert_agent(agent, version=1, at=self.start)
        self.tickets = {t.id: t for t in tickets}
        self.open_by_agent: dict[int, int] = dict.fromkeys(self.agents, 0)
        self.violations = 0
        self.assignments = 0
        self.versions = itertools.count(2)
        self.seq = itertools.count()
        self.events: list[tuple[float, int, str, int]] = []
        for t in tickets:
            self._push(t.created, "arrive", t.id)
        horizon = max((t.created for t in tickets), default=0.0)
        self._schedule_shift_starts(horizon)

    def _push(self, at: float, kind: str, ref: int) -> None:
        heapq.heappush(self.events, (at, next(self.seq), kind, ref))

    def _schedule_shift_starts(self, horizon: float) -> None:
        # Shift starts up to two days past the last arrival: enough for the backlog to clear.
        first = self.start.replace(minute=0, second=0, microsecond=0)
        hours = int((horizon + 2 * 86400) // 3600) + 2
        starts = {a.shift_start for a in self.agents.values()}
        for h in range(hours):
            at = first + timedelta(hours=h)
            if at.hour in starts:
                self._push((at - self.start).total_seconds(), "shift", at.hour)

    def _at(self, t: float) -> datetime:
        return self.start + timedelta(seconds=t)

    def _request(self, ticket: _Ticket, t: float, *, status: str, op: str = "u") -> RoutingRequest:
        ticket.version = next(self.versions)
        solved = status == "solved"
        return RoutingRequest(
            ticket_id=ticket.id,
            version=ticket.version,
            queue=ticket.queue,
            op=op,
            status=status,
            assigned_agent_id=ticket.agent_id,
            language=ticket.spec.language,
            category=ticket.spec.category,
            priority=ticket.priority,
            customer_tier=ticket.tier,
            created_at=self._at(ticket.created),
            committed_at=self._at(t),
            first_reply_at=None if ticket.first_reply is None else self._at(ticket.first_reply),
            solved_at=self._at(t) if solved else None,
            csat=ticket.csat if solved else None,
        )

    def run(self) -> None:
        while self.events:
            t, _, kind, ref = heapq.heappop(self.events)
            if kind == "arrive":
                ticket = self.tickets[ref]
                self._apply(self._route(ticket, self._request(ticket, t, status="new", op="c")), t)
            elif kind == "solve":
                self._solve(self.tickets[ref], t)
            elif kind == "reopen":
                ticket = self.tickets[ref]
                ticket.reopened = True
                ticket.attempt += 1
                request = self._request(ticket, t, status="open")
                self._apply(self._route(ticket, request), t)
            else:  # a shift starts: its agents come online, which drains the holding lists
                self._shift_start(ref, t)

    def _route(self, ticket: _Ticket, request: RoutingRequest) -> list[RoutingDecision]:
        router = self.routers[ticket.queue]
        return router.on_ticket(request, at=request.committed_at)

    def _shift_start(self, hour: int, t: float) -> None:
        for agent in self.agents.values():
            if agent.shift_start == hour:
                router = self.routers[self.queue_of[agent.id]]
                version = next(self.versions)
                self._apply(router.upsert_agent(agent, version=version, at=self._at(t)), t)

    def _apply(self, decisions: list[RoutingDecision], t: float) -> None:
        for d in decisions:
            if d.status != "assigned" or d.agent_id is None:
                continue
            ticket = self.tickets[d.ticket_id]
            agent = self.agents[d.agent_id]
            self.assignments += 1
            ticket.agent_id = agent.id
            self.open_by_agent[agent.id] += 1
            if self.open_by_agent[agent.id] > agent.capacity:
                self.violations += 1
            if ticket.first_assigned is None:
                ticket.first_assigned = t
            plan = plan_assignment(
                self.cfg,
                ticket_id=ticket.id,
                agent_id=agent.id,
                attempt=ticket.attempt,
                skill=agent.skills.get(ticket.spec.category, 0.0),
            )
            if ticket.first_reply is None:
                ticket.first_reply = t + plan.first_reply
            ticket.csat = plan.csat
            self._push(t + plan.solve, "solve", ticket.id)
            if plan.reopen_after is not None:
                self._push(t + plan.reopen_after, "reopen", ticket.id)

    def _solve(self, ticket: _Ticket, t: float) -> None:
        assert ticket.agent_id is not None
        self.open_by_agent[ticket.agent_id] -= 1
        if ticket.first_solved is None:
            ticket.first_solved = t
        request = self._request(ticket, t, status="solved")
        ticket.agent_id = None
        self._apply(self._route(ticket, request), t)


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return math.nan
    pos = (len(ordered) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def _metrics(sim: _Simulation) -> dict[str, Any]:
    tickets = list(sim.tickets.values())
    solved = [t for t in tickets if t.first_solved is not None]
    minutes = [(t.first_solved - t.created) / 60.0 for t in solved if t.first_solved is not None]
    waits = [(t.first_assigned - t.created) / 60.0 for t in tickets if t.first_assigned is not None]
    within = [
        t.first_reply is not None
        and t.first_reply - t.created
        <= DEFAULT_FIRST_REPLY_TARGETS.get(t.priority, timedelta(hours=8)).total_seconds()
        for t in tickets
    ]
    csats = [t.csat for t in solved if t.csat is not None]
    out: dict[str, Any] = {
        "tickets": len(tickets),
        "solved": len(solved),
        # No agent of the queue speaks the language, or nobody ever had room: never placed.
        "never_assigned": sum(t.first_assigned is None for t in tickets),
        "assignments": sim.assignments,
        "mean_resolution_min": round(statistics.fmean(minutes), 2) if minutes else None,
        "p90_resolution_min": round(_percentile(minutes, 0.9), 2) if minutes else None,
        "mean_wait_min": round(statistics.fmean(waits), 2) if waits else None,
        "sla_first_reply_compliance": round(sum(within) / len(within), 4) if within else None,
        "reopen_rate": round(sum(t.reopened for t in tickets) / len(tickets), 4)
        if tickets
        else None,
        "mean_csat": round(statistics.fmean(csats), 3) if csats else None,
        "capacity_violations": sim.violations,
    }
    learners = [r.ranker for r in sim.routers.values() if isinstance(r.ranker, LearnedRanker)]
    if learners:
        out["learned_outcomes"] = sum(r.model.n_outcomes for r in learners)
        errors = [r.model.error.get() for r in learners if r.model.n_scored]
        out["prequential_mae_log_speed"] = round(statistics.fmean(errors), 4) if errors else None
    return out


def _workload(
    *,
    seed: int,
    agents: int,
    tickets: int,
    days: float,
    policy: RoutingPolicy,
    workload: Mapping[str, Any] | None = None,
) -> tuple[WorkloadConfig, list[Agent], list[_Ticket]]:
    # The generator's rate is per wall second; with its time compression this spreads
    # ``tickets`` over ``days`` simulated days (the rhythm averages 1.0 over a week).
    compression = 60.0
    rate = tickets / (days * 86400.0) * compression
    cfg = WorkloadConfig(
        seed=seed,
        agents=agents,
        tickets=tickets,
        rate=rate,
        time_compression=compression,
        **dict(workload or {}),
    )
    customers = plan_customers(cfg)
    planned: list[_Ticket] = []
    for spec in plan_tickets(cfg, tickets):
        customer = customers[spec.customer_index]
        priority = score_priority(
            subject=spec.subject,
            description=spec.description,
            tier=customer.tier,
            channel=spec.channel,
        ).priority
        planned.append(
            _Ticket(
                spec=spec,
                id=spec.seq + 1,
                queue=policy.queue_for(spec.category),
                priority=priority,
                tier=customer.tier,
                created=(spec.sim_time - cfg.sim_start).total_seconds(),
            )
        )
    return cfg, [_agent(a) for a in plan_agents(cfg)], planned


def _policy(layout: str) -> RoutingPolicy:
    if layout == "teams":
        return RoutingPolicy()
    if layout == "pooled":
        categories = RoutingPolicy().category_queues
        return RoutingPolicy(
            category_queues=dict.fromkeys(categories, POOLED_QUEUE), default_queue=POOLED_QUEUE
        )
    raise ValueError(f"unknown layout {layout!r}; choose from {LAYOUTS}")


def evaluate_routing(
    *,
    seed: int = 7,
    agents: int = 20,
    tickets: int = 4000,
    days: float = 7,
    layout: str = "teams",
    rankers: Sequence[str] = RANKERS,
    workload: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Simulate every ranker on the same seeded workload and compare them.

    Returns a JSON-serialisable dict: the scenario, metrics per ranker, the learned
    ranker's improvement in mean resolution time over least-loaded and round-robin, each
    ranker's improvement over least-loaded and the share of the oracle's gain it reaches.
    ``workload`` overrides :class:`evaluation.workload.WorkloadConfig` fields (e.g. a wider
    ``home_skill_range`` or a heavy-tailed ``service_shape``).

    Example:
        >>> r = evaluate_routing(seed=1, agents=10, tickets=200, days=1)
        >>> sorted(r["rankers"]) == sorted(RANKERS)
        True
        >>> all(m["capacity_violations"] == 0 for m in r["rankers"].values())
        True
    """
    policy = _policy(layout)
    cfg, agent_list, planned = _workload(
        seed=seed, agents=agents, tickets=tickets, days=days, policy=policy, workload=workload
    )
    queues = sorted({POOLED_QUEUE if layout == "pooled" else a.team for a in agent_list})
    means = {
        (a.id, category): mean_service_seconds(cfg, skill)
        for a in agent_list
        for category, skill in a.skills.items()
    }
    results: dict[str, Any] = {}
    for name in rankers:

        def factory(queue: str, name: str = name) -> AgentRanker:
            # Each queue's ranker gets its own seed so queues do not share a random stream.
            return make_ranker(name, seed=seed * 1000 + queues.index(queue), means=means)

        # Fresh ticket records per run; the specs (arrivals, text, truth) are shared.
        fresh = [replace(t) for t in planned]
        run_policy = replace(policy, prefer_longest_idle=name == "longest_idle")
        sim = _Simulation(
            cfg, agent_list, fresh, factory, policy=run_policy, pooled=layout == "pooled"
        )
        sim.run()
        results[name] = _metrics(sim)
    report: dict[str, Any] = {
        "seed": seed,
        "agents": agents,
        "tickets": tickets,
        "days": days,
        "layout": layout,
        "rankers": results,
    }
    learned = results.get("learned", {}).get("mean_resolution_min")
    for base in ("least_loaded", "round_robin"):
        other = results.get(base, {}).get("mean_resolution_min")
        if learned is not None and other:
            report[f"improvement_vs_{base}"] = round(1.0 - learned / other, 4)
    if "improvement_vs_least_loaded" in report:
        report["goal_met"] = report["improvement_vs_least_loaded"] >= GOAL_IMPROVEMENT
    base = results.get("least_loaded", {}).get("mean_resolution_min")
    oracle = results.get("oracle", {}).get("mean_resolution_min")
    oracle_gain = 1.0 - oracle / base if base and oracle is not None else None
    if oracle_gain is not None and oracle_gain < MIN_ORACLE_GAIN:
        oracle_gain = None  # a share of (next to) nothing says nothing
    report["oracle_improvement_vs_least_loaded"] = (
        None if oracle is None or not base else round(1.0 - oracle / base, 4)
    )
    for metrics in results.values():
        mean = metrics.get("mean_resolution_min")
        gain = 1.0 - mean / base if base and mean is not None else None
        metrics["improvement_vs_least_loaded"] = None if gain is None else round(gain, 4)
        metrics["share_of_oracle_gain"] = (
            round(gain / oracle_gain, 4) if gain is not None and oracle_gain else None
        )
    return report


def evaluate_seeds(seeds: Sequence[int] = (7, 8, 9), **kwargs: Any) -> dict[str, Any]:
    """:func:`evaluate_routing` per seed, plus mean improvements over the seeds."""
    runs = [evaluate_routing(seed=s, **kwargs) for s in seeds]
    gains = [r["improvement_vs_least_loaded"] for r in runs if "improvement_vs_least_loaded" in r]
    per_ranker: dict[str, float] = {}
    for name in runs[0]["rankers"] if runs else ():
        values = [r["rankers"][name].get("improvement_vs_least_loaded") for r in runs]
        if all(v is not None for v in values):
            per_ranker[name] = round(statistics.fmean(values), 4)
    return {
        "seeds": list(seeds),
        "runs": runs,
        "mean_improvement_vs_least_loaded": round(statistics.fmean(gains), 4) if gains else None,
        "mean_improvement_vs_least_loaded_by_ranker": per_ranker,
    }


def render_table(results: dict[str, Any]) -> Table:
    """A rich table of one :func:`evaluate_routing` result, one row per ranker."""
    table = Table(
        title=(
            f"Routing evaluation ({results['layout']} queues): seed {results['seed']}, "
            f"{results['agents']} agents, "
            f"{results['tickets']} tickets over {results['days']} days"
        )
    )
    columns = (
        ("ranker", "ranker"),
        ("solved", "solved"),
        ("mean_resolution_min", "mean res. (min)"),
        ("p90_resolution_min", "p90 res. (min)"),
        ("mean_wait_min", "mean wait (min)"),
        ("sla_first_reply_compliance", "first-reply SLA"),
        ("reopen_rate", "reopens"),
        ("mean_csat", "CSAT"),
        ("capacity_violations", "cap. violations"),
    )
    for _, header in columns:
        table.add_column(header, justify="left" if header == "ranker" else "right")
    for name, m in results["rankers"].items():
        row = [name]
        for key, _ in columns[1:]:
            value = m.get(key)
            if key in ("sla_first_reply_compliance", "reopen_rate") and value is not None:
                row.append(f"{value:.1%}")
            else:
                row.append("-" if value is None else str(value))
        table.add_row(*row)
    if "improvement_vs_least_loaded" in results:
        table.caption = (
            f"learned vs least-loaded: {results['improvement_vs_least_loaded']:+.1%} lower mean "
            f"resolution (goal {GOAL_IMPROVEMENT:.0%}); vs round-robin: "
            f"{results.get('improvement_vs_round_robin', math.nan):+.1%}"
        )
    return table


SCENARIOS: dict[str, dict[str, Any]] = {
    # The default workload: team queues, 4000 tickets in a week (demand above capacity at
    # daytime peaks, so waiting dominates and the choice of agent hardly matters).
    "teams-week": {"layout": "teams", "tickets": 4000, "days": 7},
    # The same tickets over four weeks in one pooled queue: moderate load, every agent
    # eligible for most tickets, where the choice of agent matters most.
    "pooled-4weeks": {"layout": "pooled", "tickets": 4000, "days": 28},
}

EXTRA_SCENARIOS: dict[str, dict[str, Any]] = {
    # The pooled month with skills in the own team's categories spread over 0.1-0.98
    # instead of 0.7-0.98 (service means 0.62x to 1.5x the base) and heavy-tailed service
    # times (gamma shape 0.7): room for routing to matter. Not part of `triage evaluate`.
    "pooled-4weeks-wide": {
        "layout": "pooled",
        "tickets": 4000,
        "days": 28,
        "workload": {"home_skill_range": (0.1, 0.98), "service_shape": 0.7},
    },
}


def render_seeds(name: str, summary: dict[str, Any]) -> Table:
    """Mean resolution per ranker and seed, with the learned ranker's gains."""
    table = Table(title=f"{name}: mean resolution (min) per seed")
    names = list(summary["runs"][0]["rankers"]) if summary["runs"] else list(RANKERS)
    headers = ["seed", *names, "learned vs least-loaded", "vs round-robin"]
    if "oracle" in names:
        headers.append("learned, of oracle gain")
    for header in headers:
        table.add_column(header, justify="right")
    for run in summary["runs"]:
        row = [
            str(run["seed"]),
            *(str(run["rankers"][r]["mean_resolution_min"]) for r in names),
            f"{run.get('improvement_vs_least_loaded', math.nan):+.1%}",
            f"{run.get('improvement_vs_round_robin', math.nan):+.1%}",
        ]
        if "oracle" in names:
            share = run["rankers"].get("learned", {}).get("share_of_oracle_gain")
            row.append("-" if share is None else f"{share:.0%}")
        table.add_row(*row)
    return table


def main(argv: Sequence[str] | None = None) -> None:
    """Print scenarios (default: :data:`SCENARIOS`) over seeds 7, 8 and 9, then JSON.

    ``python -m evaluation.routing pooled-4weeks-wide`` runs named scenarios, from
    :data:`SCENARIOS` or :data:`EXTRA_SCENARIOS`.
    """
    import json
    import sys

    from rich.console import Console

    names = list(sys.argv[1:] if argv is None else argv) or list(SCENARIOS)
    known = {**SCENARIOS, **EXTRA_SCENARIOS}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SystemExit(f"unknown scenario {unknown[0]!r}; choose from {', '.join(known)}")
    console = Console()
    everything: dict[str, Any] = {}
    for name in names:
        scenario = known[name]
        summary = evaluate_seeds(**scenario)
        everything[name] = summary
        console.print(render_table(summary["runs"][0]))
        console.print(render_seeds(name, summary))
    console.print_json(json.dumps(everything))


if __name__ == "__main__":
    main()
