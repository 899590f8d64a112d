"""Agent workload and burnout risk (0–100) from what the queue state sees.

Four signals, each smoothed over time (exponentially, half-life ``half_life``):

* sustained load: the share of capacity in use, sampled at every rescoring tick;
* after-hours work: the share of assignments made outside the agent's shift;
* emotional load: the share of handled tickets with strongly negative sentiment;
* SLA pressure: the share of the agent's tickets that breached a target.

The risk is a weighted sum of the four shares scaled to 0–100 (weights in
:data:`WEIGHTS`, chosen so that a fully loaded agent with no other strain sits at 40 and
every signal at its maximum reaches 100). It is a screening number for team leads, not a
diagnosis; its reasons name the signals that contribute most.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta

WEIGHTS = {"load": 40.0, "after_hours": 20.0, "negative": 20.0, "sla_pressure": 20.0}


@dataclass
class _Ewma:
    value: float = 0.0
    weight: float = 0.0
    at: datetime | None = None

    def add(self, x: float, at: datetime, half_life: timedelta) -> None:
        if self.at is not None and at > self.at:
            decay = math.exp(-math.log(2) * (at - self.at) / half_life)
            self.value *= decay
            self.weight *= decay
        self.value += x
        self.weight += 1.0
        self.at = at if self.at is None else max(self.at, at)

    @property
    def mean(self) -> float:
        return self.value / self.weight if self.weight else 0.0


@dataclass(frozen=True)
class WorkloadScore:
    """One agent's workload sample and burnout risk at ``at``."""

    agent_id: int
    queue: str
    at: datetime
    assigned: int
    capacity: int
    risk: float
    reasons: tuple[str, ...]


@dataclass
class AgentWorkload:
    """Smoothed workload signals of one agent.

    Example:
        >>> from datetime import UTC, datetime
        >>> w = AgentWorkload()
        >>> w.sample_load(5, 5, datetime(2026, 3, 2, 10, tzinfo=UTC))
        >>> round(w.risk()[0])
        40
    """

    half_life: timedelta = timedelta(days=7)
    load: _Ewma = field(default_factory=_Ewma)
    after_hours: _Ewma = field(default_factory=_Ewma)
    negative: _Ewma = field(default_factory=_Ewma)
    sla_pressure: _Ewma = field(default_factory=_Ewma)

    def sample_load(self, assigned: int, capacity: int, at: datetime) -> None:
        self.load.add(min(assigned / capacity, 1.5) if capacity else 1.0, at, self.half_life)

    def on_assignment(self, *, on_shift: bool, negative: bool, at: datetime) -> None:
        self.after_hours.add(0.0 if on_shift else 1.0, at, self.half_life)
        self.negative.add(1.0 if negative else 0.0, at, self.half_life)

    def on_outcome(self, *, breached: bool, at: datetime) -> None:
        self.sla_pressure.add(1.0 if breached else 0.0, at, self.half_life)

    def risk(self) -> tuple[float, tuple[str, ...]]:
        """Risk 0–100 and the contributing signals, largest first."""
        shares = {
            "load": min(self.load.mean, 1.0),
            "after_hours": self.after_hours.mean,
            "negative": self.negative.mean,
            "sla_pressure": self.sla_pressure.mean,
        }
        parts = {k: WEIGHTS[k] * v for k, v in shares.items()}
        total = round(min(100.0, sum(parts.values())), 1)
        reasons = tuple(
            f"{name.replace('_', ' ')} {shares[name]:.0%}"
            for name, part in sorted(parts.items(), key=lambda kv: -kv[1])
            if part >= 5.0
        )
        return total, reasons
