"""Learned routing: per-agent affinity for categories and languages, and the rankers using it.

:class:`AffinityModel` learns, from the outcomes of tickets agents solved, how well each
agent handles each category (and, more weakly, each language). Its main signal is speed:
the handling time in log scale relative to the category's running median, so a category
where everything takes long does not make its agents look bad. Reopens count against the
agent and CSAT above the category's average counts for them.

Why hierarchical shrinkage rather than a regression on agent × category one-hot features:
a helpdesk sees few outcomes per (agent, category) pair and handling times are very noisy
(gamma-like, a log-variance near 0.6), so a per-pair estimate must borrow strength. The
estimate for a pair starts at the agent's overall effect (itself shrunk to the category
baseline) and moves to the pair's own mean as its outcomes accumulate, with a closed-form
posterior variance. A linear model trained by SGD needs many passes over the same few
outcomes to get there and has no variance to explore with.

Exploration is Thompson sampling from that posterior with a seeded generator: an agent
nobody has seen yet has a wide posterior and wins some tickets; the spread narrows as
evidence grows, so exploration decays on its own.

Log-speed against a median optimises a geometric mean and underweights long contacts.
Where the goal is the mean handling time itself (a contact centre at capacity 1),
:class:`HandlingTimeModel` learns expected handling seconds per agent and work type on the
arithmetic scale, shrunk toward the type's mean times the agent's overall speed, and
:class:`ExpectedTimeRanker` ranks by a Thompson draw of that expectation. It is an option;
the helpdesk default stays :class:`LearnedRanker`.

:class:`LearnedRanker`, :class:`ExpectedTimeRanker` and :class:`RoundRobinRanker` implement
:class:`models.routing.AgentRanker`; all state is plain Python, river statistics and a
``random.Random``, so the router's state pickles for recovery.

Kept as one module: the learned rankers share the agent × category statistics
and the scoring against load and SLA urgency.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from river import metrics, stats

from models.helpdesk import Agent
from models.routing import (
    HandlingOutcome,
    RankedAgent,
    RoutingOutcome,
    RoutingRequest,
    utilisation,
)

# Log-speed residuals beyond this are clipped: one ticket left open over a weekend must not
# outweigh dozens of ordinary ones.
_CLIP = 2.5
# Log-variance of a gamma(2) handling time (trigamma(2)); the noise prior until data says
# otherwise.
_PRIOR_NOISE_VAR = 0.645
# Pending assignment offsets kept for outcomes still to come (oldest dropped first).
_PENDING_CAP = 50_000

DEFAULT_PRIORITY_WEIGHTS: dict[str, float] = {
    "urgent": 2.0,
    "high": 1.5,
    "normal": 1.0,
    "low": 0.8,
}
"""How much affinity counts against load, by priority: urgent work goes to the expert."""

DEFAULT_EXPLORATION_BY_PRIORITY: dict[str, float] = {
    "urgent": 0.0,
    "high": 0.5,
    "normal": 1.0,
    "low": 1.0,
}
"""Share of the posterior spread sampled, by priority: nobody experiments on urgent tickets."""


@dataclass
class _Cell:
    """Evidence about one agent in one category (or language)."""

    speed: stats.Mean = field(default_factory=stats.Mean)
    csat: stats.Mean = field(default_factory=stats.Mean)
    solves: int = 0
    reopens: int = 0


@dataclass
class _Category:
    """Category-wide baselines the agents are compared with."""

    log_seconds: stats.Quantile = field(default_factory=lambda: stats.Quantile(0.5))
    seen: int = 0
    csat: stats.Mean = field(default_factory=stats.Mean)
    solves: int = 0
    reopens: int = 0

    def baseline(self) -> float | None:
        return self.log_seconds.get() if self.seen else None

    def reopen_rate(self) -> float:
        # A weak prior (5% over 20 solves) keeps the first reopen from looking like a trend.
        return (self.reopens + 1.0) / (self.solves + 20.0)


@dataclass(frozen=True)
class Affinity:
    """An agent's estimated affinity for a category and language, with its uncertainty.

    ``mean`` is in log-speed units relative to the category median (0 = typical, +0.2 =
    about 22% faster), adjusted for reopens and CSAT; ``std`` is the posterior spread.
    """

    agent_id: int
    category: str
    language: str
    mean: float
    std: float
    outcomes: int
    speed: float
    reopen_rate: float
    csat: float | None

    @property
    def score(self) -> float:
        """``mean`` squashed to 0..1 for display (0.5 = typical for the category)."""
        return 1.0 / (1.0 + math.exp(-self.mean / 0.25))


@dataclass
class AffinityModel:
    """Online, prequential estimate of each agent's affinity per category and language.

    Args:
        prior_strength: Pseudo-outcomes behind the prior of an (agent, category) pair,
            i.e. the noise-to-signal variance ratio; higher shrinks harder.
        agent_prior_strength: Pseudo-outcomes shrinking an agent's overall effect to 0.
        language_prior_strength: Pseudo-outcomes shrinking a language effect to 0; large,
            because language rarely changes handling speed much.
        reopen_weight: Log-speed units lost per unit of reopen rate above the category's.
        csat_weight: Log-speed units gained per CSAT point above the category's mean.
        exploration: Multiplier of the posterior spread when sampling (0 = greedy).
        seed: Seed of the sampling generator, so decisions replay identically.

    Example:
        >>> m = AffinityModel(seed=1)
        >>> for _ in range(30):
        ...     m.learn_one(agent_id=1, category="billing", language="en", seconds=1800)
        ...     m.learn_one(agent_id=2, category="billing", language="en", seconds=5400)
        >>> fast, slow = m.estimate(1, "billing", "en"), m.estimate(2, "billing", "en")
        >>> fast.mean > 0 > slow.mean and fast.outcomes == 30
        True
    """

    prior_strength: float = 8.0
    agent_prior_strength: float = 4.0
    language_prior_strength: float = 30.0
    reopen_weight: float = 2.0
    csat_weight: float = 0.1
    exploration: float = 1.0
    seed: int = 0
    n_outcomes: int = 0
    n_scored: int = 0
    cells: dict[tuple[int, str], _Cell] = field(default_factory=dict)
    agents: dict[int, stats.Mean] = field(default_factory=dict)
    languages: dict[tuple[int, str], stats.Mean] = field(default_factory=dict)
    categories: dict[str, _Category] = field(default_factory=dict)
    noise: stats.Var = field(default_factory=stats.Var)
    error: metrics.MAE = field(default_factory=metrics.MAE)
    rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    # -- learning -----------------------------------------------------------------------

    def learn_one(
        self,
        *,
        agent_id: int,
        category: str,
        language: str,
        seconds: float | None,
        csat: int | None = None,
        reopened: bool = False,
    ) -> None:
        """Learn from one outcome: a solve (``seconds`` of handling, maybe CSAT) or a reopen.

        The speed prediction is scored against the observation before learning from it
        (prequential evaluation); :attr:`error` holds the running mean absolute error.
        """
        self.n_outcomes += 1
        cell = self.cells.setdefault((agent_id, category), _Cell())
        cat = self.categories.setdefault(category, _Category())
        if reopened:
            cell.reopens += 1
            cat.reopens += 1
            return
        cell.solves += 1
        cat.solves += 1
        if csat is not None:
            cell.csat.update(float(csat))
            cat.csat.update(float(csat))
        if seconds is None or seconds <= 0:
            return
        log_seconds = math.log(seconds)
        baseline = cat.baseline()
        if baseline is not None:
            residual = max(-_CLIP, min(_CLIP, baseline - log_seconds))
            self.error.update(residual, self._speed(agent_id, category, language)[0])
            self.n_scored += 1
            cell.speed.update(residual)
            self.agents.setdefault(agent_id, stats.Mean()).update(residual)
            self.languages.setdefault((agent_id, language), stats.Mean()).update(residual)
            self.noise.update(residual)
        cat.log_seconds.update(log_seconds)
        cat.seen += 1

    # -- estimates ----------------------------------------------------------------------

    def _noise_var(self) -> float:
        # The pooled residual variance also holds the spread between agents, so it slightly
        # overstates the noise: that errs towards shrinking, which is the safe side.
        if self.noise.mean.n < 30:
            return _PRIOR_NOISE_VAR
        return max(0.05, self.noise.get())

    def _speed(self, agent_id: int, category: str, language: str) -> tuple[float, float, int]:
        """Posterior mean and variance of the log-speed residual, and the pair's evidence."""
        overall = self.agents.get(agent_id)
        agent_effect = 0.0
        if overall is not None and overall.n:
            agent_effect = overall.get() * overall.n / (overall.n + self.agent_prior_strength)
        cell = self.cells.get((agent_id, category))
        n = int(cell.speed.n) if cell is not None else 0
        k = self.prior_strength
        own = cell.speed.get() * n if cell is not None and n else 0.0
        mean = (k * agent_effect + own) / (k + n)
        lang = self.languages.get((agent_id, language))
        if lang is not None and lang.n and overall is not None:
            # Only the part of the language mean that the agent's overall mean does not
            # already explain, shrunk hard.
            weight = lang.n / (lang.n + self.language_prior_strength)
            mean += weight * (lang.get() - overall.get())
        return mean, self._noise_var() / (k + n), n

    def estimate(self, agent_id: int, category: str, language: str) -> Affinity:
        """The posterior affinity of an agent for a category and language."""
        speed, var, _ = self._speed(agent_id, category, language)
        cell = self.cells.get((agent_id, category))
        cat = self.categories.get(category)
        cat_rate = cat.reopen_rate() if cat is not None else 0.05
        solves = cell.solves if cell is not None else 0
        reopens = cell.reopens if cell is not None else 0
        k = self.prior_strength
        reopen_rate = (reopens + k * cat_rate) / (solves + k)
        csat: float | None = None
        csat_bonus = 0.0
        if cell is not None and cell.csat.n and cat is not None:
            cat_csat = cat.csat.get()
            csat = cell.csat.get()
            shrunk = (k * cat_csat + cell.csat.n * csat) / (k + cell.csat.n)
            csat_bonus = self.csat_weight * (shrunk - cat_csat)
        mean = speed - self.reopen_weight * (reopen_rate - cat_rate) + csat_bonus
        return Affinity(
            agent_id=agent_id,
            category=category,
            language=language,
            mean=mean,
            std=math.sqrt(var),
            outcomes=solves + reopens,
            speed=speed,
            reopen_rate=reopen_rate,
            csat=csat,
        )

    def sample(self, affinity: Affinity, *, scale: float = 1.0) -> float:
        """A Thompson draw of the affinity; ``scale`` 0 returns the posterior mean."""
        spread = self.exploration * scale * affinity.std
        return affinity.mean + (self.rng.gauss(0.0, spread) if spread > 0 else 0.0)


class LearnedRanker:
    """Ranks agents by sampled learned affinity, weighted by priority, minus a load penalty.

    ``score = priority_weight * affinity_weight * draw - load_weight * utilisation``, where
    ``draw`` is a Thompson sample of the agent's affinity (the posterior mean for urgent
    tickets). The router assigns the first agent returned; the ranker remembers when that
    happened, so it learns from handling time (assignment → solve) rather than time since
    creation, which would blame the agent for the time the ticket waited in the queue.

    Args:
        model: The affinity model to use and train (a fresh one when None).
        affinity_weight: Weight of the affinity draw (log-speed units).
        load_weight: Penalty per unit of utilisation (load / capacity).
        priority_weights: Affinity multiplier per priority.
        exploration_by_priority: Share of the posterior spread sampled per priority.

    Example:
        >>> from datetime import UTC, datetime
        >>> from models.helpdesk import Agent
        >>> from models.routing import RoutingRequest
        >>> at = datetime(2024, 1, 1, 9, tzinfo=UTC)
        >>> ranker = LearnedRanker(AffinityModel(seed=3))
        >>> agents = [Agent(i, f"a{i}", "billing", {"billing": 0.8}, ("en",), 5, "online")
        ...           for i in (1, 2)]
        >>> req = RoutingRequest(7, 1, "billing", "c", "new", None, "en", "billing", "urgent",
        ...                      "standard", at, at)
        >>> ranked = ranker.rank(req, agents, {1: 0, 2: 3}, at=at)
        >>> ranked[0].agent.id, ranker.version
        (1, 'affinity-0')
    """

    def __init__(
        self,
        model: AffinityModel | None = None,
        *,
        affinity_weight: float = 1.0,
        load_weight: float = 0.15,
        priority_weights: Mapping[str, float] | None = None,
        exploration_by_priority: Mapping[str, float] | None = None,
    ) -> None:
        self.model = model if model is not None else AffinityModel()
        self.affinity_weight = affinity_weight
        self.load_weight = load_weight
        self.priority_weights = dict(priority_weights or DEFAULT_PRIORITY_WEIGHTS)
        self.exploration_by_priority = dict(
            exploration_by_priority or DEFAULT_EXPLORATION_BY_PRIORITY
        )
        # ticket id -> (agent id, seconds from creation to assignment) of the last assignment
        self.pending: dict[int, tuple[int, float]] = {}

    @property
    def version(self) -> str:
        return f"affinity-{self.model.n_outcomes}"

    def rank(
        self,
        request: RoutingRequest,
        candidates: Sequence[Agent],
        load: Mapping[int, int],
        *,
        at: datetime,
    ) -> list[RankedAgent]:
        """Agents best first; remembers the first as the ticket's assignee."""
        if not candidates:
            return []
        weight = self.priority_weights.get(request.priority, 1.0) * self.affinity_weight
        explore = self.exploration_by_priority.get(request.priority, 1.0)
        scored: list[tuple[float, Agent, Affinity, float, float]] = []
        # Candidates in id order so the generator's draws, and thus decisions, replay.
        for agent in sorted(candidates, key=lambda a: a.id):
            aff = self.model.estimate(agent.id, request.category, request.language)
            draw = self.model.sample(aff, scale=explore)
            util = utilisation(agent, load)
            scored.append((weight * draw - self.load_weight * util, agent, aff, draw, util))
        scored.sort(key=lambda s: (-s[0], s[1].id))
        gap = scored[0][0] - scored[1][0] if len(scored) > 1 else math.inf
        out = [
            RankedAgent(
                agent=agent,
                score=round(score, 4),
                confidence=self._confidence(aff, gap if i == 0 else 0.0),
                reasons=self._reasons(request, agent, aff, draw, util, load),
            )
            for i, (score, agent, aff, draw, util) in enumerate(scored)
        ]
        _remember_assignment(self.pending, request, out[0].agent.id, at)
        return out

    def _confidence(self, aff: Affinity, gap: float) -> float:
        # Evidence behind the winner's estimate, times how clearly it beat the runner-up
        # relative to the posterior spread (a single candidate is a clear win).
        evidence = aff.outcomes / (aff.outcomes + self.model.prior_strength)
        separation = 1.0 if math.isinf(gap) else 1.0 - math.exp(-gap / max(aff.std, 0.05))
        return round(max(0.0, min(1.0, separation * (0.5 + 0.5 * evidence))), 4)

    def _reasons(
        self,
        request: RoutingRequest,
        agent: Agent,
        aff: Affinity,
        draw: float,
        util: float,
        load: Mapping[int, int],
    ) -> tuple[str, ...]:
        reasons = [
            f"learned affinity {request.category}: {aff.score:.2f} ({aff.outcomes} outcomes)",
            f"load {load.get(agent.id, 0)}/{agent.capacity}",
        ]
        if aff.outcomes < self.model.prior_strength and abs(draw - aff.mean) > 0.5 * aff.std:
            reasons.append("exploring: few outcomes yet")
        weight = self.priority_weights.get(request.priority, 1.0)
        if weight > 1.0:
            reasons.append(f"priority {request.priority} favours expertise")
        elif weight < 1.0:
            reasons.append(f"priority {request.priority} favours balance")
        if aff.reopen_rate >= 0.1:
            reasons.append(f"reopen rate {aff.reopen_rate:.0%}")
        if aff.csat is not None:
            reasons.append(f"csat {aff.csat:.1f}")
        if util >= 0.8:
            reasons.append("nearly full")
        return tuple(reasons)

    def learn_handling(self, outcome: HandlingOutcome) -> None:
        """Learn a handling time reported directly (no lifecycle: no CSAT, no reopen)."""
        self.pending.pop(outcome.item_id, None)
        self.model.learn_one(
            agent_id=outcome.agent_id,
            category=outcome.work_type,
            language="",
            seconds=outcome.seconds,
        )

    def learn(self, outcome: RoutingOutcome) -> None:
        """Learn speed, CSAT and reopens; handling time counts from the ranked assignment."""
        seconds = outcome.resolution_seconds
        if not outcome.reopened:
            pending = self.pending.pop(outcome.ticket_id, None)
            if seconds is not None and pending is not None and pending[0] == outcome.agent_id:
                seconds -= pending[1]
            # A ticket assigned in the helpdesk was never ranked: its time since creation
            # is the best handling time known.
        self.model.learn_one(
            agent_id=outcome.agent_id,
            category=outcome.category,
            language=outcome.language,
            seconds=seconds,
            csat=outcome.csat,
            reopened=outcome.reopened,
        )


@dataclass(frozen=True)
class HandlingEstimate:
    """Expected handling seconds of an agent for a work type, with its uncertainty.

    ``mean`` is None until the model has seen any outcome at all.
    """

    agent_id: int
    work_type: str
    mean: float | None
    std: float
    outcomes: int
    agent_speed: float


@dataclass
class HandlingTimeModel:
    """Online estimate of expected handling seconds per (agent, work type), with shrinkage.

    The estimate for a pair is ``(k * prior + n * pair_mean) / (k + n)``, where the prior is
    the type's running mean times the agent's speed ratio (its mean of observed / type mean,
    itself shrunk toward 1 with ``agent_prior_strength`` pseudo-outcomes). A pair never seen
    therefore starts at "this type, at this agent's usual pace", and a rare pair moves to its
    own mean as its outcomes accumulate. Everything is on the arithmetic scale, so the model
    targets the mean handling time, long contacts included.

    The spread used for Thompson sampling is the type's standard deviation scaled by the
    agent's speed, over ``sqrt(k + n)``: wide for unknown pairs, narrowing with evidence.

    Args:
        prior_strength: Pseudo-outcomes (``k``) behind a pair's prior.
        agent_prior_strength: Pseudo-outcomes shrinking an agent's speed ratio toward 1.
        ratio_cap: Largest observed/type-mean ratio one outcome adds to an agent's speed,
            so one contact left open over a break does not mark the agent slow for long.
        exploration: Multiplier of the spread when sampling (0 = greedy on the mean). Half
            the spread by default: on synthetic call histories at capacity 1 (see
            ``triage simulate routing``), sampling the full spread explored too much and
            greedy choices too little.
        seed: Seed of the sampling generator, so decisions replay identically.

    Example:
        >>> m = HandlingTimeModel(seed=1)
        >>> for _ in range(20):
        ...     m.learn_one(agent_id=1, work_type="billing", seconds=200.0)
        ...     m.learn_one(agent_id=2, work_type="billing", seconds=600.0)
        >>> m.learn_one(agent_id=2, work_type="refund", seconds=900.0)
        >>> round(m.estimate(1, "billing").mean), round(m.estimate(2, "billing").mean)
        (205, 602)
        >>> m.estimate(1, "refund").mean < m.estimate(2, "refund").mean  # agent 1 is faster
        True
    """

    prior_strength: float = 3.0
    agent_prior_strength: float = 5.0
    ratio_cap: float = 10.0
    exploration: float = 0.5
    seed: int = 0
    n_outcomes: int = 0
    pairs: dict[tuple[int, str], stats.Mean] = field(default_factory=dict)
    agent_ratio: dict[int, stats.Mean] = field(default_factory=dict)
    types: dict[str, stats.Var] = field(default_factory=dict)
    overall: stats.Var = field(default_factory=stats.Var)
    error: metrics.MAE = field(default_factory=metrics.MAE)
    rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def _type_mean(self, work_type: str) -> float | None:
        var = self.types.get(work_type)
        if var is not None and var.mean.n:
            return var.mean.get()
        return self.overall.mean.get() if self.overall.mean.n else None

    def _type_std(self, work_type: str, mean: float) -> float:
        var = self.types.get(work_type)
        if var is not None and var.mean.n >= 5:
            # Floored at a coefficient of variation of 0.3, so that a type whose first
            # outcomes happen to agree still leaves room to explore.
            return max(math.sqrt(max(var.get(), 0.0)), 0.3 * mean)
        # Until the type has a few outcomes: a coefficient of variation of 1, as for an
        # exponential handling time.
        return mean

    def _speed(self, agent_id: int) -> float:
        ratio = self.agent_ratio.get(agent_id)
        n = ratio.n if ratio is not None else 0.0
        k = self.agent_prior_strength
        return (k + (ratio.get() * n if ratio is not None and n else 0.0)) / (k + n)

    def learn_one(self, *, agent_id: int, work_type: str, seconds: float) -> None:
        """Learn one handling time; the prediction is scored against it first."""
        if not math.isfinite(seconds) or seconds < 0:
            return
        self.n_outcomes += 1
        before = self.estimate(agent_id, work_type).mean
        if before is not None:
            self.error.update(seconds, before)
        type_mean = self._type_mean(work_type)
        if type_mean:
            ratio = min(seconds / type_mean, self.ratio_cap)
            self.agent_ratio.setdefault(agent_id, stats.Mean()).update(ratio)
        self.pairs.setdefault((agent_id, work_type), stats.Mean()).update(seconds)
        self.types.setdefault(work_type, stats.Var()).update(seconds)
        self.overall.update(seconds)

    def estimate(self, agent_id: int, work_type: str) -> HandlingEstimate:
        """The shrunk expected handling seconds of the agent for the type."""
        speed = self._speed(agent_id)
        type_mean = self._type_mean(work_type)
        pair = self.pairs.get((agent_id, work_type))
        n = int(pair.n) if pair is not None else 0
        if type_mean is None:
            return HandlingEstimate(agent_id, work_type, None, math.inf, n, speed)
        k = self.prior_strength
        prior = type_mean * speed
        mean = (k * prior + (pair.get() * n if pair is not None and n else 0.0)) / (k + n)
        std = self._type_std(work_type, type_mean) * speed / math.sqrt(k + n)
        return HandlingEstimate(agent_id, work_type, mean, std, n, speed)

    def sample(self, estimate: HandlingEstimate, *, scale: float = 1.0) -> float | None:
        """A Thompson draw of the expected seconds (never below a tenth of the mean)."""
        if estimate.mean is None:
            return None
        spread = self.exploration * scale * estimate.std
        draw = estimate.mean + (self.rng.gauss(0.0, spread) if spread > 0 else 0.0)
        return max(draw, 0.1 * estimate.mean)


class ExpectedTimeRanker:
    """Ranks agents by a Thompson draw of their expected handling seconds (lowest first).

    ``score = -draw * (1 + load_weight * utilisation)``. At capacity 1 every candidate is
    free, so only the draw counts. Learns from :meth:`learn_handling` (the direct outcome
    input) or, in a helpdesk, from the solve of a ticket it ranked (solve time minus the
    time the ticket waited before assignment; reopens teach it nothing).

    Args:
        model: The handling-time model to use and train (a fresh one when None).
        load_weight: Relative slowdown charged per unit of utilisation.
        exploration_by_priority: Share of the spread sampled per priority.

    Example:
        >>> from datetime import UTC, datetime
        >>> from models.helpdesk import Agent
        >>> from models.routing import HandlingOutcome, RoutingRequest
        >>> at = datetime(2024, 1, 1, 9, tzinfo=UTC)
        >>> ranker = ExpectedTimeRanker(HandlingTimeModel(exploration=0.0))
        >>> for i in range(10):
        ...     ranker.learn_handling(HandlingOutcome(i, 1, "billing", 900.0, at))
        ...     ranker.learn_handling(HandlingOutcome(i, 2, "billing", 300.0, at))
        >>> agents = [Agent(i, f"a{i}", "t", {"billing": 1.0}, ("en",), 1, "online")
        ...           for i in (1, 2)]
        >>> req = RoutingRequest(99, 1, "t", "c", "new", None, "en", "billing", "normal",
        ...                      "standard", at, at)
        >>> ranker.rank(req, agents, {}, at=at)[0].agent.id
        2
    """

    def __init__(
        self,
        model: HandlingTimeModel | None = None,
        *,
        load_weight: float = 0.25,
        exploration_by_priority: Mapping[str, float] | None = None,
    ) -> None:
        self.model = model if model is not None else HandlingTimeModel()
        self.load_weight = load_weight
        self.exploration_by_priority = dict(
            exploration_by_priority or DEFAULT_EXPLORATION_BY_PRIORITY
        )
        # ticket id -> (agent id, seconds from creation to assignment) of the last assignment
        self.pending: dict[int, tuple[int, float]] = {}

    @property
    def version(self) -> str:
        return f"expected-time-{self.model.n_outcomes}"

    def rank(
        self,
        request: RoutingRequest,
        candidates: Sequence[Agent],
        load: Mapping[int, int],
        *,
        at: datetime,
    ) -> list[RankedAgent]:
        """Agents best first; remembers the first as the ticket's assignee."""
        if not candidates:
            return []
        explore = self.exploration_by_priority.get(request.priority, 1.0)
        scored: list[tuple[float, Agent, HandlingEstimate, float]] = []
        # Candidates in id order so the generator's draws, and thus decisions, replay.
        for agent in sorted(candidates, key=lambda a: a.id):
            est = self.model.estimate(agent.id, request.category)
            draw = self.model.sample(est, scale=explore)
            util = utilisation(agent, load)
            score = 0.0 if draw is None else -draw * (1.0 + self.load_weight * util)
            scored.append((score, agent, est, util))
        scored.sort(key=lambda s: (-s[0], s[1].id))
        out = [
            RankedAgent(
                agent=agent,
                score=round(score, 4),
                confidence=round(est.outcomes / (est.outcomes + self.model.prior_strength), 4),
                reasons=(
                    f"expected {request.category}: "
                    + ("unknown" if est.mean is None else f"{est.mean:.0f} s")
                    + f" ({est.outcomes} outcomes)",
                    f"load {load.get(agent.id, 0)}/{agent.capacity}",
                ),
            )
            for score, agent, est, util in scored
        ]
        _remember_assignment(self.pending, request, out[0].agent.id, at)
        return out

    def learn_handling(self, outcome: HandlingOutcome) -> None:
        """Learn a handling time reported directly."""
        self.pending.pop(outcome.item_id, None)
        self.model.learn_one(
            agent_id=outcome.agent_id, work_type=outcome.work_type, seconds=outcome.seconds
        )

    def learn(self, outcome: RoutingOutcome) -> None:
        """Learn a helpdesk solve as handling time from the ranked assignment."""
        if outcome.reopened or outcome.resolution_seconds is None:
            return
        seconds = outcome.resolution_seconds
        pending = self.pending.pop(outcome.ticket_id, None)
        if pending is not None and pending[0] == outcome.agent_id:
            seconds -= pending[1]
        self.model.learn_one(agent_id=outcome.agent_id, work_type=outcome.category, seconds=seconds)


def _remember_assignment(
    pending: dict[int, tuple[int, float]], request: RoutingRequest, agent_id: int, at: datetime
) -> None:
    """Note the ranked assignee and the seconds from creation to assignment, so the
    handling time learned at the outcome counts from the assignment (bounded)."""
    pending[request.ticket_id] = (agent_id, max(0.0, (at - request.created_at).total_seconds()))
    if len(pending) > _PENDING_CAP:
        del pending[next(iter(pending))]


class RoundRobinRanker:
    """Baseline: eligible agents in turn, per queue, ignoring skill and load.

    The pointer per queue is the id of the agent who got the last ticket; the next ticket
    goes to the first eligible agent with a higher id, wrapping around.

    Example:
        >>> from datetime import UTC, datetime
        >>> from models.helpdesk import Agent
        >>> from models.routing import RoutingRequest
        >>> at = datetime(2024, 1, 1, 9, tzinfo=UTC)
        >>> agents = [Agent(i, f"a{i}", "billing", {"billing": 0.8}, ("en",), 5, "online")
        ...           for i in (1, 2, 3)]
        >>> rr = RoundRobinRanker()
        >>> req = RoutingRequest(7, 1, "billing", "c", "new", None, "en", "billing", "normal",
        ...                      "standard", at, at)
        >>> [rr.rank(req, agents, {}, at=at)[0].agent.id for _ in range(4)]
        [1, 2, 3, 1]
    """

    version = "round-robin-1"

    def __init__(self) -> None:
        self.pointers: dict[str, int] = {}  # queue -> id of the agent last given a ticket

    def rank(
        self,
        request: RoutingRequest,
        candidates: Sequence[Agent],
        load: Mapping[int, int],
        *,
        at: datetime,
    ) -> list[RankedAgent]:
        """Agents in rotation order; the first one becomes the queue's new pointer."""
        if not candidates:
            return []
        ordered = sorted(candidates, key=lambda a: a.id)
        last = self.pointers.get(request.queue)
        start = next((i for i, a in enumerate(ordered) if last is None or a.id > last), 0)
        rotated = ordered[start:] + ordered[:start]
        self.pointers[request.queue] = rotated[0].id
        n = len(rotated)
        return [
            RankedAgent(
                agent=a,
                score=round(1.0 - i / n, 4),
                confidence=round(1.0 / n, 4),
                reasons=(
                    f"round robin: turn {i + 1} of {n}",
                    f"load {load.get(a.id, 0)}/{a.capacity}",
                ),
            )
            for i, a in enumerate(rotated)
        ]

    def learn(self, outcome: RoutingOutcome) -> None:
        return None
