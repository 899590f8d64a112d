"""Online text classifiers: prequential metrics, determinism, drift, cold start."""

from __future__ import annotations

import pickle
import random

import pytest

from models.text_classifier import (
    INTENTS,
    MAX_NGRAM_WORD_CHARS,
    HashedTextFeatures,
    IntentClassifier,
    MultiLabelTextClassifier,
    OnlineTextClassifier,
    Prediction,
)

_VOCAB = {
    "billing": ("invoice", "charge", "refund", "payment", "card", "price", "bill"),
    "technical": ("crash", "error", "timeout", "server", "bug", "upload", "exception"),
    "account": ("password", "login", "locked", "username", "reset", "profile", "signin"),
}
_NOISE = ("please", "hello", "thanks", "today", "team", "ticket", "issue", "help", "again")


def synthetic_stream(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """Texts made of a few category words among shared filler words."""
    rng = random.Random(seed)
    labels = sorted(_VOCAB)
    stream = []
    for _ in range(n):
        label = rng.choice(labels)
        words = rng.sample(_VOCAB[label], 3) + rng.sample(_NOISE, 4)
        rng.shuffle(words)
        stream.append((" ".join(words), label))
    return stream


def test_learns_a_separable_task_prequentially() -> None:
    model = OnlineTextClassifier(n_features=2**14)
    for text, label in synthetic_stream(600):
        model.learn_one(text, label)
    assert model.metrics.n_seen == 600
    assert OnlineTextClassifier.learn_one.__annotations__["return"] == "None"
    assert model.metrics.accuracy > 0.9
    assert model.metrics.weighted_f1 > 0.9
    assert model.predict_one("my invoice shows a wrong charge").label == "billing"


def test_first_prediction_of_an_unseen_label_counts_as_wrong() -> None:
    model = OnlineTextClassifier(n_features=2**10)
    assert model.predict_one("anything") == Prediction(None, 0.0, False, model.version)
    model.learn_one("printer jammed", "hardware")
    model.learn_one("printer jammed", "hardware")
    # Third example brings a new label: the model could only have said "hardware".
    model.learn_one("salary slip missing", "payroll")
    assert model.metrics.n_seen == 3
    assert model.metrics.accuracy == pytest.approx(1 / 3)


def test_version_changes_when_the_model_learns() -> None:
    model = OnlineTextClassifier(n_features=2**10, name="cat")
    before = model.version
    model.learn_one("printer jammed", "hardware")
    assert model.version != before
    assert model.version.startswith("cat-")


def test_same_seed_gives_identical_models() -> None:
    stream = synthetic_stream(300, seed=3)
    texts, labels = [t for t, _ in stream], [lab for _, lab in stream]
    first, second = (OnlineTextClassifier(n_features=2**12, seed=7) for _ in range(2))
    for model in (first, second):
        model.fit_history(texts[:200], labels[:200], passes=3)
        model.learn_many(texts[200:], labels[200:])
    probe = "error when I upload my invoice"
    assert first.predict_proba_one(probe) == second.predict_proba_one(probe)
    assert first.metrics == second.metrics


def test_pickle_round_trip_predicts_and_learns_identically() -> None:
    model = OnlineTextClassifier(n_features=2**12)
    stream = synthetic_stream(400, seed=1)
    for text, label in stream[:300]:
        model.learn_one(text, label)
    restored = pickle.loads(pickle.dumps(model))
    for text, label in stream[300:]:
        assert restored.predict_proba_one(text) == model.predict_proba_one(text)
        model.learn_one(text, label)
        restored.learn_one(text, label)
    assert restored.metrics == model.metrics
    assert restored.version == model.version


def test_history_does_not_count_toward_prequential_metrics() -> None:
    stream = synthetic_stream(200, seed=2)
    model = OnlineTextClassifier(n_features=2**12)
    model.fit_history([t for t, _ in stream], [lab for _, lab in stream], passes=2)
    assert model.metrics.n_seen == 0
    assert model.n_learned == 400
    assert model.predict_one("password reset locked").label == "account"


def test_adwin_reports_drift_when_the_label_mapping_flips() -> None:
    model = OnlineTextClassifier(n_features=2**12)
    stream = synthetic_stream(1500, seed=4)
    flip = {"billing": "technical", "technical": "account", "account": "billing"}
    for i, (text, label) in enumerate(stream):
        model.learn_one(text, label if i < 800 else flip[label])
    drift_free = OnlineTextClassifier(n_features=2**12)
    for text, label in stream[:800]:
        drift_free.learn_one(text, label)
    assert drift_free.metrics.drift_detected_count == 0
    assert model.metrics.drift_detected_count >= 1
    assert model.metrics.last_drift_at is not None
    assert model.metrics.last_drift_at > 800


def test_auto_apply_only_above_threshold_and_after_min_examples() -> None:
    stream = synthetic_stream(300, seed=5)
    strict = OnlineTextClassifier(n_features=2**12, apply_threshold=0.7, min_examples=100)
    for i, (text, label) in enumerate(stream):
        prediction = strict.predict_one(text)
        if i < 100:
            assert not prediction.auto_apply
        else:
            assert prediction.auto_apply == (prediction.confidence >= 0.7)
        strict.learn_one(text, label)
    assert strict.predict_one("invoice refund charge payment").auto_apply
    assert not strict.predict_one("hello thanks team").auto_apply
    never = pickle.loads(pickle.dumps(strict))
    never.apply_threshold = 1.01
    assert not never.predict_one("invoice refund charge payment").auto_apply


def test_probabilities_are_a_distribution() -> None:
    model = OnlineTextClassifier(["a", "b", "c"], n_features=2**10)
    model.learn_one("alpha words", "a")
    proba = model.predict_proba_one("alpha words")
    assert set(proba) == {"a", "b", "c"}
    assert sum(proba.values()) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("text", "intent"),
    [
        ("I want my money back for order 123", "refund"),
        ("how do I export my data", "how_to"),
        ("please cancel my subscription at the end of the month", "cancellation"),
        ("I can't log in, my password reset email never comes", "account_access"),
        ("the app crashes with an error when I save", "bug_report"),
        ("why was I charged twice on my invoice", "billing_question"),
        ("Ich möchte mein Abo kündigen", "cancellation"),
        ("je n'arrive pas à me connecter", "account_access"),
        ("quiero un reembolso", "refund"),
        ("thanks, great product, love it", "feedback"),
    ],
)
def test_intent_cold_start(text: str, intent: str) -> None:
    assert IntentClassifier().predict_one(text).label == intent


def test_intent_cold_start_does_not_auto_apply() -> None:
    model = IntentClassifier()
    assert set(model.labels) == set(INTENTS)
    assert model.metrics.n_seen == 0
    assert not model.predict_one("I want my money back for order 123").auto_apply


def test_multilabel_learns_two_labels() -> None:
    model = MultiLabelTextClassifier(["billing", "urgent"], n_features=2**12)
    rng = random.Random(0)
    for _ in range(60):
        extra = rng.choice(_NOISE)
        model.learn_one(f"invoice charged twice {extra}", {"billing"})
        model.learn_one(f"outage site down {extra}", {"urgent"})
        model.learn_one(f"invoice outage {extra}", {"billing", "urgent"})
        model.learn_one(f"hello {extra}", set())
    assert model.labels_above("invoice and an outage") == {"billing", "urgent"}
    assert model.labels_above("invoice charged") == {"billing"}
    assert model.labels_above("hello there") == set()
    assert model.metrics["n_seen"] == 240
    assert model.metrics["micro_f1"] > 0.9
    assert model.metrics["macro_f1"] > 0.9
    restored = pickle.loads(pickle.dumps(model))
    assert restored.predict_one("invoice outage") == model.predict_one("invoice outage")


def test_character_ngrams_of_a_pasted_megabyte_word_are_bounded() -> None:
    features = HashedTextFeatures(2**18, char_ngrams=(3, 5))
    head = "x" * MAX_NGRAM_WORD_CHARS
    long_word = head + "y" * 1_000_000
    indices, _ = features.transform(long_word)
    # The word's own feature, the n-grams of its first characters and the intercept.
    assert len(indices) <= 3 * (MAX_NGRAM_WORD_CHARS + 2)
    assert len(features._word_features(long_word)) < 3 * (MAX_NGRAM_WORD_CHARS + 2)
    # Up to the limit, every n-gram counts: the word's end changes its features.
    a, _ = features.transform(head[:-1] + "a")
    b, _ = features.transform(head[:-1] + "b")
    assert len(set(a.tolist()) ^ set(b.tolist())) > 2


def test_idf_and_replay_learn_and_survive_a_pickle() -> None:
    stream = synthetic_stream(500, seed=4)
    model = OnlineTextClassifier(n_features=2**12, idf=True, replay=2, replay_capacity=50)
    for text, label in stream[:400]:
        model.learn_one(text, label)
    assert model.metrics.accuracy > 0.9
    # Replayed updates do not count as learned examples; the memory stays bounded.
    assert model.n_learned == 400 and len(model._memory) == 50
    restored = pickle.loads(pickle.dumps(model))
    for text, label in stream[400:]:
        assert restored.predict_proba_one(text) == model.predict_proba_one(text)
        model.learn_one(text, label)
        restored.learn_one(text, label)
    assert restored.metrics == model.metrics


def test_idf_weighs_a_word_seen_everywhere_below_a_telling_one() -> None:
    model = OnlineTextClassifier(n_features=2**12, idf=True)
    for text, label in synthetic_stream(200, seed=5):
        model.learn_one(text + " ticket", label)
    indices, values = model._vector("ticket refund")
    weight = dict(zip(indices.tolist(), values.tolist(), strict=True))
    features = model.features
    common = features.term_weights("ticket")[0][0]
    telling = features.term_weights("refund")[0][0]
    assert weight[telling] > 1.5 * weight[common]
    plain = dict(zip(*(a.tolist() for a in features.transform("ticket refund")), strict=True))
    assert plain[telling] == pytest.approx(plain[common])


def test_model_saved_before_idf_resumes_without_it() -> None:
    model = OnlineTextClassifier(n_features=2**10)
    model.learn_one("printer jammed", "hardware")
    state = model.__dict__.copy()
    for key in ("idf", "replay", "replay_capacity", "_df", "_n_docs", "_memory", "_rng"):
        del state[key]
    old = OnlineTextClassifier.__new__(OnlineTextClassifier)
    old.__setstate__(state)
    assert old.predict_one("printer jammed").label == "hardware"
    old.learn_one("salary slip missing", "payroll")
    assert old.n_learned == 2 and not old.idf
