"""Online SLA breach-risk model: the probability that an open ticket will miss its target.

A logistic regression (River) over standard-scaled numeric features and one-hot
categorical ones, learned online from tickets whose outcome is known. Until it has seen
enough outcomes its prediction leans on a prior from the fraction of the target already
used (a ticket at 90 % of its target is likelier to breach than one at 10 %), and the
weight moves to the learned model as outcomes arrive.

Quality is tracked prequentially: ``learn_one`` scores the example before learning from
it, and the exact ROC AUC over the most recent ``window`` scored examples is available as
``auc``.

Example:
    >>> model = BreachRiskModel(warmup=0)
    >>> for i in range(200):
    ...     frac = (i % 20) / 10
    ...     model.learn_one(BreachRiskFeatures(fraction_elapsed=frac), frac > 1.0)
    >>> model.predict_one(BreachRiskFeatures(fraction_elapsed=1.8)) > 0.5
    True
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
from river import linear_model, optim, preprocessing

MODEL_VERSION = "breach-risk-logreg-1"

_HOURS_PER_WEEK = 168
# Steepness and midpoint of the prior: 50 % risk at 90 % of the target used, ~2 % at half.
_PRIOR_SLOPE = 10.0
_PRIOR_MIDPOINT = 0.9


@dataclass(frozen=True)
class BreachRiskFeatures:
    """What is known about an open ticket at one instant; every field but the first optional.

    Args:
        fraction_elapsed: Share of the SLA target used so far (1.0 = at the deadline).
        remaining_business_minutes: Business minutes left before the deadline (negative
            when overdue).
        elapsed_hours: Wall-clock hours since the ticket was opened.
        priority: Ticket priority.
        tier: Customer tier.
        category: Ticket category.
        queue: Queue or assignment group currently holding the ticket.
        status: Current ticket status.
        reassignments: Times the ticket changed queue or agent.
        reopens: Times the ticket was reopened.
        updates: Changes to the ticket so far.
        hour_of_week: 0 (Monday 00h) .. 167, in the team's local time.
        queue_load: Open tickets in the ticket's queue.
        extra: Further categorical attributes (e.g. channel, location).
    """

    fraction_elapsed: float
    remaining_business_minutes: float | None = None
    elapsed_hours: float | None = None
    priority: str | None = None
    tier: str | None = None
    category: str | None = None
    queue: str | None = None
    status: str | None = None
    reassignments: int = 0
    reopens: int = 0
    updates: int = 0
    hour_of_week: int | None = None
    queue_load: float | None = None
    extra: Mapping[str, str] = field(default_factory=dict)


def _signed_log(x: float) -> float:
    return math.copysign(math.log1p(abs(x)), x)


def prior_probability(fraction_elapsed: float) -> float:
    """Breach probability from the share of target used alone (used before learning)."""
    z = _PRIOR_SLOPE * (min(max(fraction_elapsed, 0.0), 3.0) - _PRIOR_MIDPOINT)
    return 1.0 / (1.0 + math.exp(-z))


def exact_roc_auc(scores: Iterable[float], labels: Iterable[bool]) -> float | None:
    """Exact ROC AUC (ties count one half); None when only one class is present.

    Example:
        >>> exact_roc_auc([0.1, 0.4, 0.35, 0.8], [False, False, True, True])
        0.75
    """
    s = np.asarray(list(scores), dtype=float)
    y = np.asarray(list(labels), dtype=bool)
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    # Mann-Whitney U with average ranks for tied scores.
    _, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    average_rank = ends - (counts - 1) / 2.0
    ranks = average_rank[inverse]
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


class BreachRiskModel:
    """Online logistic breach-risk model with a prior and prequential AUC tracking.

    Args:
        learning_rate: SGD step of the logistic regression.
        l2: L2 regularisation of the weights.
        warmup: Outcomes after which the learned model and the prior weigh equally.
        window: Recent prequential scores kept for ``auc``.

    Example:
        >>> model = BreachRiskModel()
        >>> round(model.predict_one(BreachRiskFeatures(fraction_elapsed=0.9)), 2)
        0.5
        >>> model.learn_one(BreachRiskFeatures(fraction_elapsed=0.9, priority="high"), True)
        >>> model.n_learned
        1
    """

    version = MODEL_VERSION

    def __init__(
        self,
        *,
        learning_rate: float = 0.02,
        l2: float = 1e-5,
        warmup: int = 200,
        window: int = 5000,
    ) -> None:
        self.scaler = preprocessing.StandardScaler()
        self.classifier = linear_model.LogisticRegression(
            optimizer=optim.SGD(learning_rate), l2=l2, intercept_lr=learning_rate
        )
        self.warmup = warmup
        self.n_learned = 0
        self.recent: deque[tuple[float, bool]] = deque(maxlen=window)

    @staticmethod
    def _numeric(f: BreachRiskFeatures) -> dict[str, float]:
        frac = min(max(f.fraction_elapsed, 0.0), 5.0)  # far-overdue tickets are all "late"
        x = {
            "fraction_elapsed": frac,
            "overdue": max(frac - 1.0, 0.0),
            "log_reassignments": math.log1p(max(f.reassignments, 0)),
            "log_reopens": math.log1p(max(f.reopens, 0)),
            "log_updates": math.log1p(max(f.updates, 0)),
        }
        if f.remaining_business_minutes is not None:
            x["signed_log_remaining"] = _signed_log(f.remaining_business_minutes)
        if f.elapsed_hours is not None:
            log_elapsed = math.log1p(max(f.elapsed_hours, 0.0))
            x["log_elapsed_hours"] = log_elapsed
            # Targets differ per priority; letting elapsed time act per priority lets the
            # model find them even when the nominal target behind the fraction is off.
            x[f"log_elapsed_hours|priority={f.priority}"] = log_elapsed
        if f.hour_of_week is not None:
            angle = 2 * math.pi * (f.hour_of_week % _HOURS_PER_WEEK) / _HOURS_PER_WEEK
            day_angle = 2 * math.pi * (f.hour_of_week % 24) / 24
            x |= {"week_sin": math.sin(angle), "week_cos": math.cos(angle),
                  "day_sin": math.sin(day_angle), "day_cos": math.cos(day_angle)}  # fmt: skip
        if f.queue_load is not None:
            x["log_queue_load"] = math.log1p(max(f.queue_load, 0.0))
        return x

    @staticmethod
    def _categorical(f: BreachRiskFeatures) -> dict[str, float]:
        named = {
            "priority": f.priority,
            "tier": f.tier,
            "category": f.category,
            "queue": f.queue,
            "status": f.status,
            **f.extra,
        }
        # One-hot values are left unscaled: a standard scaler sees a one-hot key only when it
        # is 1, so it would learn zero variance and erase it.
        return {f"{k}={v}": 1.0 for k, v in named.items() if v is not None}

    def _features(self, f: BreachRiskFeatures) -> dict[str, float]:
        scaled = self.scaler.transform_one(self._numeric(f))
        return {**scaled, **self._categorical(f)}

    def predict_one(self, features: BreachRiskFeatures) -> float:
        """Probability in [0, 1] that the ticket breaches its SLA target."""
        prior = prior_probability(features.fraction_elapsed)
        if self.n_learned == 0:
            return prior
        learned = self.classifier.predict_proba_one(self._features(features)).get(True, 0.0)
        weight = self.n_learned / (self.n_learned + self.warmup) if self.warmup else 1.0
        return weight * learned + (1.0 - weight) * prior

    def learn_one(self, features: BreachRiskFeatures, breached: bool) -> None:
        """Score the example (for ``auc``), then learn its outcome."""
        self.recent.append((self.predict_one(features), bool(breached)))
        self.scaler.learn_one(self._numeric(features))
        self.classifier.learn_one(self._features(features), bool(breached))
        self.n_learned += 1

    @property
    def auc(self) -> float | None:
        """Exact prequential ROC AUC over the recent window; None before both classes."""
        if not self.recent:
            return None
        scores, labels = zip(*self.recent, strict=True)
        return exact_roc_auc(scores, labels)
