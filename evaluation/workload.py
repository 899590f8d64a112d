"""Workload generator: realistic helpdesk activity written into the source database.

Three layers, from pure to I/O:

* **Planning** (pure, deterministic for a seed): customers, agents, KB articles and a
  stream of ticket specs whose arrivals follow a daily and weekly rhythm in *simulated*
  time (a non-homogeneous Poisson process sampled by thinning). Each spec keeps the
  ticket's true category, while only a fraction of the rows get the category column
  filled: the pipeline has to infer the rest, and evaluation compares against the spec.
* **Agent behaviour** (:class:`AgentSimulator`): tickets that the routing layer assigned
  (``tickets.assigned_agent_id``) are worked by a simulated agent: first reply, sometimes
  a question to the customer and their answer, follow-ups, the solution with a CSAT that
  rewards speed, and occasional reopens. Service times depend on the agent's skill for the
  ticket's true category. Each lifecycle is drawn from a generator seeded by
  (seed, ticket, agent), so it does not depend on poll timing.
* **Writing** (:class:`WorkloadWriter`): seeds reference data idempotently and inserts
  tickets at the configured wall-clock rate while the simulator runs in a second thread on
  its own connection.

Time: simulated time runs ``time_compression`` times faster than the wall clock from
``sim_start``; it shapes the arrival rhythm and agent work times only. Row timestamps
(``created_at``, ``first_reply_at``, ``solved_at``, event ``created_at``) are the real
commit-time ``now()``, because CDC's event time is the source commit time and the pipeline
must see consistent clocks; the simulated arrival time of every ticket stays in its spec.

Kept as one module: arrivals, ticket lifecycles, replies, agent shifts and KB
edits draw from one seeded random stream against one clock, which is what makes a seed
reproduce a history.
"""

from __future__ import annotations

import bisect
import contextlib
import heapq
import itertools
import logging
import math
import random
import threading
import time
import unicodedata
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from evaluation import workload_text as text

log = logging.getLogger(__name__)

DEFAULT_CATEGORY_TEAMS: dict[str, str] = {
    "billing": "billing",
    "technical": "technical",
    "account": "account",
    "shipping": "logistics",
    "general": "general",
}
"""True ticket category → the team that owns it."""

DEFAULT_CATEGORY_WEIGHTS: dict[str, float] = {
    "billing": 1.2,
    "technical": 1.6,
    "account": 0.9,
    "shipping": 0.8,
    "general": 0.5,
}

TIERS = ("free", "standard", "premium", "enterprise")
CHANNELS = ("email", "web", "chat", "phone", "api")

# Relative ticket volume per hour of day (UTC) on a weekday: a night trough, a morning
# ramp, a lunch dip and an evening tail. Weekends scale the whole day down.
HOURLY_PROFILE: tuple[float, ...] = (
    0.15, 0.10, 0.10, 0.10, 0.12, 0.20, 0.35, 0.60, 0.90, 1.40, 1.50, 1.50,
    1.20, 1.45, 1.50, 1.40, 1.30, 0.95, 0.70, 0.55, 0.45, 0.35, 0.25, 0.20,
)  # fmt: skip
WEEKDAY_PROFILE: tuple[float, ...] = (1.15, 1.05, 1.0, 1.0, 0.95, 0.40, 0.30)  # Mon..Sun

# Customers of higher tiers open more tickets (more seats, more usage).
_TIER_ACTIVITY = {"free": 0.6, "standard": 1.0, "premium": 1.6, "enterprise": 2.5}


class WorkloadConfig(BaseModel):
    """What to generate and how fast.

    Rates are in wall-clock time; ``time_compression`` simulated seconds pass per wall
    second, so with the default 60 one simulated day lasts 24 wall minutes.
    """

    model_config = ConfigDict(frozen=True)

    seed: int = 7
    customers: int = Field(default=200, ge=1)
    agents: int = Field(default=20, ge=1)
    category_teams: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_CATEGORY_TEAMS))
    category_weights: dict[str, float] = Field(
        default_factory=lambda: dict(DEFAULT_CATEGORY_WEIGHTS),
        description="Relative ticket volume per category; missing categories weigh 1.0.",
    )
    languages: dict[str, float] = Field(
        default_factory=lambda: {"en": 0.70, "de": 0.12, "fr": 0.10, "es": 0.08}
    )
    tiers: dict[str, float] = Field(
        default_factory=lambda: {
            "free": 0.40,
            "standard": 0.35,
            "premium": 0.18,
            "enterprise": 0.07,
        }
    )
    channels: dict[str, float] = Field(
        default_factory=lambda: {
            "email": 0.45,
            "web": 0.25,
            "chat": 0.15,
            "phone": 0.10,
            "api": 0.05,
        }
    )
    tickets: int | None = Field(
        default=1000, ge=0, description="Tickets to create; None = until stopped."
    )
    rate: float = Field(default=10.0, gt=0, description="Mean offered tickets per wall second.")
    time_compression: float = Field(
        default=60.0, gt=0, description="Simulated seconds per wall second."
    )
    sim_start: datetime = datetime(2024, 1, 1, 8, tzinfo=UTC)  # a Monday morning
    rhythm: bool = Field(default=True, description="Apply the daily/weekly rhythm to arrivals.")
    labelled_fraction: float = Field(default=0.3, ge=0, le=1, description="Rows with category set.")
    urgent_fraction: float = Field(default=0.1, ge=0, le=1)
    pii_fraction: float = Field(default=0.15, ge=0, le=1)
    shifts: tuple[tuple[int, int], ...] = ((6, 14), (14, 22), (22, 6))
    simulate_agents: bool = True
    first_reply_minutes: float = Field(default=20.0, gt=0, description="Mean, simulated.")
    service_minutes: float = Field(default=90.0, gt=0, description="Base service time, simulated.")
    home_skill_range: tuple[float, float] = Field(
        default=(0.7, 0.98),
        description=(
            "Skill range of agents in their own team's categories (uniform). Mean service time"
            " is service_minutes * (1.6 - skill), so (0.7, 0.98) caps the speed spread within"
            " a team at about 1.4x; a wider range such as (0.1, 0.98) lets routing matter more."
        ),
    )
    service_shape: float = Field(
        default=2.0,
        gt=0,
        description=(
            "Gamma shape of service times around their mean: 2 is right-skewed; below 1 is"
            " heavy-tailed (a few very long tickets carry much of the mean)."
        ),
    )
    customer_reply_minutes: float = Field(default=60.0, gt=0, description="Mean, simulated.")
    pending_probability: float = Field(default=0.25, ge=0, le=1)
    follow_up_probability: float = Field(default=0.10, ge=0, le=1)
    reopen_probability: float = Field(default=0.07, ge=0, le=1)
    batch_window: float = Field(
        default=0.010, ge=0, description="Tickets due this close share a commit."
    )
    max_batch: int = Field(default=500, ge=1)
    poll_interval: float = Field(
        default=0.25, gt=0, description="Wall seconds between assignment polls."
    )
    linger_seconds: float = Field(
        default=0.0, ge=0, description="Keep simulating agents this long after the last ticket."
    )

    @field_validator("category_teams")
    @classmethod
    def _some_categories(cls, value: dict[str, str]) -> dict[str, str]:
        if not value:
            raise ValueError("at least one category is required")
        return value

    @field_validator("languages", "tiers", "channels", "category_weights")
    @classmethod
    def _weights(cls, value: dict[str, float]) -> dict[str, float]:
        if any(w < 0 for w in value.values()):
            raise ValueError("weights must be >= 0")
        return value

    @field_validator("sim_start")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        return value if value.tzinfo else value.replace(tzinfo=UTC)

    @field_validator("shifts")
    @classmethod
    def _shift_hours(cls, value: tuple[tuple[int, int], ...]) -> tuple[tuple[int, int], ...]:
        for start, end in value:
            if not (0 <= start <= 23 and 1 <= end <= 24):
                raise ValueError(f"shift {start}-{end} outside 0..23 / 1..24")
        return value

    @model_validator(mode="after")
    def _known_values(self) -> WorkloadConfig:
        for name, allowed in (("tiers", TIERS), ("channels", CHANNELS)):
            weights: dict[str, float] = getattr(self, name)
            unknown = set(weights) - set(allowed)
            if unknown:
                raise ValueError(f"{name}: unknown {sorted(unknown)}; allowed {allowed}")
            if not any(w > 0 for w in weights.values()):
                raise ValueError(f"{name}: at least one weight must be positive")
        if not any(w > 0 for w in self.languages.values()):
            raise ValueError("languages: at least one weight must be positive")
        return self

    @property
    def categories(self) -> list[str]:
        return list(self.category_teams)

    @property
    def teams(self) -> list[str]:
        """Distinct teams in first-seen order of the category mapping."""
        return list(dict.fromkeys(self.category_teams.values()))


# --------------------------------------------------------------------------- plans


@dataclass(frozen=True)
class CustomerSpec:
    index: int
    name: str
    email: str
    organization: str | None
    tier: str
    language: str
    region: str
    activity: float


@dataclass(frozen=True)
class AgentSpec:
    index: int
    name: str
    email: str
    team: str
    skills: Mapping[str, float]
    languages: tuple[str, ...]
    capacity: int
    status: str
    shift_start: int
    shift_end: int


@dataclass(frozen=True)
class KbArticleSpec:
    title: str
    body: str
    category: str
    language: str


@dataclass(frozen=True)
class TicketSpec:
    """One ticket to create. ``category`` is the truth; ``labelled_category`` goes in the row."""

    seq: int
    sim_time: datetime
    wall_offset: float
    customer_index: int
    channel: str
    category: str
    labelled_category: str | None
    language: str
    subject: str
    description: str
    urgent: bool
    has_pii: bool


def _rng(cfg: WorkloadConfig, *parts: object) -> random.Random:
    # String seeds are hashed with SHA-512 by `random`, so each named stream is stable
    # across processes and Python runs, and streams do not shift when another one changes.
    return random.Random(":".join(str(p) for p in (cfg.seed, *parts)))


def _pick(rng: random.Random, weights: Mapping[str, float]) -> str:
    keys = list(weights)
    return rng.choices(keys, weights=[weights[k] for k in keys])[0]


def _ascii(value: str) -> str:
    folded = unicodedata.normalize("NFKD", value).encode("ascii", "ignore").decode()
    return folded.lower().replace(" ", "")


def plan_customers(cfg: WorkloadConfig) -> list[CustomerSpec]:
    """Customers with language, tier, region and an activity weight (tickets they file)."""
    rng = _rng(cfg, "customers")
    out: list[CustomerSpec] = []
    for i in range(cfg.customers):
        language = _pick(rng, cfg.languages)
        names = language if language in text.FIRST_NAMES else "en"
        first = rng.choice(text.FIRST_NAMES[names])
        last = rng.choice(text.LAST_NAMES[names])
        tier = _pick(rng, cfg.tiers)
        organization = None
        if tier in ("premium", "enterprise") or rng.random() < 0.4:
            organization = f"{rng.choice(text.ORG_WORDS)} {rng.choice(text.ORG_SUFFIXES)}"
        # The index in the address keeps emails unique, which seeding relies on.
        email = f"{_ascii(first)}.{_ascii(last)}.{i}@{rng.choice(text.MAIL_DOMAINS)}"
        out.append(
            CustomerSpec(
                index=i,
                name=f"{first} {last}",
                email=email,
                organization=organization,
                tier=tier,
                language=language,
                region=rng.choice(text.REGIONS.get(language, text.REGIONS["en"])),
                activity=_TIER_ACTIVITY[tier] * rng.lognormvariate(0.0, 0.5),
            )
        )
    return out


def plan_agents(cfg: WorkloadConfig) -> list[AgentSpec]:
    """Agents spread round-robin over teams, skilled in their team's categories.

    Every non-English language is spoken by at least one agent (when there are enough
    agents) so routing can always find a speaker. Teams with at least as many agents as
    there are shifts rotate through the shifts; smaller teams work all day so that no team
    is ever left without anyone on shift.
    """
    rng = _rng(cfg, "agents")
    teams = cfg.teams
    others = [lang for lang in cfg.languages if lang != "en"]
    team_of = [teams[i % len(teams)] for i in range(cfg.agents)]
    team_size = {team: team_of.count(team) for team in teams}
    seen_in_team: dict[str, int] = dict.fromkeys(teams, 0)
    pool = [lang for lang in text.LANGUAGES if lang in text.FIRST_NAMES]
    out: list[AgentSpec] = []
    for i, team in enumerate(team_of):
        skills: dict[str, float] = {}
        for category, owner in cfg.category_teams.items():
            low, high = cfg.home_skill_range
            level = rng.uniform(low, high) if owner == team else rng.uniform(0.1, 0.5)
            skills[category] = level
        foreign = [c for c, owner in cfg.category_teams.items() if owner != team]
        if foreign and rng.random() < 0.35:  # cross-trained in one other category
            extra = rng.choice(foreign)
            skills[extra] = max(skills[extra], rng.uniform(0.5, 0.8))
        spoken = {"en"}
        if i < len(others):
            spoken.add(others[i])
        spoken.update(lang for lang in others if rng.random() < 0.2)
        k = seen_in_team[team]
        seen_in_team[team] += 1
        if cfg.shifts and team_size[team] >= len(cfg.shifts):
            shift_start, shift_end = cfg.shifts[k % len(cfg.shifts)]
        else:
            shift_start, shift_end = 0, 24
        name_lang = rng.choice(pool)
        first = rng.choice(text.FIRST_NAMES[name_lang])
        last = rng.choice(text.LAST_NAMES[name_lang])
        out.append(
            AgentSpec(
                index=i,
                name=f"{first} {last}",
                email=f"agent{i + 1}.{_ascii(first)}.{_ascii(last)}@support.example.com",
                team=team,
                skills={c: round(v, 2) for c, v in skills.items()},
                languages=tuple(lang for lang in ("en", *others) if lang in spoken),
                capacity=rng.randint(3, 8),
                status="online",
                shift_start=shift_start,
                shift_end=shift_end,
            )
        )
    return out


def plan_kb_articles(cfg: WorkloadConfig) -> list[KbArticleSpec]:
    """KB articles for every configured category and language that has templates."""
    rows = text.render_kb_articles(_rng(cfg, "kb"), cfg.categories, list(cfg.languages))
    return [KbArticleSpec(title=t, body=b, category=c, language=lang) for t, b, c, lang in rows]


_WEEK_MEAN = sum(h * d for h in HOURLY_PROFILE for d in WEEKDAY_PROFILE) / (24 * 7)
_RHYTHM_MAX = max(HOURLY_PROFILE) * max(WEEKDAY_PROFILE) / _WEEK_MEAN


def rhythm_factor(at: datetime) -> float:
    """Arrival intensity at ``at`` relative to the weekly mean (the week averages 1.0)."""
    at = at.astimezone(UTC)
    return HOURLY_PROFILE[at.hour] * WEEKDAY_PROFILE[at.weekday()] / _WEEK_MEAN


def iter_arrival_offsets(cfg: WorkloadConfig) -> Iterator[float]:
    """Simulated seconds after ``sim_start`` at which tickets arrive, forever.

    The mean intensity is ``rate / time_compression`` per simulated second, i.e. ``rate``
    per wall second on average over a week. With the rhythm on, candidates are drawn at
    the peak intensity and kept with probability ``rhythm / peak`` (Lewis-Shedler thinning),
    which samples the non-homogeneous Poisson process exactly.
    """
    rng = _rng(cfg, "arrivals")
    base = cfg.rate / cfg.time_compression
    peak = base * (_RHYTHM_MAX if cfg.rhythm else 1.0)
    t = 0.0
    while True:
        t += rng.expovariate(peak)
        if not cfg.rhythm:
            yield t
            continue
        at = cfg.sim_start + timedelta(seconds=t)
        if rng.random() * _RHYTHM_MAX < rhythm_factor(at):
            yield t


def iter_ticket_specs(
    cfg: WorkloadConfig, customers: list[CustomerSpec] | None = None
) -> Iterator[TicketSpec]:
    """Ticket specs in arrival order; ``cfg.tickets`` of them, or unbounded when None."""
    customers = customers if customers is not None else plan_customers(cfg)
    cum = list(itertools.accumulate(c.activity for c in customers))
    categories = cfg.categories
    cat_weights = [cfg.category_weights.get(c, 1.0) for c in categories]
    arrivals = iter_arrival_offsets(cfg)
    count = itertools.count() if cfg.tickets is None else range(cfg.tickets)
    for seq in count:
        offset = next(arrivals)
        # One generator per ticket: the content of ticket n never depends on how the
        # arrival stream or earlier tickets were drawn.
        rng = _rng(cfg, "ticket", seq)
        customer = customers[bisect.bisect_right(cum, rng.random() * cum[-1])]
        category = rng.choices(categories, weights=cat_weights)[0]
        rendered = text.render_ticket(
            rng,
            category=category,
            language=customer.language,
            customer_name=customer.name,
            customer_email=customer.email,
            urgent=rng.random() < cfg.urgent_fraction,
            pii=rng.random() < cfg.pii_fraction,
        )
        yield TicketSpec(
            seq=seq,
            sim_time=cfg.sim_start + timedelta(seconds=offset),
            wall_offset=offset / cfg.time_compression,
            customer_index=customer.index,
            channel=_pick(rng, cfg.channels),
            category=category,
            labelled_category=category if rng.random() < cfg.labelled_fraction else None,
            language=customer.language,
            subject=rendered.subject,
            description=rendered.description,
            urgent=rendered.urgent,
            has_pii=rendered.has_pii,
        )


def plan_tickets(cfg: WorkloadConfig, count: int) -> list[TicketSpec]:
    """The first ``count`` ticket specs (ignores ``cfg.tickets``)."""
    return list(iter_ticket_specs(cfg.model_copy(update={"tickets": count})))


# ------------------------------------------------------------------ agent behaviour


def mean_service_seconds(cfg: WorkloadConfig, skill: float) -> float:
    """Mean simulated work time: ``service_minutes * (1.6 - skill)``, skill clamped to 0..1."""
    return cfg.service_minutes * 60.0 * (1.6 - min(max(skill, 0.0), 1.0))


def draw_service_seconds(rng: random.Random, cfg: WorkloadConfig, skill: float) -> float:
    """A gamma service time (``cfg.service_shape``, 2 by default) with the skill's mean.

    Right-skewed like real handling times and never negative; shapes below 1 give heavy
    tails with the same mean.
    """
    shape = cfg.service_shape
    return rng.gammavariate(shape, mean_service_seconds(cfg, skill) / shape)


@dataclass(frozen=True)
class LifecycleStep:
    """One thing that happens to an assigned ticket, ``offset`` simulated s after assignment."""

    offset: float
    kind: str  # first_reply | follow_up | ask_info | customer_reply | solve | reopen
    csat: int | None = None


def plan_lifecycle(
    cfg: WorkloadConfig, *, ticket_id: int, agent_id: int, skill: float
) -> list[LifecycleStep]:
    """What the agent and customer do with one assigned ticket, in simulated time.

    Always starts with a first reply and ends with a solution. CSAT falls as the total
    handling time grows relative to the configured reference time.
    """
    rng = _rng(cfg, "lifecycle", ticket_id, agent_id)
    steps: list[LifecycleStep] = []
    t = rng.expovariate(1.0 / (cfg.first_reply_minutes * 60.0))
    steps.append(LifecycleStep(t, "first_reply"))
    work = draw_service_seconds(rng, cfg, skill)
    if rng.random() < cfg.follow_up_probability:
        steps.append(LifecycleStep(t + rng.uniform(0.1, 0.9) * work, "follow_up"))
    if rng.random() < cfg.pending_probability:
        asked = t + 0.3 * work
        answered = asked + rng.expovariate(1.0 / (cfg.customer_reply_minutes * 60.0))
        steps.append(LifecycleStep(asked, "ask_info"))
        steps.append(LifecycleStep(answered, "customer_reply"))
        solved = answered + 0.7 * work
    else:
        solved = t + work
    reference = (cfg.first_reply_minutes + cfg.service_minutes) * 60.0
    csat = _csat(rng, solved / reference)
    steps.append(LifecycleStep(solved, "solve", csat))
    if rng.random() < cfg.reopen_probability:
        reopened = solved + rng.expovariate(1.0 / (6 * 3600.0))
        steps.append(LifecycleStep(reopened, "reopen"))
        again = reopened + 0.5 * draw_service_seconds(rng, cfg, skill)
        # A reopened ticket disappointed once already.
        steps.append(LifecycleStep(again, "solve", max(1, _csat(rng, again / reference) - 1)))
    steps.sort(key=lambda s: s.offset)
    return steps


def _csat(rng: random.Random, slowness: float) -> int:
    score = 5.2 - 1.4 * slowness + rng.gauss(0.0, 0.6)
    return int(min(5, max(1, round(score))))


@dataclass
class SimulatorStats:
    tickets_started: int = 0
    first_replies: int = 0
    solved: int = 0
    reopened: int = 0
    pending: int = 0
    customer_comments: int = 0
    events_written: int = 0
    cancelled: int = 0


@dataclass
class _Lifecycle:
    ticket_id: int
    agent_id: int
    language: str
    customer_name: str
    customer_id: int
    steps: list[LifecycleStep]
    remaining: int = 0
    cancelled: bool = False


_SET_FIRST_REPLY = sql.SQL("first_reply_at = COALESCE(first_reply_at, now())")
_SET_SOLVED = sql.SQL("solved_at = now()")
_CLEAR_SOLVED = sql.SQL("solved_at = NULL, csat = NULL")


class AgentSimulator:
    """Works the tickets the routing layer assigns, writing replies and status changes.

    Call :meth:`poll` to pick up newly assigned open tickets and :meth:`process_due` to
    write the steps whose time has come, or :meth:`run` to loop. A lifecycle is abandoned
    when the ticket is reassigned (the new assignee gets a fresh one on the next poll),
    closed, or parked by someone else.

    Args:
        cfg: Workload configuration (probabilities, time compression, seed).
        truth: Ticket id → true category, filled by the writer as tickets are created.
            Unknown tickets fall back to the row's category column, then ``general``.
        clock: Monotonic wall clock, injectable for tests.
    """

    def __init__(
        self,
        cfg: WorkloadConfig,
        *,
        truth: Mapping[int, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cfg = cfg
        self.stats = SimulatorStats()
        self._truth = truth if truth is not None else {}
        self._clock = clock
        # Heap entries are (due, seq, lifecycle id, step index). Lifecycle ids, not ticket
        # ids, so that steps left over from an abandoned lifecycle can never act on the
        # fresh one a reassigned ticket gets.
        self._heap: list[tuple[float, int, int, int]] = []
        self._seq = itertools.count()
        self._life_ids = itertools.count()
        self._lives: dict[int, _Lifecycle] = {}
        self._active: dict[int, int] = {}  # ticket id -> lifecycle id
        self._agents: dict[int, tuple[dict[str, float], tuple[str, ...]]] = {}

    @property
    def active(self) -> int:
        """Tickets with a lifecycle still in progress."""
        return len(self._active)

    def next_due(self) -> float | None:
        return self._heap[0][0] if self._heap else None

    def poll(self, conn: psycopg.Connection[Any]) -> int:
        """Schedule lifecycles for assigned open tickets not yet being worked; return how many."""
        rows = conn.execute(
            "SELECT t.id, t.assigned_agent_id, t.category, c.id, c.language, c.name"
            " FROM tickets t JOIN customers c ON c.id = t.customer_id"
            " WHERE t.assigned_agent_id IS NOT NULL AND t.status IN ('new', 'open')"
            " ORDER BY t.id"
        ).fetchall()
        conn.commit()
        now = self._clock()
        started = 0
        for ticket_id, agent_id, row_category, customer_id, language, name in rows:
            current_id = self._active.get(ticket_id)
            current = self._lives.get(current_id) if current_id is not None else None
            if current is not None and current.agent_id == agent_id:
                continue
            if current_id is not None:
                self._lives.pop(current_id, None)
            skills, _ = self._agent(conn, agent_id)
            category = self._truth.get(ticket_id) or row_category or "general"
            steps = plan_lifecycle(
                self.cfg, ticket_id=ticket_id, agent_id=agent_id, skill=skills.get(category, 0.5)
            )
            life = _Lifecycle(
                ticket_id, agent_id, language, name.split()[0], customer_id, steps, len(steps)
            )
            life_id = next(self._life_ids)
            self._lives[life_id] = life
            self._active[ticket_id] = life_id
            for index, step in enumerate(steps):
                due = now + step.offset / self.cfg.time_compression
                heapq.heappush(self._heap, (due, next(self._seq), life_id, index))
            started += 1
        self.stats.tickets_started += started
        return started

    def _agent(
        self, conn: psycopg.Connection[Any], agent_id: int
    ) -> tuple[dict[str, float], tuple[str, ...]]:
        if agent_id not in self._agents:
            for aid, skills, languages in conn.execute("SELECT id, skills, languages FROM agents"):
                parsed = {str(k): float(v) for k, v in (skills or {}).items()}
                self._agents[aid] = (parsed, tuple(languages or ("en",)))
            conn.commit()
        return self._agents.get(agent_id, ({}, ("en",)))

    def process_due(self, conn: psycopg.Connection[Any], now: float | None = None) -> int:
        """Write every step due by ``now`` (one transaction per batch); return steps written."""
        now = self._clock() if now is None else now
        written = 0
        while self._heap and self._heap[0][0] <= now:
            with conn.transaction():
                for _ in range(200):  # bounded so one burst cannot hold a transaction long
                    if not self._heap or self._heap[0][0] > now:
                        break
                    _, _, life_id, index = heapq.heappop(self._heap)
                    life = self._lives.get(life_id)
                    if life is None:
                        continue
                    if self._apply(conn, life, index):
                        written += 1
                    life.remaining -= 1
                    if life.remaining <= 0 or life.cancelled:
                        del self._lives[life_id]
                        if self._active.get(life.ticket_id) == life_id:
                            del self._active[life.ticket_id]
        return written

    def _apply(self, conn: psycopg.Connection[Any], life: _Lifecycle, index: int) -> bool:
        step = life.steps[index]
        row = conn.execute(
            "SELECT status, assigned_agent_id FROM tickets WHERE id = %s FOR UPDATE",
            (life.ticket_id,),
        ).fetchone()
        if row is None or row[1] != life.agent_id or row[0] == "closed":
            life.cancelled = True
            self.stats.cancelled += 1
            return False
        status = row[0]
        if (step.kind == "reopen") != (status == "solved") or status == "on_hold":
            # Someone else solved, parked or reopened it: their workflow wins.
            life.cancelled = True
            self.stats.cancelled += 1
            return False
        rng = _rng(self.cfg, "text", life.ticket_id, life.agent_id, index)
        _, agent_langs = self._agents.get(life.agent_id, ({}, ("en",)))
        reply_lang = life.language if life.language in agent_langs else "en"
        agent = (life.agent_id, "agent")
        customer = (life.customer_id, "customer")
        name = life.customer_name
        if step.kind == "first_reply":
            body = text.render_reply(rng, text.AGENT_FIRST_REPLIES, reply_lang, name=name)
            self._comment(conn, life.ticket_id, agent, body)
            new = "open" if status == "new" else status
            self._status(conn, life.ticket_id, status, new, _SET_FIRST_REPLY)
            self.stats.first_replies += 1
        elif step.kind == "follow_up":
            body = text.render_reply(rng, text.CUSTOMER_FOLLOW_UPS, life.language)
            self._comment(conn, life.ticket_id, customer, body)
            self._touch(conn, life.ticket_id)
            self.stats.customer_comments += 1
        elif step.kind == "ask_info":
            body = text.render_reply(rng, text.AGENT_INFO_REQUESTS, reply_lang)
            self._comment(conn, life.ticket_id, agent, body)
            self._status(conn, life.ticket_id, status, "pending")
            self.stats.pending += 1
        elif step.kind == "customer_reply":
            body = text.render_reply(rng, text.CUSTOMER_REPLIES, life.language)
            self._comment(conn, life.ticket_id, customer, body)
            self._status(conn, life.ticket_id, status, "open")
            self.stats.customer_comments += 1
        elif step.kind == "solve":
            body = text.render_reply(rng, text.AGENT_SOLUTIONS, reply_lang)
            self._comment(conn, life.ticket_id, agent, body)
            self._status(conn, life.ticket_id, status, "solved", _SET_SOLVED, csat=step.csat)
            self.stats.solved += 1
        elif step.kind == "reopen":
            body = text.render_reply(rng, text.CUSTOMER_REOPENS, life.language)
            self._comment(conn, life.ticket_id, customer, body)
            self._status(conn, life.ticket_id, status, "open", _CLEAR_SOLVED)
            self.stats.reopened += 1
            self.stats.customer_comments += 1
        return True

    def _comment(
        self, conn: psycopg.Connection[Any], ticket_id: int, author: tuple[int, str], body: str
    ) -> None:
        conn.execute(
            "INSERT INTO ticket_events (ticket_id, kind, author_type, author_id, body)"
            " VALUES (%s, 'comment', %s, %s, %s)",
            (ticket_id, author[1], author[0], body),
        )
        self.stats.events_written += 1

    def _touch(self, conn: psycopg.Connection[Any], ticket_id: int) -> None:
        conn.execute("UPDATE tickets SET updated_at = now() WHERE id = %s", (ticket_id,))

    def _status(
        self,
        conn: psycopg.Connection[Any],
        ticket_id: int,
        old: str,
        new: str,
        *extra: sql.Composable,
        csat: int | None = None,
    ) -> None:
        parts: list[sql.Composable] = [sql.SQL("status = %s"), sql.SQL("updated_at = now()")]
        parts.extend(extra)
        params: list[Any] = [new]
        if csat is not None:
            parts.append(sql.SQL("csat = %s"))
            params.append(csat)
        params.append(ticket_id)
        query = sql.SQL("UPDATE tickets SET {} WHERE id = %s").format(sql.SQL(", ").join(parts))
        conn.execute(query, params)
        if old != new:
            conn.execute(
                "INSERT INTO ticket_events (ticket_id, kind, author_type, old_status, new_status)"
                " VALUES (%s, 'status_change', 'system', %s, %s)",
                (ticket_id, old, new),
            )
            self.stats.events_written += 1

    def run(
        self,
        dsn: str,
        stop_event: threading.Event,
        *,
        until: Callable[[AgentSimulator], bool] | None = None,
    ) -> SimulatorStats:
        """Poll and write on a private connection until ``stop_event`` or ``until(self)``."""
        with psycopg.connect(dsn) as conn:
            next_poll = self._clock()
            while not stop_event.is_set():
                now = self._clock()
                if now >= next_poll:
                    self.poll(conn)
                    next_poll = now + self.cfg.poll_interval
                self.process_due(conn)
                if until is not None and until(self):
                    break
                due = self.next_due()
                wake = next_poll if due is None else min(next_poll, due)
                stop_event.wait(max(0.0, wake - self._clock()))
        return self.stats


# --------------------------------------------------------------------------- writer


@dataclass(frozen=True)
class WorkloadProgress:
    tickets_created: int
    tickets_target: int | None
    events_written: int
    elapsed_seconds: float
    sim_time: datetime
    lag_seconds: float
    done: bool = False

    @property
    def rate(self) -> float:
        """Achieved tickets per wall second so far."""
        return self.tickets_created / self.elapsed_seconds if self.elapsed_seconds > 0 else 0.0


@dataclass(frozen=True)
class WorkloadReport:
    """What a run wrote. ``truth`` maps every created ticket id to its true category."""

    created_ticket_ids: list[int]
    truth: dict[int, str]
    tickets_created: int
    events_written: int
    first_replies: int
    solved: int
    reopened: int
    elapsed_seconds: float
    achieved_rate: float
    max_lag_seconds: float
    stopped: bool
    agent_stats: SimulatorStats = field(default_factory=SimulatorStats)


_ADVISORY_SEED_LOCK = 0x7472_6961_6765  # serialises concurrent seeding of one database


class WorkloadWriter:
    """Writes the planned workload into the helpdesk database at ``dsn``.

    The schema (``sql/source/001_helpdesk.sql``) must already be applied.
    """

    def __init__(
        self, dsn: str, cfg: WorkloadConfig, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.dsn = dsn
        self.cfg = cfg
        self._clock = clock
        self._customers = plan_customers(cfg)

    def seed_reference_data(self) -> dict[str, int]:
        """Insert planned customers, agents and KB articles that are not there yet.

        Rows are matched by email (customers, agents) and by title + language (articles),
        so running twice, or after a partial run, inserts nothing twice. Returns the
        number of rows inserted per table.
        """
        agents = plan_agents(self.cfg)
        articles = plan_kb_articles(self.cfg)
        inserted = {"customers": 0, "agents": 0, "kb_articles": 0}
        with psycopg.connect(self.dsn) as conn, conn.transaction(), conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (_ADVISORY_SEED_LOCK,))
            have = {r[0] for r in cur.execute("SELECT email FROM customers")}
            rows: list[tuple[Any, ...]] = [
                (c.name, c.email, c.organization, c.tier, c.language, c.region)
                for c in self._customers
                if c.email not in have
            ]
            cur.executemany(
                "INSERT INTO customers (name, email, organization, tier, language, region)"
                " VALUES (%s, %s, %s, %s, %s, %s)",
                rows,
            )
            inserted["customers"] = len(rows)
            have = {r[0] for r in cur.execute("SELECT email FROM agents")}
            rows = [
                (
                    a.name,
                    a.email,
                    a.team,
                    Jsonb(dict(a.skills)),
                    list(a.languages),
                    a.capacity,
                    a.status,
                    a.shift_start,
                    a.shift_end,
                )
                for a in agents
                if a.email not in have
            ]
            cur.executemany(
                "INSERT INTO agents (name, email, team, skills, languages, capacity, status,"
                " shift_start, shift_end) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                rows,
            )
            inserted["agents"] = len(rows)
            have_kb = {(r[0], r[1]) for r in cur.execute("SELECT title, language FROM kb_articles")}
            rows = [
                (k.title, k.body, k.category, k.language)
                for k in articles
                if (k.title, k.language) not in have_kb
            ]
            cur.executemany(
                "INSERT INTO kb_articles (title, body, category, language) VALUES (%s, %s, %s, %s)",
                rows,
            )
            inserted["kb_articles"] = len(rows)
        log.info("seeded reference data: %s", inserted)
        return inserted

    def _customer_ids(self, conn: psycopg.Connection[Any]) -> list[int]:
        by_email = dict(conn.execute("SELECT email, id FROM customers").fetchall())
        conn.commit()
        missing = [c.email for c in self._customers if c.email not in by_email]
        if missing:
            raise RuntimeError(
                f"{len(missing)} planned customers are missing; run seed_reference_data() "
                "with the same seed and customer count first"
            )
        return [by_email[c.email] for c in self._customers]

    def run(
        self,
        stop_event: threading.Event | None = None,
        progress: Callable[[WorkloadProgress], None] | None = None,
    ) -> WorkloadReport:
        """Seed if needed, then create tickets at the configured rate until done or stopped.

        Tickets are scheduled at absolute offsets from the start, so a slow commit delays
        only the tickets behind it and never the rest of the schedule (no drift); tickets
        due within ``batch_window`` of each other share one transaction, which is what
        lets high rates keep up. With ``simulate_agents`` the agent simulator runs in a
        second thread on its own connection until ``linger_seconds`` after the last ticket.
        """
        cfg = self.cfg
        stop = stop_event if stop_event is not None else threading.Event()
        self.seed_reference_data()
        truth: dict[int, str] = {}
        created: list[int] = []
        simulator = AgentSimulator(cfg, truth=truth, clock=self._clock)
        sim_stop = threading.Event()
        sim_thread: threading.Thread | None = None
        if cfg.simulate_agents:
            sim_thread = threading.Thread(
                target=simulator.run, args=(self.dsn, sim_stop), name="agent-simulator", daemon=True
            )
            sim_thread.start()
        max_lag = 0.0
        start = self._clock()
        last_report = -math.inf

        def report(done: bool, lag: float) -> None:
            nonlocal last_report
            now = self._clock()
            if progress is None or (not done and now - last_report < 0.1):
                return
            last_report = now
            elapsed = now - start
            progress(
                WorkloadProgress(
                    tickets_created=len(created),
                    tickets_target=cfg.tickets,
                    events_written=simulator.stats.events_written,
                    elapsed_seconds=elapsed,
                    sim_time=cfg.sim_start + timedelta(seconds=elapsed * cfg.time_compression),
                    lag_seconds=lag,
                    done=done,
                )
            )

        try:
            with psycopg.connect(self.dsn) as conn:
                customer_ids = self._customer_ids(conn)
                specs = iter_ticket_specs(cfg, self._customers)
                pending = next(specs, None)
                lag = 0.0
                while pending is not None and not stop.is_set():
                    delay = start + pending.wall_offset - self._clock()
                    if delay > 0 and stop.wait(delay):
                        break
                    now = self._clock()
                    lag = max(0.0, now - (start + pending.wall_offset))
                    max_lag = max(max_lag, lag)
                    batch = [pending]
                    pending = next(specs, None)
                    horizon = now + cfg.batch_window - start
                    while (
                        pending is not None
                        and len(batch) < cfg.max_batch
                        and pending.wall_offset <= horizon
                    ):
                        batch.append(pending)
                        pending = next(specs, None)
                    created.extend(self._insert(conn, batch, customer_ids, truth))
                    report(False, lag)
            elapsed_create = self._clock() - start
            if sim_thread is not None and cfg.linger_seconds > 0:
                stop.wait(cfg.linger_seconds)
        finally:
            sim_stop.set()
            if sim_thread is not None:
                sim_thread.join()
        report(True, 0.0)
        stats = simulator.stats
        result = WorkloadReport(
            created_ticket_ids=created,
            truth=dict(truth),
            tickets_created=len(created),
            events_written=stats.events_written,
            first_replies=stats.first_replies,
            solved=stats.solved,
            reopened=stats.reopened,
            elapsed_seconds=self._clock() - start,
            achieved_rate=len(created) / elapsed_create if elapsed_create > 0 else 0.0,
            max_lag_seconds=max_lag,
            stopped=stop.is_set(),
            agent_stats=stats,
        )
        log.info(
            "workload done: %d tickets (%.1f/s, max lag %.3fs), %d agent events",
            result.tickets_created,
            result.achieved_rate,
            result.max_lag_seconds,
            result.events_written,
        )
        return result

    def _insert(
        self,
        conn: psycopg.Connection[Any],
        batch: list[TicketSpec],
        customer_ids: list[int],
        truth: dict[int, str],
    ) -> list[int]:
        ids: list[int] = []
        with conn.transaction(), conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO tickets (customer_id, subject, description, channel, category)"
                " VALUES (%s, %s, %s, %s, %s) RETURNING id",
                [
                    (
                        customer_ids[s.customer_index],
                        s.subject,
                        s.description,
                        s.channel,
                        s.labelled_category,
                    )
                    for s in batch
                ],
                returning=True,
            )
            for spec in batch:
                row = cur.fetchone()
                assert row is not None
                ids.append(row[0])
                # Registered before commit so the simulator knows the truth for any
                # ticket it can possibly see assigned.
                truth[row[0]] = spec.category
                cur.nextset()
        return ids


@contextlib.contextmanager
def rich_progress(*, console: Any | None = None) -> Iterator[Callable[[WorkloadProgress], None]]:
    """A ``rich`` progress bar; yields a callback for :meth:`WorkloadWriter.run`'s ``progress``."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    with Progress(
        SpinnerColumn(),
        TextColumn("[bold]tickets"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        console=console,
    ) as bar:
        task = bar.add_task("tickets", total=None, info="")

        def update(p: WorkloadProgress) -> None:
            info = (
                f"{p.rate:7.1f}/s  sim {p.sim_time:%a %H:%M}  "
                f"agent events {p.events_written}  lag {p.lag_seconds * 1000:.0f} ms"
            )
            bar.update(task, completed=p.tickets_created, total=p.tickets_target, info=info)

        yield update
