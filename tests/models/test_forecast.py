"""Hourly volume forecaster on synthetic series with daily and weekly seasonality."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pytest

from models.forecast import (
    HOURS_PER_DAY,
    HOURS_PER_WEEK,
    METHODS,
    Forecast,
    HourlyForecaster,
    day_types,
    mase,
    seasonal_median,
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


def test_seasonal_median_uses_up_to_four_weeks() -> None:
    history = np.concatenate([np.full(HOURS_PER_WEEK, v) for v in (100.0, 1.0, 2.0, 3.0, 50.0)])
    # Only the last four weeks count: the median of 1, 2, 3, 50 is 2.5, not 3.
    assert seasonal_median(history, horizon=2).tolist() == [2.5, 2.5]
    assert seasonal_median(history[:HOURS_PER_WEEK], horizon=1).tolist() == [100.0]
    with pytest.raises(ValueError):
        seasonal_median(np.ones(10), horizon=1)


def test_day_types_follow_the_data_not_a_fixed_weekend() -> None:
    assert day_types([300, 310, 290, 305, 280, 40, 35]).tolist() == [0, 0, 0, 0, 0, 1, 1]
    assert day_types([300, 310, 290, 305, 40, 35, 280]).tolist() == [0, 0, 0, 0, 1, 1, 0]
    # Seven-day service with a mild Sunday dip is one kind of day.
    assert day_types([300, 310, 290, 305, 280, 260, 230]).tolist() == [0] * 7


def gulf_rate(days: int) -> np.ndarray:
    """A contact centre whose weekend is Friday–Saturday, busiest on Sunday."""
    hours = np.arange(days * HOURS_PER_DAY)
    hour_of_day = hours % HOURS_PER_DAY
    weekday = (hours // HOURS_PER_DAY + START.weekday()) % 7
    daytime = np.exp(-((hour_of_day - 11.0) ** 2) / 14.0)
    level = np.select([weekday == 6, (weekday == 4) | (weekday == 5)], [1.3, 0.1], 1.0)
    return 0.3 + 30.0 * daytime * level


def gulf_series(days: int, seed: int, outages: int = 3) -> np.ndarray:
    """Poisson arrivals with a few whole-day outages (the intake channel down: near zero)."""
    rng = np.random.default_rng(seed)
    y = rng.poisson(gulf_rate(days)).astype(float)
    for day in rng.choice(np.arange(7, days - 7), size=outages, replace=False):
        y[day * HOURS_PER_DAY : (day + 1) * HOURS_PER_DAY] = rng.poisson(0.2, HOURS_PER_DAY)
    return y


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_learns_a_friday_saturday_weekend_and_beats_the_four_week_median(seed: int) -> None:
    days = 10 * 7
    y = gulf_series(days, seed)
    ours, median = [], []
    for origin_day in range(days - 21, days):
        origin = origin_day * HOURS_PER_DAY
        history, actual = y[:origin], y[origin : origin + HOURS_PER_DAY]
        fc = HourlyForecaster().fit(history, START).forecast(HOURS_PER_DAY)
        ours.append(np.abs(fc.values - actual).mean())
        median.append(np.abs(seasonal_median(history, HOURS_PER_DAY) - actual).mean())
    assert np.mean(ours) < np.mean(median)
    # The quiet days are the ones the data say: Friday and Saturday, not Saturday and Sunday.
    week = HourlyForecaster("profile").fit(y, START).forecast(HOURS_PER_WEEK)
    first_weekday = week.start.weekday()
    totals = {(first_weekday + d) % 7: week.values[d * 24 : (d + 1) * 24].sum() for d in range(7)}
    assert totals[4] < 0.3 * totals[3] and totals[5] < 0.3 * totals[3]
    assert totals[6] > totals[3]


def test_unlabelled_outage_days_are_not_learned() -> None:
    clean = synthetic(6, seed=4)
    broken = clean.copy()
    # The same weekday as the forecast day, one week back: a naive profile would halve it.
    outage = (6 * 7 - 7) * HOURS_PER_DAY
    broken[outage : outage + HOURS_PER_DAY] = 0.0
    model = HourlyForecaster("profile", day_correction=False)
    expected = model.fit(clean, START).forecast(HOURS_PER_DAY).values.sum()
    got = model.fit(broken, START).forecast(HOURS_PER_DAY).values.sum()
    assert got == pytest.approx(expected, rel=0.1)


def test_calendar_closures_are_expected_quiet_and_not_learned() -> None:
    y = synthetic(6, seed=5)
    # A public holiday on the Monday two weeks back: the desk was closed.
    holiday = START.date() + timedelta(days=4 * 7)
    at = (holiday - START.date()).days * HOURS_PER_DAY
    closed = y.copy()
    closed[at : at + HOURS_PER_DAY] = np.random.default_rng(0).poisson(0.5, HOURS_PER_DAY)
    model = HourlyForecaster("profile", day_correction=False)
    normal = model.fit(y, START).forecast(HOURS_PER_DAY).values.sum()
    with_holiday = model.fit(closed, START, closures={holiday}).forecast(HOURS_PER_DAY)
    assert with_holiday.values.sum() == pytest.approx(normal, rel=0.05)
    # A closure in the horizon (next Monday) is forecast at the quiet days' level.
    next_monday = START.date() + timedelta(days=6 * 7)
    fc = model.fit(y, START, closures={next_monday}).forecast(2 * HOURS_PER_DAY)
    monday, tuesday = fc.values[:24].sum(), fc.values[24:].sum()
    assert monday < 0.4 * tuesday
    assert fc.upper[:24].sum() < tuesday


def test_profile_intervals_cover_near_their_level() -> None:
    inside: list[float] = []
    for seed in range(4):
        y = synthetic(8, seed)
        history, actual = y[:-HOURS_PER_WEEK], y[-HOURS_PER_WEEK:]
        fc = HourlyForecaster("profile").fit(history, START).forecast(HOURS_PER_WEEK, level=0.9)
        inside.append(float(((actual >= fc.lower) & (actual <= fc.upper)).mean()))
    assert 0.82 <= np.mean(inside) <= 0.98


def test_history_may_start_and_end_mid_day() -> None:
    y = synthetic(5)[5 : -(2 * 24 + 12)]
    start = START + timedelta(hours=5)
    fc = HourlyForecaster("profile").fit(y, start).forecast(30)
    assert fc.start == start + timedelta(hours=len(y))
    # The next hour is noon on a Friday, the daytime peak: well above the night that follows.
    assert (fc.start.weekday(), fc.start.hour) == (4, 12)
    assert fc.values[0] > 3 * fc.values[12]


def test_auto_records_its_replay() -> None:
    model = HourlyForecaster().fit(synthetic(6), START)
    assert set(model.backtest_mae) == {"profile", "seasonal_median"}
    assert model.chosen in ("profile", "seasonal_median")
    short = HourlyForecaster().fit(synthetic(2), START)
    assert short.chosen == "profile" and short.backtest_mae == {}
