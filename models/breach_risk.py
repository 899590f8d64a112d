"""Online SLA breach-risk model: the probability that an open ticket will miss its target.

A logistic regression learned online with per-coordinate FTRL-proximal steps (McMahan et
al., "Ad click prediction: a view from the trenches", KDD 2013) over one-hot features:
categorical fields, numeric ones cut into bins, and the elapsed-time bin crossed with
priority, queue, status and category, so the model can learn a different clock per kind
of ticket. Binning keeps the scale of every input the same, so no running scaler is
needed and one feature cannot dominate the steps.

Train/serve alignment: a ticket is scored at several moments (opening, each status
change, periodic rescoring), and the same snapshots are learned once its outcome is known.
A ticket's snapshots share one label and arrive together, so outcomes first pass through a
small shuffle buffer: the model learns a random earlier outcome for each new one, which
breaks up those same-label bursts (without it, the intercept swings with every long
ticket that closes).

Until ``warmup`` outcomes have been learned, predictions come from a prior on the
fraction of the target already used (a ticket at 90 % of its target is likelier to breach
than one at 10 %): early outcomes are a biased sample (quick tickets close first), and a
model fitted on them alone ranks open tickets worse than the clock does.

Quality is tracked prequentially: ``learn_one`` scores the example before learning from
it, and the exact ROC AUC over the most recent ``window`` scored examples is available as
``auc``.

Example:
    >>> model = BreachRiskModel(warmup=0, shuffle=0)
    >>> for i in range(400):
    ...     frac = (i % 20) / 10
    ...     model.learn_one(BreachRiskFeatures(fraction_elapsed=frac), frac > 1.0)
    >>> model.predict_one(BreachRiskFeatures(fraction_elapsed=1.8)) > 0.5
    True
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

MODEL_VERSION = "breach-risk-ftrl-2"

_HOURS_PER_WEEK = 168
# Steepness and midpoint of the prior: 50 % risk at 90 % of the target used, ~2 % at half.
_PRIOR_SLOPE = 10.0
_PRIOR_MIDPOINT = 0.9
_PRIOR_FLOOR = 0.2


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


def prior_probability(fraction_elapsed: float) -> float:
    """Breach probability from the share of target used alone (used before learning).

    A fresh ticket starts at ``_PRIOR_FLOOR``, not at zero: many tickets breach, and a
    prior that calls new tickets safe ranks them below every ticket the learned model
    scores later.

    Example:
        >>> [round(prior_probability(f), 2) for f in (0.0, 0.5, 0.9, 1.5)]
        [0.2, 0.21, 0.6, 1.0]
    """
    z = _PRIOR_SLOPE * (min(max(fraction_elapsed, 0.0), 3.0) - _PRIOR_MIDPOINT)
    return _PRIOR_FLOOR + (1.0 - _PRIOR_FLOOR) / (1.0 + math.exp(-z))


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


class _Ftrl:
    """Per-coordinate FTRL-proximal logistic regression over sparse binary features."""

    def __init__(self, alpha: float, beta: float, l1: float, l2: float) -> None:
        self.alpha, self.beta, self.l1, self.l2 = alpha, beta, l1, l2
        self.z: dict[str, float] = {}
        self.n: dict[str, float] = {}

    def _weight(self, key: str) -> float:
        z = self.z.get(key, 0.0)
        if abs(z) <= self.l1:
            return 0.0  # L1 keeps rare, uninformative features at exactly zero
        step = (self.beta + math.sqrt(self.n[key])) / self.alpha + self.l2
        return -(z - math.copysign(self.l1, z)) / step

    def predict(self, keys: Iterable[str]) -> float:
        margin = sum(self._weight(k) for k in keys)
        return 1.0 / (1.0 + math.exp(-min(max(margin, -35.0), 35.0)))

    def learn(self, keys: list[str], label: bool) -> None:
        gradient = self.predict(keys) - float(label)  # d logloss / d margin
        g2 = gradient * gradient
        for key in keys:
            n = self.n.get(key, 0.0)
            sigma = (math.sqrt(n + g2) - math.sqrt(n)) / self.alpha
            self.z[key] = self.z.get(key, 0.0) + gradient - sigma * self._weight(key)
            self.n[key] = n + g2


def _bin(value: float, edges: tuple[float, ...]) -> int:
    for i, edge in enumerate(edges):
        if value < edge:
            return i
    return len(edges)


# Bin edges: share of target used, and wall-clock hours since opening (up to a month).
_FRACTION_EDGES = (0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.85, 1.0, 1.2, 1.5, 2.0, 3.0, 5.0)
_HOUR_EDGES = (0.1, 0.5, 1, 2, 4, 8, 16, 24, 48, 72, 120, 168, 336, 720)
_LOAD_EDGES = (1, 2, 4, 8, 16, 32, 64, 128, 256)


def feature_keys(f: BreachRiskFeatures) -> list[str]:
    """The one-hot features of a snapshot (what the model's weights are keyed by).

    Example:
        >>> feature_keys(BreachRiskFeatures(fraction_elapsed=0.5, priority="high"))[:4]
        ['bias', 'fraction#5', 'elapsed#0', 'updates#0']
    """
    elapsed = _bin(f.elapsed_hours if f.elapsed_hours is not None else 0.0, _HOUR_EDGES)
    keys = [
        "bias",
        f"fraction#{_bin(f.fraction_elapsed, _FRACTION_EDGES)}",
        f"elapsed#{elapsed}",
        f"updates#{min(max(f.updates, 0), 15)}",
        f"reassignments#{min(max(f.reassignments, 0), 6)}",
        f"reopens#{min(max(f.reopens, 0), 3)}",
    ]
    named = {
        "priority": f.priority,
        "tier": f.tier,
        "category": f.category,
        "queue": f.queue,
        "status": f.status,
        **f.extra,
    }
    keys += [f"{k}={v}" for k, v in named.items() if v is not None]
    # The clock per kind of ticket: how breach odds grow with age differs by priority,
    # queue, status and category.
    keys += [f"elapsed#{elapsed}|{k}={named[k]}" for k in _CROSSED if named[k] is not None]
    if f.queue is not None and f.priority is not None:
        keys.append(f"queue={f.queue}|priority={f.priority}")
    if f.status is not None:
        keys.append(f"updates#{min(max(f.updates, 0), 15)}|status={f.status}")
    if f.hour_of_week is not None:
        how = f.hour_of_week % _HOURS_PER_WEEK
        keys += [f"weekday#{how // 24}", f"hour#{how % 24}"]
    if f.queue_load is not None:
        keys.append(f"load#{_bin(f.queue_load, _LOAD_EDGES)}")
    return keys


_CROSSED = ("priority", "queue", "status", "category")


class BreachRiskModel:
    """Online FTRL breach-risk model with a prior, a shuffle buffer and prequential AUC.

    Args:
        alpha, beta, l1, l2: FTRL-proximal step size, its smoothing, and the L1/L2
            regularisation strengths.
        warmup: Outcomes the classifier must have learned before it replaces the prior.
        shuffle: Outcomes held in the shuffle buffer (0 learns each one at once); the
            first ``shuffle`` outcomes fill it before any is learned.
        window: Recent prequential scores kept for ``auc``.
        seed: Seed of the shuffle buffer's random choices (runs are reproducible).

    Example:
        >>> model = BreachRiskModel()
        >>> round(model.predict_one(BreachRiskFeatures(fraction_elapsed=0.9)), 2)
        0.6
        >>> model.learn_one(BreachRiskFeatures(fraction_elapsed=0.9, priority="high"), True)
        >>> model.n_seen, model.n_learned  # the outcome waits in the shuffle buffer
        (1, 0)
    """

    version = MODEL_VERSION

    def __init__(
        self,
        *,
        alpha: float = 0.1,
        beta: float = 1.0,
        l1: float = 1.0,
        l2: float = 1.0,
        warmup: int = 0,
        shuffle: int = 3000,
        window: int = 5000,
        seed: int = 0,
    ) -> None:
        self.classifier = _Ftrl(alpha, beta, l1, l2)
        self.warmup = warmup
        self.shuffle = shuffle
        self.n_seen = 0
        self.n_learned = 0
        self.buffer: list[tuple[list[str], bool]] = []
        self.rng = random.Random(seed)
        self.recent: deque[tuple[float, bool]] = deque(maxlen=window)

    def predict_one(self, features: BreachRiskFeatures) -> float:
        """Probability in [0, 1] that the ticket breaches its SLA target."""
        if self.n_learned < max(self.warmup, 1):
            return prior_probability(features.fraction_elapsed)
        return self.classifier.predict(feature_keys(features))

    def learn_one(self, features: BreachRiskFeatures, breached: bool) -> None:
        """Score the example (for ``auc``), then learn it or a buffered outcome it displaces."""
        self.recent.append((self.predict_one(features), bool(breached)))
        self.n_seen += 1
        example = (feature_keys(features), bool(breached))
        if len(self.buffer) < self.shuffle:
            self.buffer.append(example)
            return
        if self.shuffle:
            i = self.rng.randrange(self.shuffle)
            example, self.buffer[i] = self.buffer[i], example
        self.classifier.learn(*example)
        self.n_learned += 1

    def __setstate__(self, state: dict[str, object]) -> None:
        if "buffer" not in state:
            # Saved by the earlier River model: its weights do not carry over, so the
            # model starts afresh (on the prior) and keeps only its quality window.
            self.__init__()  # type: ignore[misc]
            self.recent.extend(state.get("recent", ()))  # type: ignore[arg-type]
            return
        self.__dict__.update(state)

    @property
    def auc(self) -> float | None:
        """Exact prequential ROC AUC over the recent window; None before both classes."""
        if not self.recent:
            return None
        scores, labels = zip(*self.recent, strict=True)
        return exact_roc_auc(scores, labels)
