"""Prequential evaluation over a small synthetic ticket file."""

from __future__ import annotations

import json
import random
from pathlib import Path

import polars as pl
import pytest
from rich.table import Table

from evaluation.text import evaluate_endava, parse_published_results, render_table

_WORDS = {
    0: ("laptop", "screen", "keyboard", "monitor", "docking"),
    1: ("access", "permission", "folder", "share", "rights"),
    2: ("salary", "payslip", "leave", "holiday", "contract"),
}
_FILLER = ("hi", "please", "thanks", "regards", "team", "today", "need", "help")

_PUBLISHED = """# Published
## category (classes with >=100 samples)
| class | precision | recall | f1 | support |
|---|---|---|---|---|
| 0 | 0.9 | 0.9 | 0.9 | 10 |
| avg/total | 0.80 | 0.82 | 0.79 | 9711 |
"""


def _write_tickets(path: Path, n: int = 400) -> None:
    rng = random.Random(0)
    rows = []
    for _ in range(n):
        # Imbalanced like real helpdesks: the majority class is 60 % of tickets.
        category = rng.choices([0, 1, 2], weights=[6, 3, 1])[0]
        words = rng.sample(_WORDS[category], 2) + rng.sample(_FILLER, 3)
        rows.append(
            {
                "title": words[0],
                "body": " ".join(words[1:]),
                "ticket_type": 1,
                "category": category,
                "sub_category1": 0,
                "sub_category2": 0,
                "business_service": 0,
                "urgency": 3 if category != 2 else 1,
                "impact": 4,
            }
        )
    pl.DataFrame(rows).write_csv(path)


def test_evaluate_endava_reports_every_model(tmp_path: Path) -> None:
    data = tmp_path / "tickets.csv"
    _write_tickets(data)
    (tmp_path / "published_results.md").write_text(_PUBLISHED, encoding="utf-8")
    results = evaluate_endava(data)
    json.dumps(results)  # the CLI prints it as JSON
    assert results["rows"] == 400
    assert results["history_rows"] == 0
    assert set(results["targets"]) == {"category", "urgency"}
    category = results["targets"]["category"]
    assert set(category["models"]) == {"online_arow", "majority", "river_bow_multinomial_nb"}
    for scores in category["models"].values():
        assert scores["n"] == 400
        assert {"accuracy", "weighted_f1", "macro_f1", "examples_per_s"} <= set(scores)
    online, majority = category["models"]["online_arow"], category["models"]["majority"]
    assert online["accuracy"] > majority["accuracy"] + 0.2
    assert online["weighted_f1"] > majority["weighted_f1"]
    assert category["published"] == {"precision": 0.8, "recall": 0.82, "f1": 0.79, "support": 9711}
    assert results["targets"]["urgency"]["published"] is None
    assert isinstance(render_table(results), Table)
    # The batch SVM reference: cross-validated on the same rows, beside the online model.
    svm = category["batch_svm_cv"]
    assert svm["folds"] == 5 and 0.5 < svm["accuracy"] <= 1.0
    assert category["gap_to_batch_svm"] == pytest.approx(svm["accuracy"] - online["accuracy"])
    assert "online idf" in online["model"]["features"]
    assert "idf" not in results["targets"]["urgency"]["models"]["online_arow"]["model"]["features"]


def test_warm_start_scores_only_the_rest(tmp_path: Path) -> None:
    data = tmp_path / "tickets.csv"
    _write_tickets(data)
    results = evaluate_endava(data, warm_start_fraction=0.25, targets=("category",))
    assert results["history_rows"] == 100
    models = results["targets"]["category"]["models"]
    assert all(scores["n"] == 300 for scores in models.values())
    assert models["online_arow"]["accuracy"] > 0.9
    assert results["targets"]["category"]["published"] is None


def test_parse_published_results_without_file(tmp_path: Path) -> None:
    assert parse_published_results(tmp_path / "missing.md") == {}
