"""Replay a contact centre's own call history through the router under several policies.

``triage simulate routing --calls FILE`` reads a CSV of real calls (``arrival`` ISO-8601,
``type``, ``agent``, ``handling_seconds``, optional ``queue``) and replays the arrivals in
simulated time, once per policy, through :class:`models.routing.QueueRouter`:

* **Agents** are those seen in the file, ``capacity`` calls at a time each (default 1).
* **Roster**: on each UTC day an agent is available from the arrival of the first call
  they really handled that day to the end of the last one (its arrival plus its real
  handling time). Outside those windows they take no new call; a call in progress at the
  end of a window is finished, and an agent whose window ends while calls they could take
  are waiting stays on (checked every minute) until none is left, so every call is served.
* **Queue**: calls wait first come, first served while nobody is free. With a ``queue``
  column an agent only takes calls of queues they served in the file: the router serves
  them as one pool (``Agent.queues``), so an agent's one load covers all their queues.
* **Handling time** of a call given to an agent is drawn from the agent's real handling
  times for that call type when the file has at least :data:`MIN_PAIR_CALLS` of them;
  otherwise from all the agent's real calls, each rescaled to the type by the ratio of
  the two types' mean handling times (a 300 s call of a type averaging 200 s counts as
  450 s for a type averaging 300 s). Only the type's own times are left for an agent with
  no calls, which cannot happen for agents taken from the file. The draw's generator is
  seeded by (seed, call, agent), so two policies that give a call to the same agent see the
  same handling time, and a run replays exactly.
* **Outcomes** go back to the router as handling seconds through
  :meth:`models.routing.QueueRouter.complete`, as soon as a call ends.

Policies: ``least_loaded`` (the project's default ranker; at capacity 1 a fixed order by
agent), ``longest_idle`` (least-loaded, ties to the agent idle longest), ``learned``
(expected handling seconds per agent and type, shrunk, Thompson sampling:
:class:`models.affinity.ExpectedTimeRanker`), ``affinity`` (the helpdesk's log-speed
:class:`models.affinity.LearnedRanker`, for comparison) and ``oracle`` (told every
agent × type mean of the distribution the simulator draws from). All but least-loaded break
score ties by longest idle.

The router's agent and item ids are integers: agent ids from the file (strings) are mapped
to 1..n in sorted order, calls to their place in arrival order.

Metrics per policy: mean handling time, mean and p90 wait, calls served (and calls left
waiting when the last roster window closed), capacity violations (counted apart from the
router's own load; must be 0), gain in mean handling time against least-loaded and the
share of the oracle's gain reached.

Kept as one module: the CSV reader, the roster rule, the handling-time draw and
the replay loop define one simulation, and the synthetic history writer produces its input
shape.
"""

from __future__ import annotations

import csv
import heapq
import itertools
import math
import random
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rich.progress import Progress
from rich.table import Table

from models.affinity import AffinityModel, ExpectedTimeRanker, HandlingTimeModel, LearnedRanker
from models.helpdesk import Agent, RoutingDecision
from models.routing import (
    AgentRanker,
    HandlingOutcome,
    LeastLoadedRanker,
    OracleRanker,
    QueueRouter,
    RoutingPolicy,
    RoutingRequest,
)

REQUIRED_COLUMNS: tuple[str, ...] = ("arrival", "type", "agent", "handling_seconds")
POLICIES: tuple[str, ...] = ("least_loaded", "longest_idle", "learned", "affinity", "oracle")
MIN_PAIR_CALLS = 3
"""Own calls of a type an agent needs before their handling times are drawn from those alone."""
MIN_ORACLE_GAIN = 0.01
"""Below this oracle gain over least-loaded, shares of the oracle's gain are not reported."""
ALL_QUEUES = "*"
_QUEUE = "calls"
# Same-instant events: calls that end free their agent before an agent joins, both before a
# call arriving then is routed, and an agent leaves last.
_DONE, _ONLINE, _ARRIVE, _OFFLINE = 0, 1, 2, 3
_OVERTIME_CHECK = 60.0  # seconds between an agent's checks for waiting calls past the roster


class CallsFileError(ValueError):
    """The calls file is missing, lacks a column or has a row that cannot be read."""


@dataclass(frozen=True)
class Call:
    """One real call: when it arrived, its type, who handled it and for how long."""

    index: int  # place in arrival order
    line: int  # line in the file, for messages
    arrival: datetime
    work_type: str
    agent: str
    handling_seconds: float
    queue: str = ALL_QUEUES


def _parse_arrival(value: str, line: int) -> datetime:
    try:
        at = datetime.fromisoformat(value.strip())
    except ValueError as exc:
        raise CallsFileError(
            f"line {line}: arrival {value!r} is not an ISO-8601 timestamp "
            "(e.g. 2024-03-04T09:15:00Z)"
        ) from exc
    # Timestamps without an offset are taken as UTC.
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def _parse_seconds(value: str, line: int) -> float:
    try:
        seconds = float(value)
    except ValueError as exc:
        raise CallsFileError(f"line {line}: handling_seconds {value!r} is not a number") from exc
    if not math.isfinite(seconds) or seconds < 0:
        raise CallsFileError(f"line {line}: handling_seconds {value!r} must be 0 or more")
    return seconds


def parse_calls(rows: Iterable[dict[str, str | None]], *, first_line: int = 2) -> list[Call]:
    """Validate CSV rows (dicts by column) into calls sorted by arrival (stable)."""
    parsed: list[Call] = []
    for line, row in enumerate(rows, start=first_line):
        if None in row:
            raise CallsFileError(f"line {line}: more fields than columns in the header")
        values = {k: (v or "").strip() for k, v in row.items() if k is not None}
        for column in ("type", "agent"):
            if not values.get(column):
                raise CallsFileError(f"line {line}: column {column!r} is empty")
        parsed.append(
            Call(
                index=0,
                line=line,
                arrival=_parse_arrival(values.get("arrival", ""), line),
                work_type=values["type"],
                agent=values["agent"],
                handling_seconds=_parse_seconds(values.get("handling_seconds", ""), line),
                queue=values.get("queue") or ALL_QUEUES,
            )
        )
    parsed.sort(key=lambda c: c.arrival)
    return [
        Call(i, c.line, c.arrival, c.work_type, c.agent, c.handling_seconds, c.queue)
        for i, c in enumerate(parsed)
    ]


def read_calls(path: Path) -> list[Call]:
    """Read and validate a calls CSV; errors name the file, the column or the line."""
    if not path.is_file():
        raise CallsFileError(f"calls file not found: {path}")
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        header = [h.strip() for h in reader.fieldnames or []]
        if not header:
            raise CallsFileError(f"{path} is empty: expected a header {','.join(REQUIRED_COLUMNS)}")
        missing = [c for c in REQUIRED_COLUMNS if c not in header]
        if missing:
            raise CallsFileError(
                f"{path} lacks column(s) {', '.join(missing)}; found {', '.join(header)}"
            )
        reader.fieldnames = header
        calls = parse_calls(reader)
    if not calls:
        raise CallsFileError(f"{path} has a header but no calls")
    return calls


@dataclass
class CallHistory:
    """The real handling times per agent and type: the simulator's ground truth."""

    pair_times: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    agent_calls: dict[str, list[tuple[str, float]]] = field(default_factory=dict)
    type_times: dict[str, list[float]] = field(default_factory=dict)
    type_mean: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_calls(cls, calls: Sequence[Call]) -> CallHistory:
        h = cls()
        for c in calls:
            h.pair_times.setdefault((c.agent, c.work_type), []).append(c.handling_seconds)
            h.agent_calls.setdefault(c.agent, []).append((c.work_type, c.handling_seconds))
            h.type_times.setdefault(c.work_type, []).append(c.handling_seconds)
        h.type_mean = {t: statistics.fmean(v) for t, v in h.type_times.items()}
        return h

    def _rescale(self, seconds: float, from_type: str, to_type: str) -> float:
        source = self.type_mean[from_type]
        return seconds * self.type_mean[to_type] / source if source > 0 else seconds

    def draw(self, rng: random.Random, agent: str, work_type: str) -> float:
        """One handling time of the agent for the type (see the module's rule)."""
        own = self.pair_times.get((agent, work_type), [])
        if len(own) >= MIN_PAIR_CALLS:
            return rng.choice(own)
        calls = self.agent_calls.get(agent)
        if calls:
            other_type, seconds = rng.choice(calls)
            return self._rescale(seconds, other_type, work_type)
        return rng.choice(self.type_times[work_type])

    def true_mean(self, agent: str, work_type: str) -> float:
        """The mean of :meth:`draw`'s distribution: what the oracle is told."""
        own = self.pair_times.get((agent, work_type), [])
        if len(own) >= MIN_PAIR_CALLS:
            return statistics.fmean(own)
        calls = self.agent_calls.get(agent)
        if calls:
            return statistics.fmean(self._rescale(s, t, work_type) for t, s in calls)
        return self.type_mean[work_type]


def roster_windows(calls: Sequence[Call]) -> list[tuple[datetime, datetime, str]]:
    """Per agent and UTC day: from the first real call's arrival to the last call's end."""
    spans: dict[tuple[str, Any], tuple[datetime, datetime]] = {}
    for c in calls:
        key = (c.agent, c.arrival.date())
        end = c.arrival + timedelta(seconds=c.handling_seconds)
        if key in spans:
            start, last = spans[key]
            spans[key] = (min(start, c.arrival), max(last, end))
        else:
            spans[key] = (c.arrival, end)
    return sorted((start, end, agent) for (agent, _), (start, end) in spans.items())


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


class _Replay:
    """One policy's run over the calls."""

    def __init__(
        self,
        calls: Sequence[Call],
        history: CallHistory,
        windows: Sequence[tuple[datetime, datetime, str]],
        ranker: AgentRanker,
        *,
        longest_idle: bool,
        capacity: int,
        seed: int,
    ) -> None:
        self.calls = calls
        self.history = history
        self.seed = seed
        self.t0 = calls[0].arrival
        names = sorted({c.agent for c in calls})
        self.agent_id = {name: i + 1 for i, name in enumerate(names)}
        self.agent_name = {i: name for name, i in self.agent_id.items()}
        queues: dict[str, set[str]] = {}
        for c in calls:
            queues.setdefault(c.agent, set()).add(c.queue)
        types = {c.work_type: 1.0 for c in calls}
        self.agents = {
            name: Agent(
                id=self.agent_id[name],
                name=name,
                team=_QUEUE,
                skills=types,
                languages=(),
                capacity=capacity,
                status="offline",
                queues=tuple(sorted(queues[name])),
            )
            for name in names
        }
        self.router = QueueRouter(
            queue=_QUEUE,
            policy=RoutingPolicy(
                respect_shifts=False, require_language=False, prefer_longest_idle=longest_idle
            ),
            ranker=ranker,
        )
        self.versions = itertools.count(1)
        for agent in self.agents.values():
            self.router.upsert_agent(agent, version=next(self.versions), at=self.t0)
        self.busy: dict[int, int] = dict.fromkeys(self.agent_name, 0)
        self.online: set[int] = set()
        self.violations = 0
        self.off_roster = 0
        self.waits: dict[int, float] = {}
        self.handling: dict[int, float] = {}
        self.assigned_to: dict[int, int] = {}
        self.seq = itertools.count()
        self.events: list[tuple[float, int, int, int]] = []
        for c in calls:
            self._push(c.arrival, _ARRIVE, c.index)
        for start, end, name in windows:
            self._push(start, _ONLINE, self.agent_id[name])
            self._push(end, _OFFLINE, self.agent_id[name])

    def _push(self, at: datetime | float, kind: int, ref: int) -> None:
        t = at if isinstance(at, float) else (at - self.t0).total_seconds()
        heapq.heappush(self.events, (t, kind, next(self.seq), ref))

    def run(self, tick: Callable[[], None] | None = None) -> None:
        while self.events:
            t, kind, _, ref = heapq.heappop(self.events)
            at = self.t0 + timedelta(seconds=t)
            version = next(self.versions)
            if kind == _ARRIVE:
                call = self.calls[ref]
                request = RoutingRequest(
                    ticket_id=call.index + 1,
                    version=version,
                    queue=call.queue,
                    op="c",
                    status="new",
                    assigned_agent_id=None,
                    language="",
                    category=call.work_type,
                    priority="normal",
                    customer_tier="standard",
                    created_at=call.arrival,
                    committed_at=at,
                )
                self._apply(self.router.on_ticket(request, at=at), t)
                if tick is not None:
                    tick()
            elif kind == _DONE:
                call = self.calls[ref]
                agent_id = self.assigned_to[call.index]
                self.busy[agent_id] -= 1
                outcome = HandlingOutcome(
                    item_id=call.index + 1,
                    agent_id=agent_id,
                    work_type=call.work_type,
                    seconds=self.handling[call.index],
                    at=at,
                )
                self._apply(self.router.complete(outcome, trigger_version=version), t)
            else:
                name = self.agent_name[ref]
                status = "online" if kind == _ONLINE else "offline"
                if status == "offline" and self._calls_wait_for(self.agents[name]):
                    # Overtime: nobody logs off while a call they could take is waiting.
                    self._push(t + _OVERTIME_CHECK, _OFFLINE, ref)
                    continue
                if status == "online":
                    self.online.add(ref)
                else:
                    self.online.discard(ref)
                agent = replace(self.agents[name], status=status)
                self.agents[name] = agent
                self._apply(self.router.upsert_agent(agent, version=version, at=at), t)

    def _calls_wait_for(self, agent: Agent) -> bool:
        return any(agent.serves(h.ticket.queue) for h in self.router.holding.values())

    def _apply(self, decisions: list[RoutingDecision], t: float) -> None:
        for d in decisions:
            if d.status != "assigned" or d.agent_id is None:
                continue
            call = self.calls[d.ticket_id - 1]
            agent_id = d.agent_id
            self.busy[agent_id] += 1
            if self.busy[agent_id] > self.agents[self.agent_name[agent_id]].capacity:
                self.violations += 1
            if agent_id not in self.online:
                self.off_roster += 1
            rng = random.Random(f"{self.seed}:{call.index}:{self.agent_name[agent_id]}")
            seconds = self.history.draw(rng, self.agent_name[agent_id], call.work_type)
            self.assigned_to[call.index] = agent_id
            self.handling[call.index] = seconds
            self.waits[call.index] = t - (call.arrival - self.t0).total_seconds()
            self._push(t + seconds, _DONE, call.index)

    def metrics(self) -> dict[str, Any]:
        handling = list(self.handling.values())
        waits = list(self.waits.values())
        return {
            "calls": len(self.calls),
            "served": len(handling),
            "unserved": len(self.calls) - len(handling),
            "mean_handling_s": round(statistics.fmean(handling), 2) if handling else None,
            "mean_wait_s": round(statistics.fmean(waits), 2) if waits else None,
            "p90_wait_s": round(_percentile(waits, 0.9), 2) if waits else None,
            "capacity_violations": self.violations,
            "assigned_off_roster": self.off_roster,
        }


def make_policy(
    name: str, *, history: CallHistory, agent_ids: dict[str, int], seed: int
) -> tuple[AgentRanker, bool]:
    """The ranker of a policy and whether ties go to the longest idle agent."""
    if name == "least_loaded":
        return LeastLoadedRanker(), False
    if name == "longest_idle":
        return LeastLoadedRanker(), True
    if name == "learned":
        return ExpectedTimeRanker(HandlingTimeModel(seed=seed)), True
    if name == "affinity":
        return LearnedRanker(AffinityModel(seed=seed)), True
    if name == "oracle":
        means = {
            (agent_ids[agent], work_type): history.true_mean(agent, work_type)
            for agent in history.agent_calls
            for work_type in history.type_times
        }
        return OracleRanker(means), True
    raise ValueError(f"unknown policy {name!r}; choose from {', '.join(POLICIES)}")


def simulate_calls(
    calls: Sequence[Call],
    *,
    policies: Sequence[str] = POLICIES,
    capacity: int = 1,
    seed: int = 7,
    warm_start: float = 0.0,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Replay ``calls`` once per policy; a JSON-serialisable comparison.

    With ``warm_start`` (a share of the calls, 0 to below 1), the earliest calls are the
    history a contact centre would warm the router with (``triage routing warm-start``):
    the learning policies learn their real agents and handling times first, and every
    policy is replayed on the later calls only. The handling-time draws and the oracle
    still know the whole file.

    Example:
        >>> from datetime import UTC, datetime, timedelta
        >>> t0 = datetime(2024, 3, 4, 9, tzinfo=UTC)
        >>> rows = [Call(i, i + 2, t0 + timedelta(minutes=2 * i), "sales", "ab"[i % 2],
        ...              100.0 if i % 2 else 300.0) for i in range(40)]
        >>> r = simulate_calls(rows, policies=("least_loaded", "oracle"))
        >>> r["policies"]["oracle"]["capacity_violations"], r["policies"]["oracle"]["served"]
        (0, 40)
    """
    if not calls:
        raise ValueError("no calls to simulate")
    unknown = [p for p in policies if p not in POLICIES]
    if unknown:
        raise ValueError(f"unknown policy {unknown[0]!r}; choose from {', '.join(POLICIES)}")
    if not 0.0 <= warm_start < 1.0:
        raise ValueError(f"warm_start is a share of the calls in [0, 1), got {warm_start}")
    history = CallHistory.from_calls(calls)
    agent_ids = {name: i + 1 for i, name in enumerate(sorted(history.agent_calls))}
    split = int(len(calls) * warm_start)
    learned_from = calls[:split]
    calls = [replace(c, index=i) for i, c in enumerate(calls[split:])]
    if not calls:
        raise ValueError("no calls left to replay after the warm start")
    windows = roster_windows(calls)
    results: dict[str, Any] = {}
    for name in policies:
        ranker, longest_idle = make_policy(name, history=history, agent_ids=agent_ids, seed=seed)
        warm = getattr(ranker, "learn_handling", None)
        if warm is not None:
            for c in learned_from:
                warm(
                    HandlingOutcome(
                        0, agent_ids[c.agent], c.work_type, c.handling_seconds, c.arrival
                    )
                )
        replay = _Replay(
            calls,
            history,
            windows,
            ranker,
            longest_idle=longest_idle,
            capacity=capacity,
            seed=seed,
        )
        if progress is not None:
            task = progress.add_task(f"{name}", total=len(calls))
            counter = itertools.count(1)

            def tick(task: Any = task, counter: Any = counter) -> None:
                n = next(counter)
                if n % 500 == 0 or n == len(calls):
                    progress.update(task, completed=n)

            replay.run(tick)
        else:
            replay.run()
        results[name] = replay.metrics()
    _add_gains(results)
    real = [c.handling_seconds for c in calls]
    return {
        "calls": len(calls),
        "warm_start_calls": split,
        "agents": len(history.agent_calls),
        "types": len(history.type_times),
        "queues": len({c.queue for c in calls}),
        "days": len({c.arrival.date() for c in calls}),
        "capacity": capacity,
        "seed": seed,
        "real_mean_handling_s": round(statistics.fmean(real), 2),
        "policies": results,
    }


def _add_gains(results: dict[str, Any]) -> None:
    base = results.get("least_loaded", {}).get("mean_handling_s")
    oracle = results.get("oracle", {}).get("mean_handling_s")
    oracle_gain = 1.0 - oracle / base if base and oracle is not None else None
    if oracle_gain is not None and oracle_gain < MIN_ORACLE_GAIN:
        oracle_gain = None  # a share of (next to) nothing says nothing
    for metrics in results.values():
        mean = metrics["mean_handling_s"]
        gain = 1.0 - mean / base if base and mean is not None else None
        metrics["gain_vs_least_loaded"] = None if gain is None else round(gain, 4)
        metrics["share_of_oracle_gain"] = (
            round(gain / oracle_gain, 4) if gain is not None and oracle_gain else None
        )


def simulate_file(path: Path, **kwargs: Any) -> dict[str, Any]:
    """:func:`simulate_calls` over a calls CSV (raises :class:`CallsFileError` on bad input)."""
    result = simulate_calls(read_calls(path), **kwargs)
    return {"calls_file": str(path), **result}


def render_table(result: dict[str, Any]) -> Table:
    """A rich table of one :func:`simulate_calls` result, one row per policy."""
    table = Table(
        title=(
            f"Routing replay: {result['calls']} calls"
            + (
                f" after {result['warm_start_calls']} learned as history"
                if result.get("warm_start_calls")
                else ""
            )
            + f", {result['agents']} agents, "
            f"{result['types']} types, {result['days']} days, capacity {result['capacity']}, "
            f"seed {result['seed']}"
        ),
        caption=(
            "handle, wait: means in seconds; viol.: capacity violations; gain: mean "
            "handling against least_loaded; oracle: share of the oracle's gain. Real mean "
            f"handling in the file: {result['real_mean_handling_s']:.1f} s"
        ),
    )
    # Short headers: the table fits an 80-column terminal without truncating them.
    columns = (
        ("mean_handling_s", "handle"),
        ("mean_wait_s", "wait"),
        ("p90_wait_s", "p90 wait"),
        ("served", "calls"),
        ("capacity_violations", "viol."),
        ("gain_vs_least_loaded", "gain"),
        ("share_of_oracle_gain", "oracle"),
    )
    table.add_column("policy", no_wrap=True)
    for _, header in columns:
        table.add_column(header, justify="right")
    for name, m in result["policies"].items():
        row = [name]
        for key, _ in columns:
            value = m.get(key)
            if value is None:
                row.append("-")
            elif key in ("gain_vs_least_loaded", "share_of_oracle_gain"):
                row.append(f"{value:+.1%}" if key == "gain_vs_least_loaded" else f"{value:.0%}")
            elif key == "served" and m.get("unserved"):
                row.append(f"{value} ({m['unserved']} unserved)")
            else:
                row.append(f"{value:,.1f}" if isinstance(value, float) else str(value))
        table.add_row(*row)
    return table


def generate_calls(
    path: Path,
    *,
    agents: int = 30,
    types: int = 6,
    days: int = 10,
    seed: int = 1,
    speed_spread: float = 0.35,
    pair_spread: float = 0.25,
    handling_sigma: float = 0.8,
    sigma_spread: float = 0.0,
    occupancy: float = 0.8,
) -> int:
    """Write a synthetic call history in the simulator's CSV shape; returns the call count.

    Each agent has a speed (log-normal, ``speed_spread``) and a factor per type
    (``pair_spread``); handling times are log-normal around type mean × speed × factor with
    shape ``handling_sigma`` (heavy-tailed), or per agent ``handling_sigma`` times a
    log-normal factor of spread ``sigma_spread``, so that some agents have heavier tails
    than others at the same mean (the mean is kept, the median moves). Half the agents
    work 08-16 UTC and half 12-20; calls arrive as a Poisson stream sized to keep about
    ``occupancy`` of the agents on shift busy, and each is handled by a random free agent
    on shift (or the first to free up), as an unassisted queue would do.
    """
    rng = random.Random(seed)
    type_names = [f"type{t + 1}" for t in range(types)]
    type_mean = {t: rng.uniform(120.0, 600.0) for t in type_names}
    weights = [rng.uniform(0.5, 2.0) for _ in type_names]
    names = [f"agent-{a + 1:03d}" for a in range(agents)]
    speed = {a: math.exp(rng.gauss(0.0, speed_spread)) for a in names}
    factor = {(a, t): math.exp(rng.gauss(0.0, pair_spread)) for a in names for t in type_names}
    shift = {a: (8, 16) if i % 2 == 0 else (12, 20) for i, a in enumerate(names)}
    sigma = {a: handling_sigma * math.exp(rng.gauss(0.0, sigma_spread)) for a in names}
    overall = sum(w * type_mean[t] for w, t in zip(weights, type_names, strict=True)) / sum(weights)
    start = datetime(2024, 3, 4, tzinfo=UTC)
    free_at: dict[str, datetime] = dict.fromkeys(names, start)
    rows: list[tuple[str, str, str, float]] = []
    for day in range(days):
        t = start + timedelta(days=day, hours=8)
        end = start + timedelta(days=day, hours=20)
        while True:
            on = [a for a in names if shift[a][0] <= t.hour < shift[a][1]]
            rate = occupancy * len(on) / overall  # calls per second
            t += timedelta(seconds=rng.expovariate(rate))
            if t >= end:
                break
            on = [a for a in names if shift[a][0] <= t.hour < shift[a][1]]
            work_type = rng.choices(type_names, weights)[0]
            free = [a for a in on if free_at[a] <= t]
            agent = rng.choice(free) if free else min(on, key=lambda a: free_at[a])
            mean = type_mean[work_type] * speed[agent] * factor[(agent, work_type)]
            # exp(sigma^2 / 2) is the log-normal's mean over its median: keep the mean.
            s = sigma[agent]
            seconds = round(mean * math.exp(rng.gauss(0.0, s) - s * s / 2.0), 1)
            free_at[agent] = max(t, free_at[agent]) + timedelta(seconds=seconds)
            rows.append((t.isoformat().replace("+00:00", "Z"), work_type, agent, seconds))
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(REQUIRED_COLUMNS)
        writer.writerows(rows)
    return len(rows)


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m evaluation.simulation OUT.csv [--agents N --days N --seed N]``."""
    import argparse

    parser = argparse.ArgumentParser(description="Write a synthetic call history CSV.")
    parser.add_argument("out", type=Path)
    parser.add_argument("--agents", type=int, default=30)
    parser.add_argument("--types", type=int, default=6)
    parser.add_argument("--days", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--speed-spread", type=float, default=0.35)
    parser.add_argument("--handling-sigma", type=float, default=0.8)
    parser.add_argument("--sigma-spread", type=float, default=0.0)
    args = parser.parse_args(argv)
    n = generate_calls(
        args.out,
        agents=args.agents,
        types=args.types,
        days=args.days,
        seed=args.seed,
        speed_spread=args.speed_spread,
        handling_sigma=args.handling_sigma,
        sigma_spread=args.sigma_spread,
    )
    print(f"wrote {n} calls to {args.out}")


if __name__ == "__main__":
    main()
