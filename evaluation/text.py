"""Prequential evaluation of the online text classifier on the Endava support tickets.

Rows are replayed in file order; each ticket (title and body) is first predicted, then
learned, as the pipeline does with human-corrected categories. Alongside the online model
two baselines show where it stands: the majority class seen so far, and River's default
bag-of-words + multinomial naive Bayes pipeline. The batch results published with the
dataset are parsed for reference (they come from a held-out split of the full data set,
so they are not directly comparable).

Run: ``python -m evaluation.text PATH/tickets_subset.csv.gz --warm-start 0.2``.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import polars as pl
from rich.table import Table
from river import feature_extraction, metrics, naive_bayes

from models.text_classifier import OnlineTextClassifier

TARGETS: tuple[str, ...] = ("category", "urgency")
HISTORY_PASSES = 3


class _Scores:
    """Accuracy, weighted and macro F1 of a prediction stream (macro: imbalanced labels)."""

    def __init__(self) -> None:
        self.accuracy = metrics.Accuracy()
        self.weighted_f1 = metrics.WeightedF1()
        self.macro_f1 = metrics.MacroF1()
        self.n = 0

    def update(self, truth: str, predicted: str | None) -> None:
        self.n += 1
        for metric in (self.accuracy, self.weighted_f1, self.macro_f1):
            metric.update(truth, predicted)

    def as_dict(self, seconds: float) -> dict[str, float | int]:
        return {
            "n": self.n,
            "accuracy": round(float(self.accuracy.get()), 4),
            "weighted_f1": round(float(self.weighted_f1.get()), 4),
            "macro_f1": round(float(self.macro_f1.get()), 4),
            "examples_per_s": round(self.n / seconds, 1) if seconds > 0 else 0.0,
        }


# Each target's model as the pipeline configures it (models/intelligence.py): categories
# use online idf, urgency is what the priority model learns, without it.
ONLINE_OPTIONS: dict[str, dict[str, Any]] = {
    "category": {"name": "category-arow", "idf": True},
    "urgency": {"name": "priority-arow"},
}


def _evaluate_online(
    texts: Sequence[str], labels: Sequence[str], n_history: int, seed: int, target: str
) -> dict[str, Any]:
    options = ONLINE_OPTIONS.get(target, {})
    model = OnlineTextClassifier(seed=seed, **options)
    started = time.perf_counter()
    if n_history:
        model.fit_history(texts[:n_history], labels[:n_history], passes=HISTORY_PASSES)
    history_s = time.perf_counter() - started
    scores = _Scores()
    predict_s = learn_s = 0.0
    for text, label in zip(texts[n_history:], labels[n_history:], strict=True):
        t0 = time.perf_counter()
        prediction = model.predict_one(text)
        t1 = time.perf_counter()
        model.learn_one(text, label)
        t2 = time.perf_counter()
        predict_s += t1 - t0
        learn_s += t2 - t1
        scores.update(label, prediction.label)
    result: dict[str, Any] = scores.as_dict(predict_s + learn_s)
    n = scores.n
    result |= {
        "predict_per_s": round(n / predict_s, 1) if predict_s else 0.0,
        "learn_per_s": round(n / learn_s, 1) if learn_s else 0.0,
        "history_s": round(history_s, 2),
        "drift_detected_count": model.metrics.drift_detected_count,
        "model": {
            "features": "hashed word uni+bigrams, sublinear tf, "
            + ("online idf, " if model.idf else "")
            + "L2, intercept",
            "n_features": model.features.n_features,
            "learner": "one-vs-rest AROW, Crammer-Singer updates",
            "regularization": model.regularization,
            "history_passes": HISTORY_PASSES if n_history else 0,
        },
    }
    return result


def _evaluate_majority(
    labels: Sequence[str], n_history: int, _texts: Sequence[str]
) -> dict[str, Any]:
    counts: Counter[str] = Counter(labels[:n_history])
    scores = _Scores()
    started = time.perf_counter()
    for label in labels[n_history:]:
        predicted = counts.most_common(1)[0][0] if counts else None
        scores.update(label, predicted)
        counts[label] += 1
    return scores.as_dict(time.perf_counter() - started)


def _evaluate_river_nb(
    labels: Sequence[str], n_history: int, texts: Sequence[str]
) -> dict[str, Any]:
    model = feature_extraction.BagOfWords() | naive_bayes.MultinomialNB()
    # River's pipeline types its input as a dict, but BagOfWords takes the raw string.
    # Naive Bayes is a count model: one pass over the history is its exact batch fit.
    for text, label in zip(texts[:n_history], labels[:n_history], strict=True):
        model.learn_one(text, label)  # type: ignore[arg-type]
    scores = _Scores()
    started = time.perf_counter()
    for text, label in zip(texts[n_history:], labels[n_history:], strict=True):
        predicted = model.predict_one(text)  # type: ignore[arg-type]
        scores.update(label, None if predicted is None else str(predicted))
        model.learn_one(text, label)  # type: ignore[arg-type]
    return scores.as_dict(time.perf_counter() - started)


def batch_svm_reference(
    texts: Sequence[str], labels: Sequence[str], *, folds: int = 5, seed: int = 0
) -> dict[str, Any] | None:
    """Cross-validated accuracy of a batch linear SVM on the same texts (scikit-learn).

    TF-IDF over word unigrams and bigrams with sublinear term frequency, ``LinearSVC`` with
    ``C=1``, shuffled k-fold: a standard, untuned batch reference for what a linear model
    can reach on this data when it sees most of it at once. None when scikit-learn is not
    installed (it is a development dependency) or a class is too small to split.
    """
    try:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.model_selection import KFold, cross_val_score
        from sklearn.pipeline import make_pipeline
        from sklearn.svm import LinearSVC
    except ImportError:
        return None
    if len(set(labels)) < 2 or len(texts) < folds * 2:
        return None
    started = time.perf_counter()
    pipeline = make_pipeline(
        TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True), LinearSVC(C=1.0)
    )
    scores = cross_val_score(
        pipeline, list(texts), list(labels), cv=KFold(folds, shuffle=True, random_state=seed)
    )
    return {
        "accuracy": round(float(scores.mean()), 4),
        "accuracy_std": round(float(scores.std()), 4),
        "folds": folds,
        "model": "tf-idf word 1-2 grams (sublinear) + LinearSVC(C=1), shuffled k-fold",
        "seconds": round(time.perf_counter() - started, 1),
    }


_BASELINES: dict[str, Callable[[Sequence[str], int, Sequence[str]], dict[str, Any]]] = {
    "majority": _evaluate_majority,
    "river_bow_multinomial_nb": _evaluate_river_nb,
}


def parse_published_results(path: Path) -> dict[str, dict[str, float]]:
    """The ``avg/total`` row of each section of the published results table.

    Returns ``{section: {"precision", "recall", "f1", "support"}}``; sections are keyed
    by the first word of their heading (``## category (classes ...)`` → ``category``).
    """
    if not path.exists():
        return {}
    results: dict[str, dict[str, float]] = {}
    section: str | None = None
    for line in path.read_text(encoding="utf-8").splitlines():
        heading = re.match(r"^#{2,}\s+(\w+)", line)
        if heading:
            section = heading.group(1).lower()
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if section and len(cells) == 5 and cells[0].lower() == "avg/total":
            try:
                values = [float(cell) for cell in cells[1:]]
            except ValueError:
                continue
            results[section] = dict(
                zip(("precision", "recall", "f1", "support"), values, strict=True)
            )
    return results


def load_tickets(path: Path) -> pl.DataFrame:
    """Tickets with a ``text`` column (title and body); labels as strings."""
    frame = pl.read_csv(path, infer_schema_length=10_000)
    return frame.with_columns(
        pl.concat_str(
            [pl.col("title").fill_null(""), pl.col("body").fill_null("")], separator="\n"
        ).alias("text")
    )


def evaluate_endava(
    path: Path,
    *,
    warm_start_fraction: float = 0.0,
    seed: int = 0,
    targets: Sequence[str] = TARGETS,
    published_path: Path | None = None,
    svm_reference: bool = True,
) -> dict[str, Any]:
    """Prequential accuracy and F1 per target for the online model and the baselines.

    With ``warm_start_fraction`` > 0 the first rows are learned as labelled history (the
    online model in several shuffled passes, the baselines in one) and the scores cover
    only the remaining rows, predicted before being learned. With ``svm_reference`` the
    cross-validated accuracy of a batch linear SVM on all rows is reported beside them.

    Returns a JSON-serialisable dict: ``{"dataset", "rows", "warm_start_fraction",
    "history_rows", "targets": {target: {"models": {...}, "published": {...} | None}}}``.
    """
    if not 0.0 <= warm_start_fraction < 1.0:
        raise ValueError("warm_start_fraction must be in [0, 1)")
    frame = load_tickets(path)
    texts: list[str] = frame["text"].to_list()
    n_history = int(len(texts) * warm_start_fraction)
    published = parse_published_results(published_path or path.parent / "published_results.md")
    report: dict[str, Any] = {
        "dataset": path.name,
        "rows": len(texts),
        "warm_start_fraction": warm_start_fraction,
        "history_rows": n_history,
        "targets": {},
    }
    for target in targets:
        labels = [str(v) for v in frame[target].cast(pl.Utf8).fill_null("missing").to_list()]
        models: dict[str, Any] = {
            "online_arow": _evaluate_online(texts, labels, n_history, seed, target)
        }
        for name, evaluate in _BASELINES.items():
            models[name] = evaluate(labels, n_history, texts)
        svm = batch_svm_reference(texts, labels, seed=seed) if svm_reference else None
        online = models["online_arow"]["accuracy"]
        report["targets"][target] = {
            "n_labels": len(set(labels)),
            "models": models,
            "batch_svm_cv": svm,
            "gap_to_batch_svm": None if svm is None else round(svm["accuracy"] - online, 4),
            "published": published.get(target),
        }
    return report


def render_table(results: dict[str, Any]) -> Table:
    """One row per target and model, with the published batch result beside them."""
    table = Table(
        title=(
            f"Prequential text classification on {results['dataset']} "
            f"({results['rows']} rows, history {results['history_rows']})"
        )
    )
    for column in ("target", "model", "accuracy", "weighted F1", "macro F1", "examples/s"):
        table.add_column(column, justify="left" if column in ("target", "model") else "right")
    for target, entry in results["targets"].items():
        for name, scores in entry["models"].items():
            table.add_row(
                target,
                name,
                f"{scores['accuracy']:.3f}",
                f"{scores['weighted_f1']:.3f}",
                f"{scores['macro_f1']:.3f}",
                f"{scores['examples_per_s']:,.0f}",
            )
        svm = entry.get("batch_svm_cv")
        if svm:
            table.add_row(
                target,
                f"batch linear SVM ({svm['folds']}-fold CV)",
                f"{svm['accuracy']:.3f}",
                "",
                "",
                "",
            )
        published = entry.get("published")
        if published:
            table.add_row(
                target,
                "published batch (held-out, full data)",
                f"{published['recall']:.3f}",
                f"{published['f1']:.3f}",
                "",
                "",
            )
    return table


def main(argv: Sequence[str] | None = None) -> None:
    from rich.console import Console

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", type=Path)
    parser.add_argument("--warm-start", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    results = evaluate_endava(args.path, warm_start_fraction=args.warm_start, seed=args.seed)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        Console().print(render_table(results))


if __name__ == "__main__":
    main()
