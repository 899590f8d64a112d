"""Online anomaly detection on ticket volume and SLA breach rate, aware of the weekly rhythm.

Helpdesk volume swings tenfold between a Sunday night and a Monday morning, so a single
mean and threshold would either page every Monday at 9:00 or sleep through a real
incident at night. :class:`VolumeAnomalyDetector` keeps, per series, a baseline for each
slot of the week (hour-of-week for hourly buckets) and compares every new bucket with
the baseline of its own slot:

* **Baseline**: exponentially decayed sums per slot, so recent weeks weigh most, shrunk
  (gamma-Poisson) towards the same slot on the same kind of day (weekday or weekend),
  which learns five (or two) times faster, and that in turn towards the series-wide
  rate. A young slot leans on the pooled profile; before the first full week only the
  profile exists. The predictive spread includes how uncertain the rate still is. Counts
  that score as anomalous are learned clipped to the edge of the normal range, so an
  incident does not teach the baseline that incidents are normal.
* **Score**: the upper tail probability of the count under a negative binomial with the
  baseline as mean (mid-p, so small discrete counts are judged fairly), expressed as a
  standard-normal z-score. Its variance-to-mean ratio is Poisson's 1 widened for relative
  noise (``cv``), for the uncertainty of a young baseline (``1 + 1/n``) and by an
  over-dispersion factor learned from the series' own residuals. A plain z-score would
  fire on a handful of tickets at night and a Poisson test on every busy Monday.
* **Rates**: with ``exposure`` (e.g. tickets whose SLA came due) the baseline is a rate
  per unit of exposure and the expectation is ``rate × exposure``, so SLA breaches are
  judged against how many tickets could breach, and a volume spike alone does not look
  like a breach-rate jump.
  A bucket without exposure carries no information and is neither scored nor learned;
  one with less than ``min_exposure`` is learned but never alerts (1 breach out of 2
  targets is not a rate).
* **Alerts**: only upward deviations alert, only after ``warmup`` of history, and only
  when the excess is material (``min_excess`` tickets and ``min_lift`` times expected).
  Consecutive anomalous buckets of a series form one :class:`AnomalyAlert`, issued on
  the first bucket, naming the drivers: the dimension values (category, channel,
  customer, keyword…) that grew most against their own baselines (:class:`DriverTracker`;
  for rate series against their own rate times their exposure in the bucket).

Example:
    >>> from datetime import UTC, datetime, timedelta
    >>> detector = VolumeAnomalyDetector(warmup=timedelta(days=7))
    >>> start = datetime(2024, 1, 1, tzinfo=UTC)
    >>> for h in range(24 * 14):  # two quiet weeks: 20 tickets/hour, 5 at night
    ...     at = start + timedelta(hours=h)
    ...     _ = detector.update("volume", at, 20.0 if 8 <= at.hour < 18 else 5.0)
    >>> score = detector.update("volume", start + timedelta(days=14, hours=3), 40.0)
    >>> score.is_anomaly, round(score.expected, 1)
    (True, 5.2)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from statistics import NormalDist
from typing import NamedTuple

_DAY_MINUTES = 24 * 60
_WEEK_MINUTES = 7 * _DAY_MINUTES
# The series-wide rate is a weak prior (in observations) for a slot of the day: it only
# matters where a slot has little exposure (breach rates at night), since counts swing
# tenfold over a day and a strong pull to the daily mean would flatten the rhythm.
_LEVEL_PRIOR = 0.5
# A prior also holds at least this many events' worth of exposure, so that a rare event
# (an SLA breach at 6 %) is not declared near-impossible in a slot that has merely not
# seen one in its few dozen tickets.
_PRIOR_EVENTS = 5.0
# Driver values of rate series start from the dimension-wide rate, worth this much exposure,
# so a value seen on a few targets is neither blamed nor cleared by its first outcomes.
_DRIVER_RATE_PRIOR = 20.0
# Scores are capped so that a count far in the tail (p below double precision) stays finite.
_Z_CAP = 30.0


class Driver(NamedTuple):
    """One dimension value that contributed to an anomaly's excess."""

    dimension: str
    value: str
    observed: float
    expected: float
    lift: float


@dataclass(frozen=True)
class AnomalyAlert:
    """An anomaly episode of one series, issued on its first anomalous bucket.

    Args:
        series: The series, e.g. ``volume:category=billing``.
        start: Start of the first anomalous bucket.
        observed: Count in that bucket.
        expected: Expected count from the baseline.
        score: Its z-score.
        drivers: Top contributors of the excess, largest first.
    """

    series: str
    start: datetime
    observed: float
    expected: float
    score: float
    drivers: list[Driver] = field(default_factory=list)


@dataclass(frozen=True)
class AnomalyScore:
    """How unusual one bucket of one series is.

    Args:
        series: The series.
        at: Bucket start.
        observed: Count in the bucket.
        expected: Expected count (``None`` before any history).
        score: Z-score on the square-root scale (0 without history).
        is_anomaly: Score, excess and lift above the bars, after the warm-up.
        threshold: The z-score bar.
        warming_up: True while the series has less history than the warm-up.
        alert: Set on the first anomalous bucket of an episode, ``None`` otherwise.
    """

    series: str
    at: datetime
    observed: float
    expected: float | None
    score: float
    is_anomaly: bool
    threshold: float
    warming_up: bool = False
    alert: AnomalyAlert | None = None


@dataclass
class _Decayed:
    """Decayed sums of counts and exposure: the rate is ``count / exposure``."""

    count: float = 0.0
    exposure: float = 0.0
    weight: float = 0.0  # decayed number of observations: how much to trust the rate

    def learn(self, count: float, exposure: float, decay: float) -> None:
        self.count = self.count * decay + count
        self.exposure = self.exposure * decay + exposure
        self.weight = self.weight * decay + 1.0

    @property
    def rate(self) -> float | None:
        return self.count / self.exposure if self.exposure > 0 else None


@dataclass
class _SeriesState:
    level: _Decayed = field(default_factory=_Decayed)
    weekly: dict[int, _Decayed] = field(default_factory=dict)
    daily: dict[int, _Decayed] = field(default_factory=dict)
    dispersion: float = 1.0
    first: datetime | None = None
    last: datetime | None = None
    last_anomaly: datetime | None = None


@dataclass
class _DriverBaseline:
    total: float = 0.0
    values: dict[str, dict[str, float]] = field(default_factory=dict)
    exposures: dict[str, dict[str, float]] = field(default_factory=dict)

    def __setstate__(self, state: dict[str, object]) -> None:
        # Snapshots taken before rate drivers existed carry no exposures.
        self.__dict__.update({"exposures": {}, **state})


class DriverTracker:
    """Per-series baselines of dimension values, to name what grew when an alert fires.

    Each value keeps a decayed count; divided by the series' decayed total it is the value's
    usual count per ticket, so its expectation in a bucket is that share of the series'
    expected count (the series baseline already carries the weekly rhythm). Values are
    ranked by their excess over that expectation. Each (series, dimension) keeps at most
    ``max_values`` values, evicting the smallest decayed counts (exposures for rate
    dimensions), so memory stays bounded when the dimension is customers or keywords.

    For rate series, a dimension may also come with each value's exposure in the bucket
    (e.g. SLA targets per category). Then a value's weight is its own decayed rate times
    that exposure, and the series' expected count is split by these weights: a category
    that merely had more targets expects more breaches, and only one whose breach rate
    rose stands out.

    Args:
        decay: Share of the history forgotten per update (0.01 per hour ≈ 3-day half-life).
        max_values: Values kept per series and dimension.
        top: Drivers reported.

    Example:
        >>> tracker = DriverTracker()
        >>> for _ in range(50):
        ...     tracker.learn("s", 10.0, {"channel": {"email": 8.0, "chat": 2.0}})
        >>> [d.value for d in tracker.explain("s", {"channel": {"email": 8, "chat": 12}}, 10.0)]
        ['chat']
    """

    def __init__(self, *, decay: float = 0.01, max_values: int = 200, top: int = 5) -> None:
        if not 0 < decay < 1:
            raise ValueError("decay must be in (0, 1)")
        self.decay = decay
        self.max_values = max_values
        self.top = top
        self._series: dict[str, _DriverBaseline] = {}

    def explain(
        self,
        series: str,
        drivers: Mapping[str, Mapping[str, float]],
        expected_total: float,
        exposures: Mapping[str, Mapping[str, float]] | None = None,
    ) -> list[Driver]:
        """Rank this bucket's values by excess over their baselines (before learning it).

        Args:
            series: The series whose baselines to use.
            drivers: Dimension → value → count in the bucket.
            expected_total: The series' expected count in the bucket.
            exposures: Dimension → value → exposure in the bucket, for rate series.
        """
        base = self._series.get(series)
        ranked: list[tuple[float, Driver]] = []
        for dimension, values in drivers.items():
            exposure = (exposures or {}).get(dimension)
            if exposure:
                expected_of = self._rate_expectations(base, dimension, exposure, expected_total)
            else:
                expected_of = self._share_expectations(base, dimension, values, expected_total)
            for value, observed in values.items():
                expected = expected_of.get(value, 0.0)
                excess = observed - expected
                if excess <= 0:
                    continue
                # Add-one smoothing keeps the lift finite for values never seen before.
                lift = (observed + 1.0) / (expected + 1.0)
                ranked.append((excess, Driver(dimension, value, observed, expected, lift)))
        ranked.sort(key=lambda item: (-item[0], item[1].dimension, item[1].value))
        return [driver for _, driver in ranked[: self.top]]

    @staticmethod
    def _share_expectations(
        base: _DriverBaseline | None,
        dimension: str,
        values: Mapping[str, float],
        expected_total: float,
    ) -> dict[str, float]:
        if base is None or base.total <= 0:
            return {}
        known = base.values.get(dimension, {})
        return {value: expected_total * known.get(value, 0.0) / base.total for value in values}

    @staticmethod
    def _rate_expectations(
        base: _DriverBaseline | None,
        dimension: str,
        exposure: Mapping[str, float],
        expected_total: float,
    ) -> dict[str, float]:
        counts = base.values.get(dimension, {}) if base else {}
        seen = base.exposures.get(dimension, {}) if base else {}
        seen_total = sum(seen.values())
        overall = sum(counts.values()) / seen_total if seen_total > 0 else None
        weights: dict[str, float] = {}
        for value, units in exposure.items():
            if overall is None:
                rate = 1.0  # no history: expect events in proportion to exposure
            else:
                prior = _DRIVER_RATE_PRIOR
                rate = (counts.get(value, 0.0) + prior * overall) / (seen.get(value, 0.0) + prior)
            weights[value] = rate * units
        total = sum(weights.values())
        if total <= 0:
            return {}
        return {value: expected_total * weight / total for value, weight in weights.items()}

    def learn(
        self,
        series: str,
        total: float,
        drivers: Mapping[str, Mapping[str, float]],
        exposures: Mapping[str, Mapping[str, float]] | None = None,
    ) -> None:
        """Fold one bucket's series count and dimension value counts into the baselines."""
        base = self._series.setdefault(series, _DriverBaseline())
        keep = 1.0 - self.decay
        base.total = base.total * keep + total
        rate_dimensions = exposures or {}
        for dimension in [*drivers, *(d for d in rate_dimensions if d not in drivers)]:
            values = drivers.get(dimension, {})
            exposure = rate_dimensions.get(dimension)
            known = base.values.setdefault(dimension, {})
            for value in known:
                known[value] *= keep
            for value, count in values.items():
                known[value] = known.get(value, 0.0) + float(count)
            size: Mapping[str, float] = known
            if exposure is not None or dimension in base.exposures:
                seen = base.exposures.setdefault(dimension, {})
                for value in known:
                    seen[value] = seen.get(value, 0.0) * keep
                for value, units in (exposure or {}).items():
                    seen[value] = seen.get(value, 0.0) + float(units)
                    known.setdefault(value, 0.0)
                size = seen  # a rate's support is its exposure: evict the least exposed
            if len(known) > self.max_values:
                # Smallest decayed sizes go first; ties by name keep eviction deterministic.
                order = sorted(known, key=lambda v: (size.get(v, 0.0), v))
                for value in order[: len(known) - self.max_values]:
                    del known[value]
                    base.exposures.get(dimension, {}).pop(value, None)


class VolumeAnomalyDetector:
    """Seasonal (slot-of-week) online detector of upward anomalies in count series.

    Feed every bucket of every series in time order, zeros included: a missing bucket
    is not a zero, and it breaks an alert episode. State per series is one entry per slot
    of the week and of the two day types, plus the capped driver baselines, so memory
    grows with the number of series (categories, not tickets) and never with history.

    Args:
        bucket: Bucket width; must divide a day (hourly and 15-minute both work).
        threshold: Z-score bar.
        warmup: History a series needs before it may alert.
        min_excess: Observed minus expected must reach this many tickets.
        min_lift: Observed must reach this multiple of expected.
        min_exposure: Rate series only: exposure a bucket needs to alert (fewer targets
            are learned but never judged: 1 breach out of 2 says little about a rate).
        weekly_decay: Weight kept by a slot's history per new observation of that slot
            (0.8: the last ~5 weeks count).
        daily_decay: The same for the pooled same-slot, same-day-type profile.
        level_decay: The same for the series-wide rate (per bucket).
        shrinkage: Observations' worth of the level above that each level starts from.
        cv: Relative noise assumed on top of Poisson noise (day-to-day level swings).
        dispersion_decay: Weight kept by the learned over-dispersion per observation.
        learn_clip: Z-score at which counts are clipped before they are learned.
        tz: Time zone whose wall clock defines the week (the customers' working hours).
        driver_tracker: Baselines for alert drivers (one with defaults when omitted).
    """

    def __init__(
        self,
        *,
        bucket: timedelta = timedelta(hours=1),
        threshold: float = 4.0,
        warmup: timedelta = timedelta(days=14),
        min_excess: float = 3.0,
        min_lift: float = 1.5,
        min_exposure: float = 5.0,
        weekly_decay: float = 0.8,
        daily_decay: float = 0.95,
        level_decay: float = 0.995,
        shrinkage: float = 2.0,
        cv: float = 0.1,
        dispersion_decay: float = 0.99,
        learn_clip: float = 3.0,
        tz: tzinfo = UTC,
        driver_tracker: DriverTracker | None = None,
    ) -> None:
        minutes = bucket.total_seconds() / 60
        if minutes <= 0 or minutes != int(minutes) or _DAY_MINUTES % int(minutes):
            raise ValueError("bucket must be a whole number of minutes that divides a day")
        self.bucket = bucket
        self.bucket_minutes = int(minutes)
        self._slots_per_day = _DAY_MINUTES // self.bucket_minutes
        self.threshold = threshold
        self.warmup = warmup
        self.min_excess = min_excess
        self.min_lift = min_lift
        self.min_exposure = min_exposure
        self.weekly_decay = weekly_decay
        self.daily_decay = daily_decay
        self.level_decay = level_decay
        self.shrinkage = shrinkage
        self.cv = cv
        self.dispersion_decay = dispersion_decay
        self.learn_clip = learn_clip
        self.tz = tz
        self.drivers = driver_tracker if driver_tracker is not None else DriverTracker()
        self._series: dict[str, _SeriesState] = {}

    @property
    def series(self) -> list[str]:
        """Series seen so far."""
        return sorted(self._series)

    def _slots(self, at: datetime) -> tuple[int, int]:
        local = at.astimezone(self.tz)
        minute_of_day = local.hour * 60 + local.minute
        weekly = (local.weekday() * _DAY_MINUTES + minute_of_day) // self.bucket_minutes
        weekend = 1 if local.weekday() >= 5 else 0
        return weekly, weekend * self._slots_per_day + minute_of_day // self.bucket_minutes

    def baseline(self, series: str, at: datetime) -> tuple[float, float] | None:
        """Expected rate for the bucket starting at ``at`` and its strength in exposure units.

        Gamma-Poisson shrinkage down three levels: the series-wide rate, then the same slot
        of the same day type, then the slot of the week. Each level starts from the one
        above as a prior worth ``shrinkage`` of its own observations, so a young or empty
        slot leans on the pooled estimate and a slot with weeks of data speaks for itself.
        The strength (prior plus observed exposure) sets how uncertain the rate still is.
        """
        state = self._series.get(series)
        if state is None or state.level.exposure <= 0:
            return None
        weekly_slot, daily_slot = self._slots(_aware(at))
        level = state.level
        rate = level.count / level.exposure
        strength = self.shrinkage * level.exposure / level.weight
        nodes = (
            (state.daily.get(daily_slot), _LEVEL_PRIOR),
            (state.weekly.get(weekly_slot), self.shrinkage),
        )
        for node, weight in nodes:
            if node is None or node.exposure <= 0:
                continue
            prior = weight * node.exposure / node.weight
            if rate > 0:
                prior = max(prior, _PRIOR_EVENTS / rate)
            rate = (rate * prior + node.count) / (prior + node.exposure)
            strength = prior + node.exposure
        return rate, strength

    def _spread(self, expected: float, uncertainty: float, dispersion: float) -> float:
        # Variance-to-mean ratio: Poisson's 1, widened by the rate's own uncertainty (the
        # gamma-Poisson predictive), by relative noise and by learned over-dispersion.
        return (1.0 + uncertainty) * (1.0 + self.cv**2 * expected) * dispersion

    def _z(self, observed: float, expected: float, uncertainty: float, dispersion: float) -> float:
        spread = self._spread(expected, uncertainty, dispersion)
        return tail_z(round(max(observed, 0.0)), expected, spread)

    def _clip(
        self, observed: float, expected: float, uncertainty: float, dispersion: float
    ) -> float:
        """The largest count at or below ``observed`` whose z-score is within ``learn_clip``."""
        spread = self._spread(expected, uncertainty, dispersion)
        low, high = math.floor(expected), round(max(observed, 0.0))
        if tail_z(high, expected, spread) <= self.learn_clip:
            return observed
        # z grows with the count, so bisect for the top of the normal range.
        while high - low > 1:
            middle = (low + high) // 2
            if tail_z(middle, expected, spread) <= self.learn_clip:
                low = middle
            else:
                high = middle
        return float(low)

    def update(
        self,
        series: str,
        bucket_start: datetime,
        count: float,
        *,
        drivers: Mapping[str, Mapping[str, float]] | None = None,
        exposure: float | None = None,
        driver_exposures: Mapping[str, Mapping[str, float]] | None = None,
    ) -> AnomalyScore:
        """Score one bucket of one series against its baseline, then learn it.

        Args:
            series: Series name; each has its own baselines.
            bucket_start: Start of the bucket (naive means UTC).
            count: Events in the bucket.
            drivers: Dimension → value → count in this bucket, to explain an alert.
            exposure: For rate series: how many could have produced an event (e.g.
                tickets whose SLA came due); ``None`` for plain counts.
            driver_exposures: For rate series: dimension → value → exposure, so that
                drivers are judged by their rate (see :class:`DriverTracker`).

        Returns:
            The score; its ``alert`` is set when this bucket opens an anomaly episode.
            A bucket at or before the series' last one is scored but neither learned
            nor alerted, so a replayed bucket cannot count twice. A bucket of a rate
            series without exposure says nothing about the rate: it is returned
            unscored (``expected`` is ``None``) and not learned.
        """
        at = _aware(bucket_start)
        state = self._series.setdefault(series, _SeriesState())
        warming = state.first is None or at - state.first < self.warmup
        if exposure is not None and exposure <= 0:
            return AnomalyScore(series, at, count, None, 0.0, False, self.threshold, warming)
        units = 1.0 if exposure is None else float(exposure)
        base = self.baseline(series, at)
        expected = None if base is None else base[0] * units
        uncertainty = 0.0 if base is None else units / base[1]
        stale = state.last is not None and at <= state.last
        dispersion = max(1.0, state.dispersion)
        score = 0.0 if expected is None else self._z(count, expected, uncertainty, dispersion)
        anomalous = (
            expected is not None
            and not warming
            and not stale
            and score >= self.threshold
            and count - expected >= self.min_excess
            and count >= self.min_lift * expected
            and (exposure is None or units >= self.min_exposure)
        )
        alert = None
        if anomalous:
            assert expected is not None
            continuing = state.last_anomaly is not None and state.last_anomaly == at - self.bucket
            if not continuing:
                alert = AnomalyAlert(
                    series=series,
                    start=at,
                    observed=count,
                    expected=expected,
                    score=score,
                    drivers=self.drivers.explain(series, drivers or {}, expected, driver_exposures),
                )
            state.last_anomaly = at
        if not stale:
            self._learn(state, at, count, units, expected, uncertainty)
            if drivers or driver_exposures:
                self.drivers.learn(series, count, drivers or {}, driver_exposures)
        return AnomalyScore(
            series=series,
            at=at,
            observed=count,
            expected=expected,
            score=score,
            is_anomaly=anomalous,
            threshold=self.threshold,
            warming_up=warming,
            alert=alert,
        )

    def _learn(
        self,
        state: _SeriesState,
        at: datetime,
        count: float,
        units: float,
        expected: float | None,
        uncertainty: float,
    ) -> None:
        learned = count
        # Residuals from a baseline younger than a day say more about the baseline than
        # about the series' noise: learn neither dispersion nor clipping from them yet.
        if expected is not None and state.level.weight >= self._slots_per_day:
            raw = self._z(count, expected, uncertainty, 1.0)
            bounded = min(raw * raw, self.learn_clip**2)
            keep = self.dispersion_decay
            state.dispersion = keep * state.dispersion + (1.0 - keep) * bounded
            learned = self._clip(count, expected, uncertainty, max(1.0, state.dispersion))
        weekly_slot, daily_slot = self._slots(at)
        state.weekly.setdefault(weekly_slot, _Decayed()).learn(learned, units, self.weekly_decay)
        state.daily.setdefault(daily_slot, _Decayed()).learn(learned, units, self.daily_decay)
        state.level.learn(learned, units, self.level_decay)
        if state.first is None:
            state.first = at
        state.last = at


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def _upper_tail(count: int, mean: float, spread: float) -> float:
    """Mid-p upper tail ``P(X > count) + P(X = count) / 2`` of a count distribution.

    Negative binomial with the given mean and variance ``mean × spread`` (Poisson when the
    spread is 1). The half point mass removes most of the conservatism of discrete counts
    at low means. Summed from the tail itself when it is small, so that p-values far
    below machine epsilon keep their precision.
    """
    mean = max(mean, 1e-12)
    if spread <= 1.0 + 1e-9:
        log_pmf = count * math.log(mean) - mean - math.lgamma(count + 1)

        def ratio(j: int) -> float:
            return mean / (j + 1)

    else:
        p = 1.0 / spread
        r = mean * p / (1.0 - p)
        log_pmf = (
            math.lgamma(count + r) - math.lgamma(r) - math.lgamma(count + 1)
            + r * math.log(p) + count * math.log1p(-p)
        )  # fmt: skip

        def ratio(j: int) -> float:
            return (r + j) / (j + 1) * (1.0 - p)

    point = math.exp(log_pmf)
    if count <= mean:
        # Below the mean the tail is not small: one minus the lower sum is accurate enough.
        lower, term = 0.0, point
        for j in range(count - 1, -1, -1):
            term /= ratio(j)
            lower += term
        return min(1.0, max(0.0, 1.0 - lower - 0.5 * point))
    total, term, j = 0.5 * point, point, count
    while term > 1e-17 * max(total, 1e-300) and j < count + 100_000:
        term *= ratio(j)
        j += 1
        total += term
    return total


_NORMAL = NormalDist()


def tail_z(count: int, mean: float, spread: float = 1.0) -> float:
    """Upper-tail probability of ``count`` as a standard-normal z-score (capped at ±30).

    Example:
        >>> round(tail_z(12, 4.0), 2)  # 12 tickets where 4 are usual
        3.24
    """
    upper = _upper_tail(count, mean, spread)
    if upper <= 0.0:
        return _Z_CAP
    if upper >= 1.0:
        return -_Z_CAP
    return max(-_Z_CAP, min(_Z_CAP, -_NORMAL.inv_cdf(upper)))
