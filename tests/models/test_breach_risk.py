"""Breach-risk model: learns a separable task online, tracks exact AUC, pickles."""

from __future__ import annotations

import itertools
import pickle
import random

import pytest

from models.breach_risk import (
    MODEL_VERSION,
    BreachRiskFeatures,
    BreachRiskModel,
    exact_roc_auc,
    prior_probability,
)


def synthetic(rng: random.Random) -> tuple[BreachRiskFeatures, bool]:
    """Low-priority tickets in the slow queue breach once past ~70 % of their target."""
    frac = rng.uniform(0.0, 1.5)
    priority = rng.choice(["urgent", "high", "normal", "low"])
    queue = rng.choice(["fast", "slow"])
    reassignments = rng.randint(0, 4)
    risk = frac + (0.4 if queue == "slow" else 0.0) + 0.15 * reassignments
    features = BreachRiskFeatures(
        fraction_elapsed=frac,
        remaining_business_minutes=(1 - frac) * 480,
        elapsed_hours=frac * 8,
        priority=priority,
        tier="standard",
        queue=queue,
        reassignments=reassignments,
        hour_of_week=rng.randrange(168),
        extra={"channel": rng.choice(["email", "chat"])},
    )
    return features, risk > 1.2


def test_exact_auc() -> None:
    assert exact_roc_auc([0.1, 0.4, 0.35, 0.8], [False, False, True, True]) == 0.75
    assert exact_roc_auc([0.5, 0.5], [False, True]) == 0.5  # ties count a half
    assert exact_roc_auc([0.2, 0.9], [True, True]) is None


def test_prior_before_learning() -> None:
    model = BreachRiskModel()
    assert model.auc is None and model.version == MODEL_VERSION
    low = model.predict_one(BreachRiskFeatures(fraction_elapsed=0.2))
    high = model.predict_one(BreachRiskFeatures(fraction_elapsed=1.2))
    assert low == prior_probability(0.2) < 0.25 and high > 0.9
    assert prior_probability(0.0) == pytest.approx(0.2, abs=0.01)


def test_learns_separable_task() -> None:
    rng = random.Random(3)
    model = BreachRiskModel(warmup=50, shuffle=500)
    for _ in range(3000):
        features, label = synthetic(rng)
        model.learn_one(features, label)
    held_out = [synthetic(rng) for _ in range(1000)]
    scores = [model.predict_one(f) for f, _ in held_out]
    auc = exact_roc_auc(scores, [y for _, y in held_out])
    assert auc is not None and auc > 0.9
    # The queue matters beyond the fraction elapsed: the model found it.
    slow = model.predict_one(BreachRiskFeatures(fraction_elapsed=0.9, queue="slow"))
    fast = model.predict_one(BreachRiskFeatures(fraction_elapsed=0.9, queue="fast"))
    assert slow > fast
    assert model.auc is not None and model.auc > 0.8
    assert all(0.0 <= s <= 1.0 for s in scores)


def test_pickle_round_trip() -> None:
    rng = random.Random(5)
    model = BreachRiskModel()
    for _ in range(300):
        model.learn_one(*synthetic(rng))
    copy = pickle.loads(pickle.dumps(model))
    probe, label = synthetic(rng)
    assert copy.predict_one(probe) == model.predict_one(probe)
    assert copy.auc == model.auc and copy.n_seen == 300
    copy.learn_one(probe, label)
    model.learn_one(probe, label)
    assert copy.predict_one(probe) == model.predict_one(probe)


def test_shuffle_buffer_learns_each_outcome_once_in_mixed_order() -> None:
    rng = random.Random(7)
    examples = [synthetic(rng) for _ in range(700)]
    # Outcomes arrive in same-label bursts, as a ticket's snapshots do when it closes.
    examples.sort(key=lambda e: e[1])
    model = BreachRiskModel(shuffle=200, seed=1)
    learned: list[bool] = []
    real_learn = model.classifier.learn
    model.classifier.learn = lambda keys, label: (learned.append(label), real_learn(keys, label))
    for features, label in examples:
        model.learn_one(features, label)
    assert model.n_seen == 700 and model.n_learned == len(learned) == 500
    assert len(model.buffer) == 200
    # The buffer mixes the bursts: arrival order switches label once, the learned
    # order many times.
    switches = sum(a != b for a, b in itertools.pairwise(learned))
    assert switches > 50
    # Same seed, same order: the run is reproducible.
    again = BreachRiskModel(shuffle=200, seed=1)
    for features, label in examples:
        again.learn_one(features, label)
    probe = examples[0][0]
    assert again.predict_one(probe) == model.predict_one(probe)


def test_state_of_the_earlier_model_resumes_on_the_prior() -> None:
    old = BreachRiskModel.__new__(BreachRiskModel)
    old.__setstate__({"n_learned": 900, "warmup": 200, "recent": [(0.7, True), (0.2, False)]})
    assert old.n_learned == 0 and old.auc == 1.0
    probe = BreachRiskFeatures(fraction_elapsed=0.4)
    assert old.predict_one(probe) == prior_probability(0.4)
