"""Forecast backtest command on a small synthetic hourly CSV with the real file's columns."""

from __future__ import annotations

import csv
import json
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from evaluation.forecast import evaluate_forecast, holiday_closures, main, render_table

START = datetime(2016, 3, 1)


def office_counts(days: int, seed: int, scale: float = 1.0) -> np.ndarray:
    hours = np.arange(days * 24)
    hour_of_day = hours % 24
    working = np.where(((hours // 24 + START.weekday()) % 7) < 5, 1.0, 0.1)
    rate = 0.3 + scale * 15.0 * np.exp(-((hour_of_day - 12.0) ** 2) / 12.0) * working
    return np.random.default_rng(seed).poisson(rate)


def write_total(path: Path, days: int = 31) -> Path:
    counts = office_counts(days, seed=7)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["timestamp", "opened"])
        for i, count in enumerate(counts):
            writer.writerow([(START + timedelta(hours=i)).strftime("%Y-%m-%d %H:%M:%S"), count])
    return path


def test_total_series_backtest(tmp_path: Path) -> None:
    path = write_total(tmp_path / "hourly_opened_incidents.csv")
    results = evaluate_forecast(path, start="2016-03-01", end="2016-03-31")
    total = results["series"]["total"]
    assert list(results["series"]) == ["total"]
    day, week = total["day_ahead"], total["week_ahead"]
    assert day["origins"] == 10  # origins on days 21..30
    assert week["origins"] == 4  # the week ahead must end inside the window
    assert day["mase"] < day["mase_seasonal_naive"]
    assert day["mase"] < 1.0
    assert day["mase"] <= day["mase_seasonal_median"]
    assert day["mase_mstl"] is not None
    assert 0.7 <= day["coverage"] <= 1.0
    assert total["fit_seconds_mean"] > 0
    assert total["volume"] > 0
    assert "Amaral" in results["dataset"]
    Console(width=120, record=True).print(render_table(results))


def test_categories_are_evaluated_with_total(tmp_path: Path) -> None:
    path = tmp_path / "by_category.csv"
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["timestamp", "category", "opened"])
        for category, seed, scale in (("network", 1, 1.0), ("software", 2, 0.5)):
            for i, count in enumerate(office_counts(28, seed, scale)):
                stamp = (START + timedelta(hours=i)).strftime("%Y-%m-%d %H:%M:%S")
                writer.writerow([stamp, category, count])
    results = evaluate_forecast(path, start="2016-03-01", end="2016-03-28", method="poisson")
    assert set(results["series"]) == {"total", "network", "software"}
    series = results["series"]
    assert series["total"]["volume"] == series["network"]["volume"] + series["software"]["volume"]
    assert series["network"]["methods"] == {"poisson": 7}


def test_main_prints_table_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_total(tmp_path / "hourly.csv", days=24)
    main([str(path), "--end", "2016-03-24", "--method", "seasonal_naive"])
    out = capsys.readouterr().out
    assert "day_ahead" in out
    payload = json.loads(out[out.index("{") :])
    assert payload["series"]["total"]["day_ahead"]["origins"] == 3
    assert payload["series"]["total"]["day_ahead"]["mase"] == pytest.approx(
        payload["series"]["total"]["day_ahead"]["mase_seasonal_naive"]
    )


def test_missing_columns_are_reported(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("when,opened\n2016-03-01 00:00:00,1\n")
    with pytest.raises(ValueError, match="timestamp"):
        evaluate_forecast(path)


def test_holiday_calendar_becomes_closures(tmp_path: Path) -> None:
    days = holiday_closures("BR", date(2016, 3, 1), date(2016, 5, 31))
    assert date(2016, 4, 21) in days and date(2016, 1, 1) not in days
    with pytest.raises(ValueError, match="ZZ"):
        holiday_closures("ZZ", date(2016, 3, 1), date(2016, 5, 31))
    path = write_total(tmp_path / "hourly.csv")
    results = evaluate_forecast(
        path, start="2016-03-01", end="2016-03-31", holidays="BR", references=["seasonal_median"]
    )
    assert results["closures"] == ["2016-03-25"]  # Good Friday
    assert "mase_mstl" not in results["series"]["total"]["day_ahead"]
