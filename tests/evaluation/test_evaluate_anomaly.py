"""Anomaly evaluation on synthetic weekly-rhythm volume with injected incidents."""

from __future__ import annotations

import numpy as np
from rich.console import Console

from evaluation.anomaly import evaluate_anomalies, render_table


def test_small_run_finds_incidents_and_stays_quiet_otherwise() -> None:
    results = evaluate_anomalies(seed=1, weeks=5, incidents=6)
    assert results["incidents"] == 6
    # Honest bounds: some incidents (small categories at night) are invisible even to an
    # oracle that knows the true mean, so recall is bounded by the oracle's.
    assert results["precision"] >= 0.8
    assert results["recall"] >= 0.5
    assert results["recall"] <= results["oracle_recall"] + 0.2
    assert results["monday_morning_false_alerts"] == 0
    assert results["clean_run_monday_morning_alerts"] == 0
    assert results["clean_run_alerts"] <= 2
    for incident in results["incident_details"]:
        if incident["detected"]:
            assert 0 <= incident["delay_hours"] < incident["hours"]
    console = Console(width=200, record=True)
    console.print(render_table([results]))
    assert "precision" in console.export_text()


def test_same_seed_same_result() -> None:
    first = evaluate_anomalies(seed=3, weeks=4, incidents=3)
    second = evaluate_anomalies(seed=3, weeks=4, incidents=3)
    first.pop("seconds")
    second.pop("seconds")
    assert first == second


def test_slow_agents_are_found_by_the_breach_rate_series_alone() -> None:
    results = evaluate_anomalies(seed=4, weeks=5, incidents=5, breach_share=1.0)
    assert {d["kind"] for d in results["incident_details"]} == {"breach"}
    assert results["precision_breach"] == 1.0
    assert 0.4 <= results["recall_breach"] <= results["oracle_recall"] + 0.2
    assert results["clean_run_breach_alerts"] == 0
    # A single slow team is named by the overall series' top driver.
    assert results["top_driver_names_category"] == 1.0


def test_volume_floods_at_the_usual_breach_share_raise_no_breach_rate_alert() -> None:
    # The flooded hours bring more targets and more breaches, but not a higher share.
    results = evaluate_anomalies(seed=3, weeks=5, incidents=6, breach_share=0.0)
    assert results["recall_volume"] >= 0.5
    assert results["precision_breach"] is None  # no breach-rate alert at all


def test_labelled_series_are_scored_by_windows_beside_the_baseline() -> None:
    from evaluation.anomaly import (
        LabelledSeries,
        evaluate_labelled,
        generate_labelled_series,
        nab_score,
        render_labelled_table,
    )

    series = generate_labelled_series(5, length=1200)
    assert {s.name.split("_")[0] for s in series} >= {"spikes", "drop", "level", "variance"}
    assert all(len(s.windows) == len(s.anomalies) >= 1 for s in series)
    probe = LabelledSeries(
        "p", series[0].start, series[0].bucket, np.zeros(1000), [500], [(450, 550)]
    )
    early, late = nab_score([455], probe), nab_score([545], probe)
    assert early["raw"] > late["raw"] > 0 > nab_score([], probe)["raw"]
    assert nab_score([455, 800], probe)["raw"] < early["raw"]  # a false alarm costs
    result = evaluate_labelled([5])
    summary = result["summary"]
    assert set(summary) == {"detector", "windowed_gaussian"}
    assert summary["detector"]["windows"] == sum(
        len(s.windows) for s in generate_labelled_series(5)
    )
    assert summary["detector"]["score"] > summary["windowed_gaussian"]["score"]
    Console(width=120, record=True).print(render_labelled_table(result))
