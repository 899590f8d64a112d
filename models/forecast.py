"""Hourly ticket-volume forecasts with prediction intervals, for staffing a week ahead.

Helpdesk arrivals follow the clock: an hour-of-day profile that differs between busy and
quiet days, and a level that drifts slowly. Which days are quiet is read from the data
(a Friday–Saturday weekend, a half day on Thursdays), never assumed. Known closures
(public holidays, planned shutdowns) come in as a calendar; unlabelled outage days are
recognised as outliers and left out of the profile. Methods:

* ``"profile"`` — a robust hour-of-week profile. Each day of the week gets a level (the
  recency-weighted mean of its daily totals) and an hour-of-day shape, shrunk towards the
  shape shared by its *day type*: the days of the week are split into busy and quiet
  types at the largest gap of their log levels, when that gap is wide. Days whose total
  is far from their weekday's weighted median (more than ``outlier_mads`` robust
  deviations) are outages or unlabelled holidays and are not learned; calendar closures
  are not learned either, and are forecast at the quietest day's profile. The last day's
  surprise is carried forward, fading at its in-sample day-to-day autocorrelation (a
  bridge day after a holiday runs low too). Intervals are negative-binomial: hour-level
  over-dispersion plus the spread of day levels, both measured in sample.
* ``"poisson"`` — a Poisson GLM (statsmodels) on the log rate with daily Fourier terms,
  day-of-week effects and a quiet-day-type × hour-of-day interaction (types learned as
  above), fitted with exponentially decaying weights; negative-binomial intervals.
* ``"mstl"`` — MSTL decomposition (periods 24 and 168) of ``log1p`` volumes; the last
  weekly seasonal pattern is repeated on a flat level. Intervals are normal on the log
  scale, mapped back. A statsmodels reference rather than a production choice.
* ``"seasonal_median"`` — the median of the same hour in the last four weeks, intervals
  from the spread of those weeks.
* ``"seasonal_naive"`` — the value one week earlier, with intervals from the spread of
  week-on-week changes.

``method="auto"`` replays the last two weeks of history day by day (each day forecast
from the days before it), and picks whichever of :data:`AUTO_CANDIDATES` had the smaller
mean absolute error; the profile, first, keeps its place unless another is clearly better
(:data:`AUTO_MARGIN`), since two weeks of replay are a noisy judge. The four-week median
is the safeguard for series the profile cannot describe. Histories shorter than the
replay needs use the profile (a week is the least any method accepts).

Example:
    >>> from datetime import datetime
    >>> import numpy as np
    >>> hours = np.arange(24 * 7 * 4)
    >>> rate = 5 + 4 * np.sin(2 * np.pi * hours / 24)
    >>> history = np.random.default_rng(0).poisson(rate)
    >>> model = HourlyForecaster(method="profile").fit(history, datetime(2024, 1, 1))
    >>> fc = model.forecast(horizon=24, level=0.9)
    >>> len(fc.values), bool((fc.lower >= 0).all()), fc.start
    (24, True, datetime.datetime(2024, 1, 29, 0, 0))

Kept as one module: the weekly profile, the outage handling and the prediction
intervals are fitted together from one history.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import numpy as np
import statsmodels.api as sm
from scipy import stats
from statsmodels.tsa.seasonal import MSTL

HOURS_PER_DAY = 24
HOURS_PER_WEEK = 168
DAYS_PER_WEEK = 7
METHODS = ("profile", "poisson", "mstl", "seasonal_median", "seasonal_naive")
"""Methods :class:`HourlyForecaster` knows."""
AUTO_CANDIDATES = ("profile", "seasonal_median")
"""Methods ``"auto"`` chooses between, in the order it prefers them on ties."""
AUTO_MARGIN = 0.9
"""A fallback replaces the profile only when its replay error is below this share of the
profile's: switching on noise costs more than it gains."""

# A week of history is the least a weekly profile can be read from.
_MIN_HISTORY = HOURS_PER_WEEK
# MSTL needs two full cycles of its longest period.
_MIN_MSTL = 2 * HOURS_PER_WEEK
# The auto replay forecasts each of the last two weeks' days from the days before it,
# and each of those fits needs two weeks of its own.
_AUTO_DAYS = 14
_MIN_AUTO = 2 * HOURS_PER_WEEK + _AUTO_DAYS * HOURS_PER_DAY
# Day types: days of the week whose log levels are split by a gap wider than this (a
# factor of 1.6) behave differently enough to keep separate hour-of-day shapes.
_DAY_TYPE_GAP = math.log(1.6)
# The robust spread of day levels is floored, so a very regular series does not call
# every ordinary day an outlier.
_MIN_DAY_SPREAD = 0.05
# Weeks the seasonal median looks back over.
_MEDIAN_WEEKS = 4


@dataclass(frozen=True, eq=False)
class Forecast:
    """Hourly point forecasts with a prediction interval.

    Args:
        start: Hour of the first forecast value.
        values: Point forecasts, one per hour, never negative.
        lower: Lower bound of the prediction interval, never negative.
        upper: Upper bound of the prediction interval.
        method: Method that produced the forecast.
        level: Nominal coverage of the interval (e.g. 0.9).
    """

    start: datetime
    values: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    method: str
    level: float = 0.9

    @property
    def hours(self) -> list[datetime]:
        """The hour each value belongs to."""
        return [self.start + timedelta(hours=i) for i in range(len(self.values))]


def _as_array(history: Sequence[float] | np.ndarray) -> np.ndarray:
    y = np.asarray(history, dtype=float)
    if y.ndim != 1:
        raise ValueError("history must be one-dimensional")
    if not np.isfinite(y).all():
        raise ValueError("history must not contain NaN or infinite values")
    if (y < 0).any():
        raise ValueError("history holds volumes, which cannot be negative")
    return y


def seasonal_naive(
    history: Sequence[float] | np.ndarray, horizon: int, period: int = HOURS_PER_WEEK
) -> np.ndarray:
    """Repeat the last ``period`` values of ``history`` for ``horizon`` steps.

    Example:
        >>> seasonal_naive([1, 2, 3, 4], horizon=3, period=2).tolist()
        [3.0, 4.0, 3.0]
    """
    y = np.asarray(history, dtype=float)
    if len(y) < period:
        raise ValueError(f"seasonal naive needs at least {period} values, got {len(y)}")
    last = y[-period:]
    return np.resize(last, horizon).astype(float)


def seasonal_median(
    history: Sequence[float] | np.ndarray,
    horizon: int,
    period: int = HOURS_PER_WEEK,
    cycles: int = _MEDIAN_WEEKS,
) -> np.ndarray:
    """Median of the same position in the last ``cycles`` periods (fewer if the history is short).

    Example:
        >>> seasonal_median([1, 9, 3, 5, 2, 7], horizon=3, period=2, cycles=3).tolist()
        [2.0, 7.0, 2.0]
    """
    y = np.asarray(history, dtype=float)
    available = min(cycles, len(y) // period)
    if available < 1:
        raise ValueError(f"seasonal median needs at least {period} values, got {len(y)}")
    past = y[len(y) - available * period :].reshape(available, period)
    return np.resize(np.median(past, axis=0), horizon).astype(float)


def mase(
    actual: Sequence[float] | np.ndarray,
    predicted: Sequence[float] | np.ndarray,
    history: Sequence[float] | np.ndarray,
    period: int = HOURS_PER_WEEK,
) -> float:
    """Mean absolute scaled error: forecast MAE over the in-sample seasonal-naive MAE.

    The scale is the mean absolute ``period``-lag difference of ``history`` (Hyndman &
    Koehler, 2006), so 1.0 means "as good in-sample as repeating last week".

    Example:
        >>> mase([2, 4], [3, 3], history=[1, 2, 3, 4], period=2)
        0.5
    """
    a = np.asarray(actual, dtype=float)
    p = np.asarray(predicted, dtype=float)
    h = np.asarray(history, dtype=float)
    if a.shape != p.shape:
        raise ValueError("actual and predicted must have the same length")
    if len(h) <= period:
        raise ValueError(f"MASE needs more than {period} history values, got {len(h)}")
    scale = float(np.mean(np.abs(h[period:] - h[:-period])))
    if scale == 0.0:
        raise ValueError("history has no seasonal variation: MASE is undefined")
    return float(np.mean(np.abs(a - p)) / scale)


def day_types(levels: Sequence[float] | np.ndarray) -> np.ndarray:
    """Split days of the week into busy (0) and quiet (1) types by their levels.

    The split is at the largest gap between the sorted log levels, and only when that gap
    is wider than a factor of 1.6; otherwise every day is of one type.

    Example:
        >>> day_types([300, 310, 290, 305, 280, 40, 35]).tolist()
        [0, 0, 0, 0, 0, 1, 1]
        >>> day_types([300, 310, 290, 305, 40, 35, 280]).tolist()  # a Friday–Saturday weekend
        [0, 0, 0, 0, 1, 1, 0]
    """
    logs = np.log1p(np.asarray(levels, dtype=float))
    order = np.sort(logs)
    gaps = np.diff(order)
    types = np.zeros(len(logs), dtype=int)
    if len(gaps) == 0 or gaps.max() <= _DAY_TYPE_GAP:
        return types
    cut = order[int(np.argmax(gaps))]
    types[logs <= cut] = 1
    return types


def _fourier(t: np.ndarray, period: int, harmonics: int) -> np.ndarray:
    angles = 2.0 * np.pi * np.outer(t, np.arange(1, harmonics + 1)) / period
    return np.hstack([np.sin(angles), np.cos(angles)])


def _weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    order = np.argsort(values)
    cumulative = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(cumulative, cumulative[-1] / 2.0)])


def _nb_interval(
    mean: np.ndarray, alpha: float | np.ndarray, level: float
) -> tuple[np.ndarray, np.ndarray]:
    """Central interval of a negative binomial with variance ``mean + alpha * mean**2``."""
    tail = (1.0 - level) / 2.0
    alpha_arr = np.broadcast_to(np.asarray(alpha, dtype=float), mean.shape)
    poisson = alpha_arr <= 1e-9
    size = 1.0 / np.where(poisson, 1.0, alpha_arr)
    prob = size / (size + mean)
    lower = np.where(poisson, stats.poisson.ppf(tail, mean), stats.nbinom.ppf(tail, size, prob))
    upper = np.where(
        poisson, stats.poisson.ppf(1.0 - tail, mean), stats.nbinom.ppf(1.0 - tail, size, prob)
    )
    return np.nan_to_num(lower), np.nan_to_num(upper)


@dataclass(frozen=True)
class _Days:
    """The history laid out as one row per calendar day (NaN outside the history)."""

    grid: np.ndarray  # days × 24
    first_day: date
    offset: int  # hours of the first day before the history starts
    complete: np.ndarray  # bool per day: all 24 hours are in the history
    weekday: np.ndarray  # 0 = Monday
    closed: np.ndarray  # bool per day: a calendar closure

    @classmethod
    def of(cls, y: np.ndarray, start: datetime, closures: Collection[date]) -> _Days:
        offset = start.hour
        days = -(-(offset + len(y)) // HOURS_PER_DAY)
        padded = np.full(days * HOURS_PER_DAY, np.nan)
        padded[offset : offset + len(y)] = y
        grid = padded.reshape(days, HOURS_PER_DAY)
        first_day = start.date()
        dates = [first_day + timedelta(days=d) for d in range(days)]
        return cls(
            grid=grid,
            first_day=first_day,
            offset=offset,
            complete=~np.isnan(grid).any(axis=1),
            weekday=np.array([d.weekday() for d in dates]),
            closed=np.array([d in closures for d in dates], dtype=bool),
        )


class HourlyForecaster:
    """Forecast an hourly count series with prediction intervals (see the module docstring).

    Args:
        method: ``"auto"`` or one of :data:`METHODS`.
        half_life_weeks: Half-life of the weight of past weeks (profile and Poisson GLM),
            so a drifting level is followed.
        daily_harmonics: Fourier pairs for the hour-of-day profile of the Poisson GLM.
        weekend_harmonics: Fourier pairs for how quiet days reshape that profile (GLM).
        day_correction: Carry the last day's surprise forward (profile and GLM).
        shape_prior: Days' worth of the day type's shared shape that each weekday's own
            hour-of-day shape is shrunk towards (profile).
        outlier_mads: Robust deviations of a day's log total from its weekday's median
            beyond which the day is an outage, not learned (profile).

    Example:
        >>> from datetime import datetime
        >>> history = [2, 8, 9, 3] * (7 * 6 * 6)  # repeats exactly: every method agrees
        >>> model = HourlyForecaster().fit(history, datetime(2024, 1, 1))
        >>> model.forecast(horizon=4).values.round(3).tolist()
        [2.0, 8.0, 9.0, 3.0]
    """

    def __init__(
        self,
        method: str = "auto",
        *,
        half_life_weeks: float = 2.0,
        daily_harmonics: int = 10,
        weekend_harmonics: int = 6,
        day_correction: bool = True,
        shape_prior: float = 8.0,
        outlier_mads: float = 3.0,
    ) -> None:
        if method != "auto" and method not in METHODS:
            raise ValueError(f"method must be 'auto' or one of {METHODS}, got {method!r}")
        self.method = method
        self.half_life_weeks = half_life_weeks
        self.daily_harmonics = daily_harmonics
        self.weekend_harmonics = weekend_harmonics
        self.day_correction = day_correction
        self.shape_prior = shape_prior
        self.outlier_mads = outlier_mads
        self.chosen: str | None = None
        self.backtest_mae: dict[str, float] = {}
        self.closures: frozenset[date] = frozenset()
        self._history = np.empty(0)
        self._start: datetime | None = None

    # -- fitting -----------------------------------------------------------------------

    def fit(
        self,
        history: Sequence[float] | np.ndarray,
        start: datetime,
        *,
        closures: Collection[date] = (),
    ) -> HourlyForecaster:
        """Fit on hourly volumes whose first value is the hour ``start``.

        Args:
            history: Hourly volumes, oldest first.
            start: The hour of the first value (its wall clock defines days and weekdays).
            closures: Business-calendar dates the desk is closed (holidays, shutdowns), in
                the history and in the horizon: not learned, and forecast as quiet days.

        Raises:
            ValueError: When the history is shorter than a week or holds invalid values.
        """
        y = _as_array(history)
        if len(y) < _MIN_HISTORY:
            raise ValueError(f"need at least {_MIN_HISTORY} hourly values, got {len(y)}")
        self._history = y
        self._start = start
        self.closures = frozenset(closures)
        self.backtest_mae = {}
        if self.method != "auto":
            self.chosen = self.method
        elif len(y) < _MIN_AUTO:
            self.chosen = "profile"
        else:
            self.chosen = self._select(y, start)
        return self

    def _select(self, y: np.ndarray, start: datetime) -> str:
        """Replay the last days one at a time and keep the candidate with the least error."""
        # Origins at the last midnights, so each replayed day is a whole calendar day.
        last_origin = len(y) - HOURS_PER_DAY - (start.hour + len(y)) % HOURS_PER_DAY
        origins = [last_origin - d * HOURS_PER_DAY for d in range(_AUTO_DAYS)]
        for name in AUTO_CANDIDATES:
            errors = []
            for origin in origins:
                point, _, _ = self._predict(name, y[:origin], start, HOURS_PER_DAY, 0.9)
                errors.append(float(np.mean(np.abs(point - y[origin : origin + HOURS_PER_DAY]))))
            self.backtest_mae[name] = float(np.mean(errors))
        first, *others = AUTO_CANDIDATES
        best = min(others, key=self.backtest_mae.__getitem__)
        return best if self.backtest_mae[best] < AUTO_MARGIN * self.backtest_mae[first] else first

    # -- forecasting -------------------------------------------------------------------

    def forecast(self, horizon: int = HOURS_PER_WEEK, level: float = 0.9) -> Forecast:
        """Forecast the ``horizon`` hours that follow the history.

        Raises:
            RuntimeError: When called before :meth:`fit`.
            ValueError: When the horizon or level is out of range.
        """
        if self._start is None or self.chosen is None:
            raise RuntimeError("call fit() before forecast()")
        if horizon < 1:
            raise ValueError("horizon must be at least 1 hour")
        if not 0.0 < level < 1.0:
            raise ValueError("level must lie strictly between 0 and 1")
        point, lower, upper = self._predict(self.chosen, self._history, self._start, horizon, level)
        first = self._start + timedelta(hours=len(self._history))
        return Forecast(first, point, lower, upper, self.chosen, level)

    def _predict(
        self, method: str, y: np.ndarray, start: datetime, horizon: int, level: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if method == "profile":
            point, lower, upper = self._profile(y, start, horizon, level)
        elif method == "poisson":
            point, lower, upper = self._poisson(y, start, horizon, level)
        elif method == "mstl" and len(y) >= _MIN_MSTL:
            point, lower, upper = self._mstl(y, horizon, level)
        elif method == "seasonal_median":
            point, lower, upper = self._median(y, horizon, level)
        else:
            point, lower, upper = self._naive(y, horizon, level)
        point = np.maximum(point, 0.0)
        return point, np.clip(lower, 0.0, point), np.maximum(upper, point)

    # -- robust profile ----------------------------------------------------------------

    def _profile(
        self, y: np.ndarray, start: datetime, horizon: int, level: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        days = _Days.of(y, start, self.closures)
        n_days = len(days.grid)
        age_weeks = (n_days - 1 - np.arange(n_days)) / DAYS_PER_WEEK
        recency = 0.5 ** (age_weeks / self.half_life_weeks)
        totals = np.nansum(days.grid, axis=1)
        usable = days.complete & ~days.closed
        if not usable.any():
            usable = days.complete.copy()
        if not usable.any():  # under a day in all: one flat rate
            flat = np.full(horizon, float(y.mean()))
            lower, upper = _nb_interval(flat, 0.0, level)
            return flat, lower, upper

        # Outage days: far from the weighted median of their own weekday's totals.
        medians = np.full(DAYS_PER_WEEK, np.nan)
        for weekday in range(DAYS_PER_WEEK):
            own = usable & (days.weekday == weekday)
            if own.any():
                medians[weekday] = _weighted_median(totals[own], recency[own])
        fallback = float(np.nanmedian(medians))
        medians = np.where(np.isnan(medians), fallback, medians)
        surprise = np.log1p(totals) - np.log1p(medians[days.weekday])
        spread = 1.4826 * float(np.median(np.abs(surprise[usable] - np.median(surprise[usable]))))
        spread = max(spread, _MIN_DAY_SPREAD)
        good = usable & (np.abs(surprise) <= self.outlier_mads * spread)

        # Weekday profiles: recency-weighted mean hour by hour over good days.
        weights = np.where(good, recency, 0.0)
        rows = np.nan_to_num(days.grid)
        own_weight = np.array([weights[days.weekday == k].sum() for k in range(DAYS_PER_WEEK)])
        profiles = np.zeros((DAYS_PER_WEEK, HOURS_PER_DAY))
        for k in range(DAYS_PER_WEEK):
            mask = days.weekday == k
            if own_weight[k] > 0:
                profiles[k] = weights[mask] @ rows[mask] / own_weight[k]
        seen = own_weight > 0
        levels = profiles.sum(axis=1)
        if not seen.all():  # a weekday never seen whole: borrow the median weekday
            typical = profiles[seen][int(np.argsort(levels[seen])[seen.sum() // 2])]
            profiles[~seen] = typical
            levels = profiles.sum(axis=1)
        shapes = profiles / np.maximum(levels, 1e-9)[:, None]
        types = day_types(levels)
        for kind in np.unique(types):
            members = types == kind
            shared = own_weight[members] @ shapes[members]
            if own_weight[members].sum() > 0:
                shared = shared / own_weight[members].sum()
            else:
                shared = shapes[members].mean(axis=0)
            mix = own_weight[members][:, None]
            shapes[members] = (mix * shapes[members] + self.shape_prior * shared) / (
                mix + self.shape_prior
            )
        profiles = levels[:, None] * shapes
        quiet = profiles[int(np.argmin(levels))]

        def expected_day(index: int) -> np.ndarray:
            day = days.first_day + timedelta(days=int(index))
            return quiet if day in self.closures else profiles[day.weekday()]

        # Day-level surprise of every whole day against its expectation (AR(1) over days).
        complete = np.flatnonzero(days.complete)
        log_ratio = np.array(
            [np.log1p(totals[d]) - np.log1p(expected_day(int(d)).sum()) for d in complete]
        )
        rho = _lag_one(log_ratio) if self.day_correction else 0.0
        last_ratio = float(log_ratio[-1]) if len(log_ratio) else 0.0
        last_whole = int(complete[-1]) if len(complete) else n_days - 1

        first_hour = days.offset + len(y)
        point = np.empty(horizon)
        steps_ahead = np.empty(horizon)
        for i in range(horizon):
            index, hour = divmod(first_hour + i, HOURS_PER_DAY)
            point[i] = expected_day(index)[hour]
            steps_ahead[i] = index - last_whole
        point = point * np.exp(last_ratio * rho**steps_ahead)

        # Within-day over-dispersion (given the day's level) and the spread of day levels.
        scaled = np.array([expected_day(d) for d in range(n_days)])
        day_factor = np.ones(n_days)
        day_factor[complete] = np.exp(log_ratio)
        fitted = scaled * day_factor[:, None]
        in_day = good & days.complete
        alpha_hour = _nb_dispersion(rows[in_day].ravel(), fitted[in_day].ravel(), None)
        innovations = log_ratio[1:] - rho * log_ratio[:-1] if len(log_ratio) > 1 else log_ratio
        day_var = float(np.mean(innovations**2)) if len(innovations) else 0.0
        # The day-level variance grows with the days ahead as the AR(1) forgets the last day.
        fade = 1.0 - rho ** (2.0 * np.maximum(steps_ahead, 1.0))
        fade = fade / max(1.0 - rho**2, 1e-9)
        alpha = alpha_hour + np.expm1(day_var * fade)
        lower, upper = _nb_interval(point, alpha, level)
        return point, lower, upper

    # -- Poisson GLM -------------------------------------------------------------------

    def _design(self, first_hour: int, n: int, quiet_days: np.ndarray) -> np.ndarray:
        """Regressors for ``n`` hours from absolute hour-of-week index ``first_hour``."""
        t = np.arange(first_hour, first_hour + n)
        hour_of_day = t % HOURS_PER_DAY
        day = (t // HOURS_PER_DAY) % DAYS_PER_WEEK
        quiet = quiet_days[day].astype(float)[:, None]
        day_dummies = (day[:, None] == np.arange(1, DAYS_PER_WEEK)[None, :]).astype(float)
        daily = _fourier(hour_of_day, HOURS_PER_DAY, self.daily_harmonics)
        quiet_shape = quiet * _fourier(hour_of_day, HOURS_PER_DAY, self.weekend_harmonics)
        return np.hstack([np.ones((n, 1)), daily, day_dummies, quiet_shape])

    def _poisson(
        self, y: np.ndarray, start: datetime, horizon: int, level: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        # Hour-of-week of the first value, Monday 00h = 0, so terms line up with the calendar.
        origin = start.weekday() * HOURS_PER_DAY + start.hour
        n = len(y)
        if not y.any():
            # A log-rate model has no finite fit to all zeros; nothing arrived, so predict so.
            zeros = np.zeros(horizon)
            return zeros, zeros, zeros
        t = np.arange(origin, origin + n)
        weekday = (t // HOURS_PER_DAY) % DAYS_PER_WEEK
        per_weekday = np.array(
            [y[weekday == k].mean() if (weekday == k).any() else 0.0 for k in range(DAYS_PER_WEEK)]
        )
        quiet_days = day_types(per_weekday * HOURS_PER_DAY)
        x = self._design(origin, n, quiet_days)
        age_weeks = (n - 1 - np.arange(n)) / HOURS_PER_WEEK
        weights = 0.5 ** (age_weeks / self.half_life_weeks)
        with warnings.catch_warnings():
            # Hours that are almost always 0 (nights, quiet days) push IRLS towards very
            # negative log-rates; the fit is still right, only slow to "converge".
            warnings.simplefilter("ignore")
            result = sm.GLM(y, x, family=sm.families.Poisson(), var_weights=weights).fit(maxiter=50)
        fitted = np.asarray(result.fittedvalues, dtype=float)
        mean = np.asarray(
            result.predict(self._design(origin + n, horizon, quiet_days)), dtype=float
        )
        if self.day_correction:
            mean = mean * _day_level_factors(y, fitted, horizon)
        lower, upper = _nb_interval(mean, _nb_dispersion(y, fitted, weights), level)
        return mean, lower, upper

    # -- references --------------------------------------------------------------------

    def _mstl(
        self, y: np.ndarray, horizon: int, level: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        # The log scale keeps the quiet night hours from getting the busy hours' noise.
        z = np.log1p(y)
        result = MSTL(z, periods=(HOURS_PER_DAY, HOURS_PER_WEEK)).fit()
        # MSTL silently drops a period the series does not hold twice over, and then
        # returns a single seasonal column.
        seasonal = np.asarray(result.seasonal, dtype=float).reshape(len(z), -1)
        trend = np.asarray(result.trend, dtype=float)
        resid = np.asarray(result.resid, dtype=float)
        level_now = float(np.mean(trend[-HOURS_PER_DAY:] + resid[-HOURS_PER_DAY:]))
        pattern = seasonal[-HOURS_PER_WEEK:].sum(axis=1)
        centre = level_now + np.resize(pattern, horizon)
        # Remainder noise plus how far the level moves in a week: a deliberately simple
        # spread that does not pretend to know the trend.
        weekly_moves = trend[HOURS_PER_WEEK:] - trend[:-HOURS_PER_WEEK]
        sigma = math.sqrt(float(np.var(resid)) + float(np.mean(weekly_moves**2)))
        z_score = float(stats.norm.ppf(0.5 + level / 2.0))
        return (
            np.expm1(centre),
            np.expm1(centre - z_score * sigma),
            np.expm1(centre + z_score * sigma),
        )

    @staticmethod
    def _median(
        y: np.ndarray, horizon: int, level: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        point = seasonal_median(y, horizon)
        weeks = min(_MEDIAN_WEEKS, len(y) // HOURS_PER_WEEK)
        past = y[len(y) - weeks * HOURS_PER_WEEK :].reshape(weeks, HOURS_PER_WEEK)
        deviations = (past - np.median(past, axis=0)).ravel()
        tail = (1.0 - level) / 2.0
        low, high = np.quantile(deviations, [tail, 1.0 - tail])
        return point, point + low, point + high

    @staticmethod
    def _naive(
        y: np.ndarray, horizon: int, level: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        point = seasonal_naive(y, horizon)
        changes = y[HOURS_PER_WEEK:] - y[:-HOURS_PER_WEEK]
        if len(changes) == 0:
            return point, point, point
        tail = (1.0 - level) / 2.0
        low, high = np.quantile(changes, [tail, 1.0 - tail])
        return point, point + low, point + high


def _lag_one(values: np.ndarray) -> float:
    """Lag-one autocorrelation, clipped to [0, 0.95] (only persistence is carried forward)."""
    if len(values) < 3:
        return 0.0
    centred = values - values.mean()
    denom = float(np.sum(centred**2))
    rho = float(np.sum(centred[1:] * centred[:-1]) / denom) if denom > 0 else 0.0
    return min(max(rho, 0.0), 0.95)


def _nb_dispersion(y: np.ndarray, mean: np.ndarray, weights: np.ndarray | None) -> float:
    """Moment estimate of the NB2 dispersion alpha in var = mu + alpha * mu^2 (0 = Poisson)."""
    w = np.ones_like(mean) if weights is None else weights
    excess = (y - mean) ** 2 - mean
    denom = float(np.sum(w * mean**2))
    if denom <= 0.0:
        return 0.0
    return max(float(np.sum(w * excess)) / denom, 0.0)


def _day_level_factors(y: np.ndarray, fitted: np.ndarray, horizon: int) -> np.ndarray:
    """Multipliers carrying the last day's surprise forward, fading day by day.

    Whole days run above or below the profile together (holidays, bridge days, outages),
    and such a day is often followed by a similar one. The log ratio of actual to fitted
    daily totals is treated as an AR(1) across days: its lag-one autocorrelation, fitted
    in sample, sets how much of the last day's ratio the next days keep.
    """
    days = len(y) // HOURS_PER_DAY
    if days < 3:
        return np.ones(horizon)
    tail = days * HOURS_PER_DAY
    # +1 keeps near-empty days (quiet nights of a small queue) from giving huge ratios.
    actual = y[-tail:].reshape(days, HOURS_PER_DAY).sum(axis=1) + 1.0
    expected = fitted[-tail:].reshape(days, HOURS_PER_DAY).sum(axis=1) + 1.0
    ratio = np.log(actual / expected)
    rho = _lag_one(ratio)
    days_ahead = np.arange(horizon) // HOURS_PER_DAY + 1
    return np.exp(ratio[-1] * rho**days_ahead)
