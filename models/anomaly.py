"""Online anomaly detection on any numeric metric stream, aware of its daily and weekly rhythm.

Helpdesk volume swings tenfold between a Sunday night and a Monday morning, so a single
mean and threshold would either page every Monday at 9:00 or sleep through a real
incident at night. :class:`VolumeAnomalyDetector` keeps, per series, a baseline for each
slot of the week (hour-of-week for hourly buckets) and compares every new bucket with
the baseline of its own slot:

* **Baseline**: exponentially decayed sums per slot, so recent weeks weigh most, shrunk
  towards the same time of day over all days, and that towards the series-wide level. The
  pooled time-of-day profile is only a prior for young slots: its weight fades as the
  slot's own history grows, so which days are quiet is learned, never assumed (no fixed
  weekend). Values that score as anomalous, in either direction, are learned clipped to
  the edge of the normal range, so neither an incident nor an outage teaches the baseline
  that it is normal.
* **Noise model, chosen from the data**: while a series has only produced non-negative
  whole numbers (or comes with an exposure) it is a count series, scored against a
  Poisson law widened for relative noise (``cv``), for the uncertainty of a young
  baseline and by an over-dispersion factor learned from its own residuals. The tail is
  a closed form (Wilson–Hilferty, mid-p), O(1) at any count. Any other series (rates,
  durations, utilisations) is scored as a Gaussian around the baseline with a robust,
  decayed scale of its residuals.
* **Rates**: with ``exposure`` (e.g. tickets whose SLA came due) the baseline is a rate
  per unit of exposure and the expectation is ``rate × exposure``, so SLA breaches are
  judged against how many tickets could breach. A bucket without exposure carries no
  information and is neither scored nor learned; one with less than ``min_exposure`` is
  learned but never alerts.
* **Alerts**: surges (``direction="up"``) and drops (``"down"``: a channel going silent),
  after ``warmup`` points of history (or a duration), and for counts only when the
  deviation is material (``min_excess`` tickets and a ``min_lift`` ratio either way).
  Consecutive anomalous buckets of a series form one :class:`AnomalyAlert`, issued on
  the first bucket, naming the drivers that grew most (:class:`DriverTracker`). An
  episode that lasts ``absorb_after`` points is a level shift: the baseline moves to the
  new level and the episode ends. Days the business calendar marks closed are expected to
  be quiet: drops on them do not alert and they are not learned.

Example:
    >>> from datetime import UTC, datetime, timedelta
    >>> detector = VolumeAnomalyDetector(warmup=7 * 24)
    >>> start = datetime(2024, 1, 1, tzinfo=UTC)
    >>> for h in range(24 * 14):  # two quiet weeks: 20 tickets/hour, 5 at night
    ...     at = start + timedelta(hours=h)
    ...     _ = detector.update("volume", at, 20.0 if 8 <= at.hour < 18 else 5.0)
    >>> score = detector.update("volume", start + timedelta(days=14, hours=3), 40.0)
    >>> score.is_anomaly, round(score.expected, 1), score.alert.direction
    (True, 5.0, 'up')
    >>> score = detector.update("volume", start + timedelta(days=14, hours=11), 0.0)
    >>> score.is_anomaly, score.alert.direction
    (True, 'down')

Kept as one module: the detector's profile, noise model, episode handling and
alert explanation update one state per series.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from typing import TYPE_CHECKING, Literal, NamedTuple

if TYPE_CHECKING:
    from models.calendar import BusinessCalendar

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
# Scores are capped so that a value far in the tail stays finite and comparable.
_Z_CAP = 30.0
# Residual scale of a Gaussian series: mean absolute deviation × sqrt(pi / 2) is sigma.
_MAD_TO_SIGMA = math.sqrt(math.pi / 2.0)
Direction = Literal["up", "down"]


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
        score: Its z-score (negative for a drop).
        drivers: Top contributors of the excess, largest first (surges only).
        direction: ``"up"`` for a surge, ``"down"`` for a drop.
    """

    series: str
    start: datetime
    observed: float
    expected: float
    score: float
    drivers: list[Driver] = field(default_factory=list)
    direction: Direction = "up"


@dataclass(frozen=True)
class AnomalyScore:
    """How unusual one bucket of one series is.

    Args:
        series: The series.
        at: Bucket start.
        observed: Count in the bucket.
        expected: Expected count (``None`` before any history).
        score: Z-score, negative below the expectation (0 without history).
        is_anomaly: Score (either way), excess and lift beyond the bars, after the warm-up.
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

    def scale(self, factor: float, shift: float) -> None:
        """Move the rate to ``rate × factor + shift`` (a level shift), keeping its weight."""
        self.count = self.count * factor + shift * self.exposure


@dataclass
class _SeriesState:
    level: _Decayed = field(default_factory=_Decayed)
    weekly: dict[int, _Decayed] = field(default_factory=dict)
    daily: dict[int, _Decayed] = field(default_factory=dict)
    dispersion: float = 1.0
    first: datetime | None = None
    last: datetime | None = None
    last_anomaly: datetime | None = None
    points: int = 0
    counts: bool = True  # only whole non-negative values (or exposures) seen so far
    deviation: float = 0.0  # decayed mean absolute residual (Gaussian series)
    deviation_weight: float = 0.0
    run: int = 0  # consecutive anomalous buckets of the open episode
    run_shift: float = 0.0  # their summed log ratio (counts) or difference (Gaussian)

    def __setstate__(self, state: dict[str, object]) -> None:
        # Snapshots from before the two-sided detector lack the newer fields.
        fresh = {"points": 0, "counts": True, "deviation": 0.0, "deviation_weight": 0.0,
                 "run": 0, "run_shift": 0.0}  # fmt: skip
        self.__dict__.update({**fresh, **state})


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
    """Seasonal (slot-of-week) online detector of surges and drops in metric series.

    Feed every bucket of every series in time order, zeros included: a missing bucket
    is not a zero, and it breaks an alert episode. State per series is one entry per slot
    of the week and of the day, plus the capped driver baselines, so memory grows with
    the number of series (categories, not tickets) and never with history; each update
    costs O(1) besides the drivers it is given.

    Args:
        bucket: Bucket width; must divide a day (hourly and 15-minute both work).
        threshold: Z-score bar, both ways.
        warmup: Points of history (an ``int``) or a duration a series needs before it may
            alert.
        min_excess: Count series: observed and expected must differ by this many.
        min_lift: Count series: observed must reach this multiple of expected (surges) or
            fall to its inverse (drops).
        min_exposure: Rate series only: exposure a bucket needs to alert (fewer targets
            are learned but never judged: 1 breach out of 2 says little about a rate).
        weekly_decay: Weight kept by a slot's history per new observation of that slot
            (0.8: the last ~5 weeks count).
        daily_decay: The same for the pooled same-time-of-day profile.
        level_decay: The same for the series-wide rate (per bucket).
        shrinkage: Observations' worth of the level above that a young slot starts from;
            the prior fades as the slot's own history grows.
        cv: Relative noise assumed on top of Poisson noise (day-to-day level swings).
        dispersion_decay: Weight kept by the learned over-dispersion (and by the residual
            scale of Gaussian series) per observation.
        learn_clip: Z-score at which values are clipped, both ways, before they are learned.
        absorb_after: Points an anomaly episode may last before it counts as a level shift:
            the baseline then moves to the episode's level and the episode ends.
        tz: Time zone whose wall clock defines the week (the customers' working hours).
        driver_tracker: Baselines for alert drivers (one with defaults when omitted).
        calendar: Business calendar whose holidays are known closures: expected quiet, so
            drops on them do not alert and they are not learned.
    """

    def __init__(
        self,
        *,
        bucket: timedelta = timedelta(hours=1),
        threshold: float = 4.0,
        warmup: timedelta | int = timedelta(days=14),
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
        absorb_after: int = 24,
        tz: tzinfo = UTC,
        driver_tracker: DriverTracker | None = None,
        calendar: BusinessCalendar | None = None,
    ) -> None:
        minutes = bucket.total_seconds() / 60
        if minutes <= 0 or minutes != int(minutes) or _DAY_MINUTES % int(minutes):
            raise ValueError("bucket must be a whole number of minutes that divides a day")
        if absorb_after < 1:
            raise ValueError("absorb_after must be at least 1 point")
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
        self.absorb_after = absorb_after
        self.tz = tz
        self.drivers = driver_tracker if driver_tracker is not None else DriverTracker()
        self.calendar = calendar
        self._series: dict[str, _SeriesState] = {}

    def __setstate__(self, state: dict[str, object]) -> None:
        # Snapshots from before the two-sided detector lack the newer settings.
        self.__dict__.update({"absorb_after": 24, "calendar": None, **state})

    @property
    def series(self) -> list[str]:
        """Series seen so far."""
        return sorted(self._series)

    def _slots(self, at: datetime) -> tuple[int, int]:
        local = at.astimezone(self.tz)
        minute_of_day = local.hour * 60 + local.minute
        weekly = (local.weekday() * _DAY_MINUTES + minute_of_day) // self.bucket_minutes
        return weekly, minute_of_day // self.bucket_minutes

    def _closed(self, at: datetime) -> bool:
        if self.calendar is None or not self.calendar.holidays:
            return False
        from zoneinfo import ZoneInfo

        return at.astimezone(ZoneInfo(self.calendar.timezone)).date() in self.calendar.holidays

    def _warming(self, state: _SeriesState, at: datetime) -> bool:
        if isinstance(self.warmup, int):
            return state.points < self.warmup
        return state.first is None or at - state.first < self.warmup

    def baseline(self, series: str, at: datetime) -> tuple[float, float] | None:
        """Expected rate for the bucket starting at ``at`` and its strength in exposure units.

        Shrinkage down three levels: the series-wide rate, then the same time of day over
        all days, then the slot of the week. Each level starts from the one above as a prior
        worth ``shrinkage`` of its own observations, divided by how many the node has seen:
        a young slot leans on the pooled estimate, one with weeks of data speaks for itself
        (a quiet Friday is not pulled towards the busy days around it). The strength (prior
        plus observed exposure) sets how uncertain the rate still is.
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
            prior = weight * node.exposure / node.weight / max(node.weight, 1.0)
            if rate > 0 and state.counts:
                prior = max(prior, _PRIOR_EVENTS / rate / max(node.weight, 1.0))
            rate = (rate * prior + node.count) / (prior + node.exposure)
            strength = prior + node.exposure
        return rate, strength

    def _spread(self, expected: float, uncertainty: float, dispersion: float) -> float:
        # Variance-to-mean ratio: Poisson's 1, widened by the rate's own uncertainty (the
        # gamma-Poisson predictive), by relative noise and by learned over-dispersion.
        return (1.0 + uncertainty) * (1.0 + self.cv**2 * max(expected, 0.0)) * dispersion

    def _sigma(self, state: _SeriesState, expected: float, uncertainty: float) -> float:
        """Residual sigma of a Gaussian series, widened for a young baseline."""
        if state.deviation_weight <= 0:
            return math.inf
        scale = _MAD_TO_SIGMA * state.deviation / state.deviation_weight
        # A floor relative to the level keeps a perfectly flat history from alerting on
        # the last digit of a float.
        floor = 1e-6 * max(abs(expected), 1.0)
        return max(scale, floor) * math.sqrt(1.0 + uncertainty)

    def _z(
        self,
        state: _SeriesState,
        observed: float,
        expected: float,
        uncertainty: float,
        dispersion: float,
    ) -> float:
        if state.counts:
            spread = self._spread(expected, uncertainty, dispersion)
            return tail_z(max(observed, 0.0), expected, spread)
        sigma = self._sigma(state, expected, uncertainty)
        if math.isinf(sigma):
            return 0.0
        return max(-_Z_CAP, min(_Z_CAP, (observed - expected) / sigma))

    def _clip(
        self,
        state: _SeriesState,
        observed: float,
        expected: float,
        uncertainty: float,
        dispersion: float,
    ) -> float:
        """``observed`` pulled back to within ``learn_clip`` standard deviations, both ways."""
        if state.counts:
            spread = self._spread(expected, uncertainty, dispersion)
            width = self.learn_clip * math.sqrt(max(expected, 1e-12) * spread)
        else:
            width = self.learn_clip * self._sigma(state, expected, uncertainty)
        low = max(expected - width, 0.0) if state.counts else expected - width
        return min(max(observed, low), expected + width)

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
            count: The value in the bucket (a count, or any measurement).
            drivers: Dimension → value → count in this bucket, to explain an alert.
            exposure: For rate series: how many could have produced an event (e.g.
                tickets whose SLA came due); ``None`` otherwise.
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
        warming = self._warming(state, at)
        if exposure is not None and exposure <= 0:
            return AnomalyScore(series, at, count, None, 0.0, False, self.threshold, warming)
        if exposure is None and state.counts and (count < 0 or count != math.floor(count)):
            state.counts = False  # not a count: Gaussian from now on
        units = 1.0 if exposure is None else float(exposure)
        base = self.baseline(series, at)
        expected = None if base is None else base[0] * units
        uncertainty = 0.0 if base is None else units / base[1]
        stale = state.last is not None and at <= state.last
        dispersion = max(1.0, state.dispersion)
        score = 0.0
        if expected is not None:
            score = self._z(state, count, expected, uncertainty, dispersion)
        direction: Direction = "up" if score >= 0 else "down"
        closed = self._closed(at)
        anomalous = (
            expected is not None
            and not warming
            and not stale
            and abs(score) >= self.threshold
            and not (closed and direction == "down")
            and (exposure is None or units >= self.min_exposure)
            and self._material(state, count, expected, direction)
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
                    drivers=(
                        self.drivers.explain(series, drivers or {}, expected, driver_exposures)
                        if direction == "up"
                        else []
                    ),
                    direction=direction,
                )
            state.last_anomaly = at
        if not stale and not closed:
            self._learn(state, at, count, units, expected, uncertainty)
            if drivers or driver_exposures:
                self.drivers.learn(series, count, drivers or {}, driver_exposures)
        elif not stale:
            state.last = at  # a closure: time moves on, the baseline does not
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

    def _material(
        self, state: _SeriesState, count: float, expected: float, direction: Direction
    ) -> bool:
        """Counts only: a deviation of a ticket or two, or of a few percent, is no incident."""
        if not state.counts:
            return True
        if direction == "up":
            return count - expected >= self.min_excess and count >= self.min_lift * expected
        return expected - count >= self.min_excess and count * self.min_lift <= expected

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
        # about the series' noise: learn neither noise nor clipping from them yet.
        mature = state.level.weight >= self._slots_per_day
        if expected is not None and state.counts and mature:
            raw = self._z(state, count, expected, uncertainty, 1.0)
            bounded = min(raw * raw, self.learn_clip**2)
            keep = self.dispersion_decay
            state.dispersion = keep * state.dispersion + (1.0 - keep) * bounded
        if expected is not None and not state.counts:
            sigma = self._sigma(state, expected, uncertainty)
            residual = abs(count - expected)
            if not math.isinf(sigma):
                residual = min(residual, self.learn_clip * sigma)
            keep = self.dispersion_decay
            state.deviation = keep * state.deviation + residual
            state.deviation_weight = keep * state.deviation_weight + 1.0
        if expected is not None and (mature or not state.counts):
            dispersion = max(1.0, state.dispersion)
            learned = self._clip(state, count, expected, uncertainty, dispersion)
            if learned != count:
                self._track_shift(state, count, expected)
            else:
                state.run, state.run_shift = 0, 0.0
        weekly_slot, daily_slot = self._slots(at)
        state.weekly.setdefault(weekly_slot, _Decayed()).learn(learned, units, self.weekly_decay)
        state.daily.setdefault(daily_slot, _Decayed()).learn(learned, units, self.daily_decay)
        state.level.learn(learned, units, self.level_decay)
        if state.first is None:
            state.first = at
        state.last = at
        state.points += 1

    def _track_shift(self, state: _SeriesState, count: float, expected: float) -> None:
        """Count a run of clipped values; once it outlasts ``absorb_after``, move the baseline.

        The run counts values beyond ``learn_clip`` on the same side, whether or not each
        alerted, so an episode whose scores wobble around the alert bar still ends.
        """
        if state.run and (count > expected) != (state.run_shift > 0):
            state.run, state.run_shift = 0, 0.0  # the other side: a new run
        if state.counts:
            # +0.5 keeps a drop to zero finite: a channel that died moves to near nothing.
            state.run_shift += math.log((count + 0.5) / (expected + 0.5))
        else:
            state.run_shift += count - expected
        state.run += 1
        if state.run < self.absorb_after:
            return
        mean = state.run_shift / state.run
        factor, shift = (math.exp(mean), 0.0) if state.counts else (1.0, mean)
        for node in (state.level, *state.weekly.values(), *state.daily.values()):
            node.scale(factor, shift)
        state.run, state.run_shift = 0, 0.0
        state.last_anomaly = None  # the episode ends: the new level is the normal one


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def _normal_upper(z: float) -> float:
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def tail_z(count: float, mean: float, spread: float = 1.0) -> float:
    """How far ``count`` lies in the tail of a count law, as a standard-normal z-score.

    Poisson with the given mean, widened to variance ``mean × spread`` by scaling both the
    count and the mean down by ``spread`` (quasi-Poisson). The tail is the Wilson–Hilferty
    closed form of the Poisson–gamma identity ``P(X ≥ k) = P(Gamma(k) ≤ mean)``, taken at
    ``k = count + 1/2`` (a mid-p: small discrete counts are judged fairly): O(1) at any
    count, within a few tenths of the exact mid-p z-score where alerts are decided. Positive
    above the mean, negative below, capped at ±30.

    Example:
        >>> round(tail_z(12, 4.0), 1)  # 12 tickets where 4 are usual
        3.3
        >>> round(tail_z(0, 50.0), 1)  # a channel gone silent
        -8.2
    """
    spread = max(spread, 1e-9)
    mu = max(mean, 1e-12) / spread
    k = max(count, 0.0) / spread + 0.5
    z = 3.0 * math.sqrt(k) * (1.0 - 1.0 / (9.0 * k) - (mu / k) ** (1.0 / 3.0))
    return max(-_Z_CAP, min(_Z_CAP, z))
