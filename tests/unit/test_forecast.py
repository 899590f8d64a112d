"""Hourly volume forecaster on synthetic series with daily and weekly seasonality."""

from __future__ import annotations

import time
from datetime import datetime, timedelta

import numpy as np
import pytest

from models.forecast import (
    HOURS_PER_WEEK,
    METHODS,
    Forecast,
    HourlyForecaster,
    mase,
    seasonal_naive,
)

START = datetime(2024, 1, 1)  # a Monday, so hour 0 is Monday 00h


def weekly_rate(hours: np.ndarray) -> np.ndarray:
    """Office-hours arrivals: a daytime bump on working days, little at weekends."""
    hour_of_day = hours % 24
    weekday = (hours // 24) % 7
    daytime = np.exp(-((hour_of_day - 13.0) ** 2) / 18.0)
    working = np.where(weekday < 5, 1.0, 0.15)
    return 0.5 + 20.0 * daytime * working


def synthetic(weeks: int, seed: int = 0) -> np.ndarray:
    hours = np.arange(weeks * HOURS_PER_WEEK)
    return np.random.default_rng(seed).poisson(weekly_rate(hours)).astype(float)


@pytest.mark.parametrize("method", ["auto", *METHODS])
def test_forecast_shape_and_bounds(method: str) -> None:
    y = synthetic(6)
    fc = HourlyForecaster(method).fit(y, START).forecast(horizon=HOURS_PER_WEEK, level=0.9)
    assert isinstance(fc, Forecast)
    assert fc.start == START + timedelta(hours=len(y))
    assert len(fc.values) == len(fc.lower) == len(fc.upper) == HOURS_PER_WEEK
    assert (fc.lower >= 0).all()
    assert (fc.lower <= fc.values).all()
    assert (fc.values <= fc.upper).all()
    assert fc.hours[1] == fc.start + timedelta(hours=1)
    assert fc.method == method or method == "auto"


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_beats_seasonal_naive_and_covers(seed: int) -> None:
    y = synthetic(9, seed)
    history, actual = y[:-HOURS_PER_WEEK], y[-HOURS_PER_WEEK:]
    fc = HourlyForecaster().fit(history, START).forecast(horizon=HOURS_PER_WEEK, level=0.9)
    ours = mase(actual, fc.values, history)
    naive = mase(actual, seasonal_naive(history, HOURS_PER_WEEK), history)
    assert ours < 1.0
    assert ours < naive
    inside = (actual >= fc.lower) & (actual <= fc.upper)
    assert 0.8 <= inside.mean() <= 1.0


def test_intervals_widen_with_level() -> None:
    model = HourlyForecaster("poisson").fit(synthetic(5), START)
    narrow = model.forecast(48, level=0.5)
    wide = model.forecast(48, level=0.95)
    assert (wide.upper >= narrow.upper).all()
    assert (wide.lower <= narrow.lower).all()
    assert wide.upper.sum() > narrow.upper.sum()


def test_calendar_alignment_follows_start() -> None:
    # The same counts starting on a Saturday put the busy days two days later.
    y = synthetic(6)
    saturday = START - timedelta(days=2)
    on_monday = HourlyForecaster("poisson").fit(y, START).forecast(24)
    shifted = HourlyForecaster("poisson").fit(np.roll(y, 48), saturday).forecast(24)
    assert on_monday.start.weekday() == 0
    assert shifted.start.weekday() == 5
    assert shifted.values.sum() < on_monday.values.sum()


def test_zeros_are_forecast_as_zero() -> None:
    fc = HourlyForecaster().fit(np.zeros(4 * HOURS_PER_WEEK), START).forecast(24)
    assert np.allclose(fc.values, 0.0, atol=1e-6)
    assert (fc.lower == 0).all()


def test_fits_three_months_quickly() -> None:
    y = synthetic(13)
    # The first fit in a process pays for lazy imports inside statsmodels and scipy.
    HourlyForecaster("poisson").fit(y[: 2 * HOURS_PER_WEEK], START).forecast(24)
    started = time.perf_counter()
    HourlyForecaster().fit(y, START).forecast(HOURS_PER_WEEK)
    assert time.perf_counter() - started < 2.0


def test_seasonal_naive_and_mase() -> None:
    assert seasonal_naive([1, 2, 3], horizon=5, period=3).tolist() == [1, 2, 3, 1, 2]
    history = np.arange(10.0)
    # Seasonal-naive in-sample error with period 2 is exactly 2 per step.
    assert mase([5, 5], [4, 7], history, period=2) == pytest.approx(0.75)
    with pytest.raises(ValueError):
        mase([1], [1], [1, 1, 1], period=2)
    with pytest.raises(ValueError):
        seasonal_naive([1, 2], horizon=3, period=3)


def test_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        HourlyForecaster("sarimax")
    with pytest.raises(ValueError):
        HourlyForecaster().fit(np.ones(10), START)
    with pytest.raises(ValueError):
        HourlyForecaster().fit(-np.ones(HOURS_PER_WEEK), START)
    with pytest.raises(RuntimeError):
        HourlyForecaster().forecast()
    model = HourlyForecaster().fit(synthetic(3), START)
    with pytest.raises(ValueError):
        model.forecast(level=1.5)
