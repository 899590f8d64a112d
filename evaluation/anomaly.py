"""Anomaly detection on synthetic hourly helpdesk volume with injected incidents.

Hourly ticket counts per category follow the workload generator's daily and weekly
rhythm (:func:`evaluation.workload.rhythm_factor`: night troughs, Monday-morning peaks,
quiet weekends) as a Poisson process, with a day-to-day level swing per category. Each
ticket has a channel and two SLA targets, decided as :class:`models.live_metrics.LiveMetrics`
counts them (at the breach or the fulfil in time): its first reply in the next hour and,
for 80 % of tickets, its resolution 8 hours later. Targets breach more often outside
weekday office hours (15 % against 4 %, thin staffing), with a daily swing. After a
warm-up (3 weeks by default) incidents with known start and end are injected at random
hours:

* **volume**: one category's volume ×3–×6 for 1–6 hours, the extra tickets arriving
  through one channel (an outage that floods, say, chat); its targets follow at the usual
  breach rate, so more breaches come with it but no higher share;
* **breach** (agents slow): for 2–6 hours the targets decided breach at 30–60 %, in one
  category (its team is short) or, one time in three, in all of them at 25–50 %.

:class:`models.anomaly.VolumeAnomalyDetector` runs online over the series of the live
flow: ``volume:<category>`` with channel drivers, and ``sla_breach_rate:all`` and
``sla_breach_rate:category=<category>``, breaches out of the hour's decided targets
(the exposure), with category drivers judged by their own rates. Alerts are episodes
(consecutive anomalous hours merge into one).

Metrics, at the incident level: an incident is detected when an alert of its kind
(volume or breach-rate series) and of its category (``sla_breach_rate:all`` matches any
breach incident) starts within its span; precision is the share of alerts that start
within a matching incident (every other alert is a false positive, warm-up included),
overall and per kind; detection delay is hours from incident start to the first alert.
An oracle that knows the true normal mean (same threshold) bounds what any detector
could see: some incidents, at night in a small category, are lost in Poisson noise.
False positives on the normal rhythm are measured twice: outside incidents in the
injected run, and on the same data generated without incidents, counting those on
Monday mornings (7–12 h) apart.

Run: ``python -m evaluation.anomaly --seeds 1 2 3 4 5``

Kept as one module: the labelled-series generator, the NAB-style window scoring
and the baseline detector are only meaningful together.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import numpy as np
from rich.table import Table

from evaluation.workload import DEFAULT_CATEGORY_WEIGHTS, WorkloadConfig, rhythm_factor
from models.anomaly import AnomalyAlert, VolumeAnomalyDetector, tail_z
from models.live_metrics import BREACH_RATE

START = datetime(2024, 1, 1, tzinfo=UTC)  # a Monday
HOUR = timedelta(hours=1)
TICKETS_PER_HOUR = 60.0
"""Mean tickets per hour over a week, all categories together (≈10k a week)."""
STAFFED_BREACH_RATE = 0.04
"""Share of SLA targets breached when decided in weekday office hours (8–18 h)."""
THIN_BREACH_RATE = 0.15
"""The same at night and on weekends, when fewer agents are on shift."""
RESOLUTION_SHARE = 0.8
RESOLUTION_LAG = 8
"""Hours from a ticket's creation to the decision of its resolution target."""
DAY_NOISE = 0.10
"""Log-normal sigma of each category's daily level: real days are not Poisson-exact."""
MONDAY_MORNING = range(7, 13)
ALL = "all"
"""Category of a breach incident that hits every team, and of ``sla_breach_rate:all``."""


def normal_breach_rate(at: datetime) -> float:
    """Share of SLA targets decided at ``at`` that breach without an incident."""
    staffed = at.weekday() < 5 and 8 <= at.hour < 18
    return STAFFED_BREACH_RATE if staffed else THIN_BREACH_RATE


@dataclass(frozen=True)
class Incident:
    """One injected incident: ``factor`` is the volume multiplier or the breach rate.

    A breach incident of category :data:`ALL` slows every team down.
    """

    category: str
    kind: Literal["volume", "breach"]
    start: datetime
    end: datetime
    factor: float
    channel: str | None = None


@dataclass(frozen=True)
class _Hour:
    tickets: int
    breaches: int  # among the SLA targets decided in the hour
    channels: dict[str, float]
    mean: float  # the true expected tickets without incidents, for the oracle
    targets: int  # SLA targets decided in the hour (breached or met)
    breach_rate: float  # the true normal breach rate of the hour, for the oracle


def plan_incidents(
    rng: np.random.Generator,
    *,
    weeks: int,
    incidents: int,
    warmup_weeks: int,
    breach_share: float = 0.4,
) -> list[Incident]:
    """Non-overlapping incidents (with a 6-hour gap) between the warm-up and the end.

    Each is a breach incident with probability ``breach_share``, else a volume one.
    """
    categories = list(DEFAULT_CATEGORY_WEIGHTS)
    channels = list(WorkloadConfig().channels)
    first, last = warmup_weeks * 168, weeks * 168 - 6
    planned: list[Incident] = []
    taken: list[tuple[int, int]] = []
    attempts = 0
    while len(planned) < incidents and attempts < 10_000:
        attempts += 1
        kind: Literal["volume", "breach"] = (
            "volume" if rng.random() < 1.0 - breach_share else "breach"
        )
        hours = int(rng.integers(1, 7)) if kind == "volume" else int(rng.integers(2, 7))
        begin = int(rng.integers(first, last - hours + 1))
        if any(begin < end + 6 and other < begin + hours + 6 for other, end in taken):
            continue
        taken.append((begin, begin + hours))
        category = categories[int(rng.integers(len(categories)))]
        if kind == "volume":
            factor = float(rng.uniform(3, 6))
        elif rng.random() < 1 / 3:
            category, factor = ALL, float(rng.uniform(0.25, 0.5))
        else:
            factor = float(rng.uniform(0.3, 0.6))
        planned.append(
            Incident(
                category=category,
                kind=kind,
                start=START + begin * HOUR,
                end=START + (begin + hours) * HOUR,
                factor=factor,
                channel=channels[int(rng.integers(len(channels)))] if kind == "volume" else None,
            )
        )
    return sorted(planned, key=lambda i: i.start)


def simulate(seed: int, *, weeks: int, incidents: list[Incident]) -> dict[str, list[_Hour]]:
    """Hourly tickets, channel counts, decided SLA targets and breaches per category."""
    rng = np.random.default_rng([seed, 1])
    weights = DEFAULT_CATEGORY_WEIGHTS
    share = {c: w / sum(weights.values()) for c, w in weights.items()}
    channel_weights = WorkloadConfig().channels
    channels = list(channel_weights)
    p_channel = np.array([channel_weights[c] for c in channels]) / sum(channel_weights.values())
    days = weeks * 7
    level = {c: rng.lognormal(0.0, DAY_NOISE, size=days) for c in weights}
    strain = {c: rng.lognormal(0.0, DAY_NOISE, size=days) for c in weights}
    out: dict[str, list[_Hour]] = {c: [] for c in weights}
    for h in range(weeks * 168):
        at = START + h * HOUR
        active = [i for i in incidents if i.start <= at < i.end]
        for category in weights:
            mean = TICKETS_PER_HOUR * share[category] * rhythm_factor(at) * level[category][h // 24]
            tickets = int(rng.poisson(mean))
            by_channel = rng.multinomial(tickets, p_channel)
            normal_rate = min(1.0, normal_breach_rate(at) * strain[category][h // 24])
            breach_rate = normal_rate
            for incident in active:
                if incident.kind == "volume" and incident.category == category:
                    assert incident.channel is not None
                    extra = int(rng.poisson(mean * (incident.factor - 1.0)))
                    tickets += extra
                    by_channel[channels.index(incident.channel)] += extra
                elif incident.kind == "breach" and incident.category in (category, ALL):
                    breach_rate = incident.factor
            past = out[category]
            # First replies are decided the hour after creation, resolutions later.
            targets = past[h - 1].tickets if h >= 1 else 0
            if h >= RESOLUTION_LAG:
                targets += int(rng.binomial(past[h - RESOLUTION_LAG].tickets, RESOLUTION_SHARE))
            breaches = int(rng.binomial(targets, breach_rate))
            past.append(
                _Hour(
                    tickets,
                    breaches,
                    {c: float(n) for c, n in zip(channels, by_channel, strict=True)},
                    mean,
                    targets,
                    normal_rate,
                )
            )
    return out


def run_detector(
    hours: Mapping[str, list[_Hour]], detector: VolumeAnomalyDetector
) -> list[tuple[str, AnomalyAlert]]:
    """Feed every hour of every series in time order; returns (category, alert) pairs.

    The category of ``sla_breach_rate:all`` alerts is :data:`ALL`.
    """
    alerts: list[tuple[str, AnomalyAlert]] = []
    length = len(next(iter(hours.values())))
    for h in range(length):
        at = START + h * HOUR
        row = {category: series[h] for category, series in hours.items()}
        overall = detector.update(
            f"{BREACH_RATE}:{ALL}",
            at,
            float(sum(x.breaches for x in row.values())),
            exposure=float(sum(x.targets for x in row.values())),
            drivers={"category": {c: float(x.breaches) for c, x in row.items()}},
            driver_exposures={"category": {c: float(x.targets) for c, x in row.items()}},
        )
        scores = [(ALL, overall)]
        for category, hour in row.items():
            volume = detector.update(
                f"volume:{category}",
                at,
                float(hour.tickets),
                drivers={"channel": hour.channels},
            )
            breach = detector.update(
                f"{BREACH_RATE}:category={category}",
                at,
                float(hour.breaches),
                exposure=float(hour.targets),
            )
            scores += [(category, volume), (category, breach)]
        alerts.extend((category, s.alert) for category, s in scores if s.alert is not None)
    return alerts


def oracle_detects(
    incident: Incident, hours: Mapping[str, list[_Hour]], *, threshold: float, min_excess: float
) -> bool:
    """Whether a test that knows the true normal mean sees the incident in any hour.

    An upper bound for any detector: incidents at night in a small category can be
    indistinguishable from noise even with perfect knowledge of the baseline. A breach
    incident of every team is judged on the teams together.
    """
    first = int((incident.start - START) / HOUR)
    last = int((incident.end - START) / HOUR)
    scope = list(hours) if incident.category == ALL else [incident.category]
    for h in range(first, last):
        rows = [hours[category][h] for category in scope]
        if incident.kind == "volume":
            observed, normal = rows[0].tickets, rows[0].mean
        else:
            observed = sum(x.breaches for x in rows)
            normal = sum(x.targets * x.breach_rate for x in rows)
        if observed - normal >= min_excess and tail_z(observed, normal) >= threshold:
            return True
    return False


def _kind(alert: AnomalyAlert) -> Literal["volume", "breach"]:
    return "breach" if alert.series.startswith(BREACH_RATE + ":") else "volume"


def _matches(category: str, alert: AnomalyAlert, incident: Incident) -> bool:
    scoped = ALL in (category, incident.category) and incident.kind == "breach"
    return (
        (category == incident.category or scoped)
        and _kind(alert) == incident.kind
        and incident.start <= alert.start < incident.end
    )


def evaluate_anomalies(
    *,
    seed: int = 7,
    weeks: int = 6,
    incidents: int = 8,
    warmup_weeks: int = 3,
    breach_share: float = 0.4,
    detector: VolumeAnomalyDetector | None = None,
) -> dict[str, Any]:
    """Inject incidents into synthetic weekly-rhythm volume and score the detector.

    Args:
        seed: Seeds both the traffic and the incident plan.
        weeks: Simulated weeks (hourly buckets).
        incidents: Incidents to inject after the warm-up.
        warmup_weeks: Weeks before the first incident.
        breach_share: Probability that an incident is a breach incident (agents slow).
        detector: An unused detector with the settings to evaluate (defaults when
            omitted); a copy of it runs the no-incident comparison.

    Returns:
        Precision and recall (overall and per kind), detection delays, false alerts
        overall, per series-week and on Monday mornings, the same on a run without
        incidents, whether the top driver of volume alerts named the flooded channel, and
        whether that of ``sla_breach_rate:all`` alerts named the slow team's category.
    """
    began = time.perf_counter()
    rng = np.random.default_rng([seed, 0])
    plan = plan_incidents(
        rng, weeks=weeks, incidents=incidents, warmup_weeks=warmup_weeks, breach_share=breach_share
    )
    injected = simulate(seed, weeks=weeks, incidents=plan)
    clean = simulate(seed, weeks=weeks, incidents=[])
    detector = detector or VolumeAnomalyDetector()
    clean_alerts = run_detector(clean, copy.deepcopy(detector))
    alerts = run_detector(injected, detector)

    detected: list[dict[str, Any]] = []
    for incident in plan:
        hits = sorted((a for c, a in alerts if _matches(c, a, incident)), key=lambda a: a.start)
        first = hits[0] if hits else None
        # Drivers are what the overall breach-rate series has to say about the team.
        explained = [a for a in hits if a.drivers]
        top = explained[0].drivers[0] if explained else None
        detected.append(
            {
                "category": incident.category,
                "kind": incident.kind,
                "start": incident.start.isoformat(),
                "hours": int((incident.end - incident.start) / HOUR),
                "factor": round(incident.factor, 2),
                "channel": incident.channel,
                "detected": first is not None,
                "oracle_detects": oracle_detects(
                    incident,
                    injected,
                    threshold=detector.threshold,
                    min_excess=detector.min_excess,
                ),
                "delay_hours": None if first is None else (first.start - incident.start) / HOUR,
                "top_driver": None if top is None else f"{top.dimension}={top.value}",
            }
        )
    false_alerts = [(c, a) for c, a in alerts if not any(_matches(c, a, i) for i in plan)]
    true_alerts = len(alerts) - len(false_alerts)
    found = [d for d in detected if d["detected"]]
    delays = [float(d["delay_hours"]) for d in found]
    volume_found = [d for d in found if d["kind"] == "volume"]
    team_found = [d for d in found if d["kind"] == "breach" and d["category"] != ALL]
    series_weeks = (2 * len(injected) + 1) * weeks

    def monday_morning(pairs: list[tuple[str, AnomalyAlert]]) -> int:
        return sum(a.start.weekday() == 0 and a.start.hour in MONDAY_MORNING for _, a in pairs)

    def ratio(num: int, den: int) -> float | None:
        return round(num / den, 3) if den else None

    def precision(kind: str) -> float | None:
        own = [(c, a) for c, a in alerts if _kind(a) == kind]
        return ratio(sum(any(_matches(c, a, i) for i in plan) for c, a in own), len(own))

    return {
        "seed": seed,
        "weeks": weeks,
        "incidents": len(plan),
        "alerts": len(alerts),
        "true_alerts": true_alerts,
        "false_alerts": len(false_alerts),
        "precision": ratio(true_alerts, len(alerts)),
        "precision_volume": precision("volume"),
        "precision_breach": precision("breach"),
        "recall": ratio(len(found), len(plan)),
        "recall_volume": ratio(len(volume_found), sum(d["kind"] == "volume" for d in detected)),
        "recall_breach": ratio(
            len(found) - len(volume_found), sum(d["kind"] == "breach" for d in detected)
        ),
        "oracle_recall": ratio(sum(d["oracle_detects"] for d in detected), len(plan)),
        "recall_of_oracle_detectable": ratio(
            sum(d["detected"] and d["oracle_detects"] for d in detected),
            sum(d["oracle_detects"] for d in detected),
        ),
        "mean_delay_hours": round(sum(delays) / len(delays), 2) if delays else None,
        "max_delay_hours": max(delays) if delays else None,
        "false_alerts_per_series_week": round(len(false_alerts) / series_weeks, 4),
        "monday_morning_false_alerts": monday_morning(false_alerts),
        "clean_run_alerts": len(clean_alerts),
        "clean_run_monday_morning_alerts": monday_morning(clean_alerts),
        "clean_run_breach_alerts": sum(_kind(a) == "breach" for _, a in clean_alerts),
        "top_driver_names_channel": ratio(
            sum(d["top_driver"] == f"channel={d['channel']}" for d in volume_found),
            len(volume_found),
        ),
        "top_driver_names_category": ratio(
            sum(d["top_driver"] == f"category={d['category']}" for d in team_found),
            sum(d["top_driver"] is not None for d in team_found),
        ),
        "incident_details": detected,
        "false_alert_details": [
            {
                "series": a.series,
                "start": a.start.isoformat(),
                "observed": a.observed,
                "expected": round(a.expected, 2),
                "score": round(a.score, 2),
            }
            for _, a in false_alerts
        ],
        "seconds": round(time.perf_counter() - began, 2),
    }


_PERCENT = frozenset(
    {
        "precision",
        "precision_volume",
        "precision_breach",
        "recall",
        "recall_volume",
        "recall_breach",
        "oracle_recall",
        "recall_of_oracle_detectable",
        "top_driver_names_channel",
        "top_driver_names_category",
    }
)


def render_table(results: list[dict[str, Any]] | dict[str, Any]) -> Table:
    """A rich table with one row per :func:`evaluate_anomalies` result (one per seed)."""
    rows = [results] if isinstance(results, dict) else results
    table = Table(
        title="Anomaly detection: injected incidents on weekly-rhythm volume and SLA breach rate"
    )
    columns = (
        ("seed", "seed"),
        ("incidents", "incidents"),
        ("alerts", "alerts"),
        ("precision", "precision"),
        ("precision_volume", "prec vol"),
        ("precision_breach", "prec breach"),
        ("recall", "recall"),
        ("recall_volume", "recall vol"),
        ("recall_breach", "recall breach"),
        ("oracle_recall", "oracle recall"),
        ("recall_of_oracle_detectable", "recall | detectable"),
        ("mean_delay_hours", "delay h"),
        ("false_alerts_per_series_week", "FP/series-week"),
        ("monday_morning_false_alerts", "FP Mon am"),
        ("clean_run_alerts", "clean-run alerts"),
        ("top_driver_names_channel", "driver ok"),
        ("top_driver_names_category", "breach driver ok"),
    )
    for _, title in columns:
        table.add_column(title, justify="right")
    for row in rows:
        cells = []
        for key, _ in columns:
            value = row[key]
            if value is None:
                cells.append("-")
            elif key in _PERCENT:
                cells.append(f"{value:.0%}")
            else:
                cells.append(str(value))
        table.add_row(*cells)
    return table


# -- labelled series with window-based (NAB-style) scoring ------------------------------

NAB_PROFILE = {"tp": 1.0, "fp": 0.11, "fn": 1.0}
"""Weights of the NAB "standard" profile: a miss costs a hit, a false alarm 0.11."""
PROBATION = 0.15
"""Share of each series at its start in which detections are not scored (NAB's probation)."""
WINDOW_SHARE = 0.10
"""Share of a series' length that its anomaly windows cover together (as NAB does)."""


@dataclass(frozen=True)
class LabelledSeries:
    """A generated series with the indices at which anomalies start and their windows."""

    name: str
    start: datetime
    bucket: timedelta
    values: np.ndarray
    anomalies: list[int]
    windows: list[tuple[int, int]]  # [first, last] indices, inclusive


def _seasonal_shape(n: int, bucket: timedelta, kind: str) -> np.ndarray:
    """A positive rhythm: office hours over a week, a daily cycle, or flat."""
    hours = np.arange(n) * bucket.total_seconds() / 3600.0
    hour_of_day = hours % 24
    if kind == "weekly":
        # Quiet days are Friday and Saturday here, not the usual weekend.
        day = (hours // 24 + START.weekday()) % 7
        busy = np.where((day == 4) | (day == 5), 0.15, 1.0)
        return 0.2 + busy * np.exp(-((hour_of_day - 12.0) ** 2) / 12.0)
    if kind == "daily":
        return 1.0 + 0.5 * np.sin(2.0 * np.pi * (hour_of_day - 6.0) / 24.0)
    return np.ones(n)


def _windows(anomalies: list[int], n: int) -> list[tuple[int, int]]:
    width = max(2, int(WINDOW_SHARE * n / max(len(anomalies), 1)))
    return [(max(0, a - width // 2), min(n - 1, a + width // 2)) for a in anomalies]


def generate_labelled_series(seed: int, *, length: int = 3000) -> list[LabelledSeries]:
    """Series of several shapes, noise models and rhythms, each with labelled anomalies.

    Shapes: spikes, drops to zero, level shifts (up and down), variance changes; noise:
    Poisson counts, Gaussian measurements (which may go negative), log-normal durations,
    utilisations in [0, 1]; rhythms: an office week with a Friday–Saturday weekend in
    hourly buckets, a daily cycle in 15-minute buckets, none in 5-minute buckets.
    Anomalies start after the probation, at least a window apart.
    """
    rng = np.random.default_rng([seed, 7])
    plans = (
        ("spikes_counts_weekly", "weekly", timedelta(hours=1), "poisson", "spike"),
        ("drop_to_zero_counts_weekly", "weekly", timedelta(hours=1), "poisson", "zero"),
        ("level_shift_counts_daily", "daily", timedelta(minutes=15), "poisson", "shift"),
        ("spikes_gaussian_flat", "flat", timedelta(minutes=5), "gaussian", "spike"),
        ("level_shift_gaussian_daily", "daily", timedelta(minutes=15), "gaussian", "shift"),
        ("variance_gaussian_flat", "flat", timedelta(minutes=5), "gaussian", "variance"),
        ("spikes_durations_daily", "daily", timedelta(minutes=15), "lognormal", "spike"),
        ("drop_utilisation_weekly", "weekly", timedelta(hours=1), "utilisation", "drop"),
        ("small_counts_spikes_flat", "flat", timedelta(minutes=5), "small_poisson", "spike"),
    )
    out: list[LabelledSeries] = []
    for name, rhythm, bucket, noise, shape in plans:
        n = length
        base = _seasonal_shape(n, bucket, rhythm)
        count = 1 if shape in ("shift", "variance") else int(rng.integers(2, 4))
        first = int(PROBATION * n) + n // 20
        slots = np.linspace(first, n - n // 10, count + 1)[:-1]
        gap = (n - n // 10 - first) // max(count, 1)
        anomalies = sorted(int(s + rng.integers(0, max(gap // 2, 1))) for s in slots)
        level = float(rng.uniform(20.0, 80.0))
        mean = level * base
        values = np.empty(n)
        sign = 1.0 if rng.random() < 0.5 else -1.0
        factor = np.ones(n)
        extra_noise = np.ones(n)
        for a in anomalies:
            if shape == "spike":
                span = int(rng.integers(1, 4))
                factor[a : a + span] = float(rng.uniform(2.5, 4.0))
            elif shape == "zero":
                factor[a : a + int(rng.integers(3, 8))] = 0.0
            elif shape == "drop":
                factor[a : a + int(rng.integers(6, 13))] = float(rng.uniform(0.1, 0.4))
            elif shape == "shift":
                factor[a:] = 1.0 + sign * float(rng.uniform(0.4, 0.6))
            elif shape == "variance":
                extra_noise[a:] = float(rng.uniform(4.0, 6.0))
        if noise == "poisson":
            values = rng.poisson(mean * factor).astype(float)
        elif noise == "small_poisson":
            values = rng.poisson(0.8 * base * factor * 4.0).astype(float)
        elif noise == "gaussian":
            centre = mean - level  # centred near zero: measurements may be negative
            noise_sd = 0.05 * level * extra_noise
            values = centre * np.where(factor == 0.0, 0.0, 1.0) + rng.normal(0.0, noise_sd)
            shift = (factor - 1.0) * level
            values = values + shift
        elif noise == "lognormal":
            values = mean * factor * rng.lognormal(0.0, 0.15, n)
        else:  # utilisation: a share of capacity in use
            busy = np.clip(0.15 + 0.7 * base / base.max(), 0.0, 1.0)
            values = np.clip(busy * factor + rng.normal(0.0, 0.03, n), 0.0, 1.0)
        start = START
        out.append(
            LabelledSeries(f"{name}", start, bucket, values, anomalies, _windows(anomalies, n))
        )
    return out


def windowed_gaussian(
    values: np.ndarray, *, window: int = 1000, threshold: float = 4.0
) -> list[int]:
    """Baseline: flag a point whose z-score against the last ``window`` points passes the bar.

    Runs of flagged points count once, at their first point (as the detector's episodes do).
    """
    flagged: list[int] = []
    total = total_sq = 0.0
    previous = False
    for i, value in enumerate(values):
        count = min(i, window)
        hit = False
        if count >= 10:
            mean = total / count
            var = max(total_sq / count - mean * mean, 1e-12)
            hit = abs(value - mean) / math.sqrt(var) >= threshold
        if hit and not previous:
            flagged.append(i)
        previous = hit
        total += value
        total_sq += value * value
        if i >= window:
            old = values[i - window]
            total -= old
            total_sq -= old * old
    return flagged


def run_labelled(series: LabelledSeries, detector: VolumeAnomalyDetector) -> list[int]:
    """Indices where the detector opened an alert episode on ``series``."""
    return [
        i
        for i, value in enumerate(series.values)
        if detector.update(series.name, series.start + i * series.bucket, float(value)).alert
        is not None
    ]


def _sigmoid(position: float) -> float:
    return 2.0 / (1.0 + math.exp(5.0 * position)) - 1.0


def nab_score(detections: list[int], series: LabelledSeries) -> dict[str, float]:
    """Raw NAB score of ``detections`` on ``series`` under the standard profile.

    The first detection in a window scores ``tp × sigmoid`` of its place in the window
    (early is near 1); a window without one costs ``fn``. A detection outside every window
    costs ``fp``, scaled by the sigmoid of its distance past the preceding window (a late
    echo of an anomaly costs less), in full when no window precedes it. Detections in the
    probation are ignored.
    """
    n = len(series.values)
    probation = int(PROBATION * n)
    score, hits, false_positives = 0.0, 0, 0
    detected = [d for d in sorted(detections) if d >= probation]
    found = [False] * len(series.windows)
    for d in detected:
        inside = [k for k, (a, b) in enumerate(series.windows) if a <= d <= b]
        if inside:
            k = inside[0]
            if not found[k]:
                a, b = series.windows[k]
                found[k] = True
                hits += 1
                score += NAB_PROFILE["tp"] * _sigmoid((d - b) / max(b - a + 1, 1))
            continue
        before = [(a, b) for a, b in series.windows if b < d]
        false_positives += 1
        if before:
            a, b = before[-1]
            score += NAB_PROFILE["fp"] * _sigmoid((d - b) / max(b - a + 1, 1))
        else:
            score -= NAB_PROFILE["fp"]
    score -= NAB_PROFILE["fn"] * found.count(False)
    return {"raw": score, "hits": hits, "windows": len(series.windows), "false": false_positives}


def _normalised(raw: float, windows: int) -> float:
    """NAB's 0–100 scale: 0 is raising no alert at all, 100 every window at its start."""
    null = -NAB_PROFILE["fn"] * windows
    perfect = NAB_PROFILE["tp"] * _sigmoid(-1.0) * windows
    return 100.0 * (raw - null) / (perfect - null) if perfect != null else 0.0


def evaluate_labelled(seeds: list[int] | tuple[int, ...] = (1, 2, 3)) -> dict[str, Any]:
    """Window-scored detector and windowed-Gaussian baseline on generated labelled series.

    Returns:
        Per detector the normalised NAB score (standard profile) over all series, hits,
        windows and false positives, per-series scores, and the detector's updates per
        second.
    """
    per_series: list[dict[str, Any]] = []
    totals = {
        name: {"raw": 0.0, "hits": 0, "windows": 0, "false": 0}
        for name in ("detector", "windowed_gaussian")
    }
    updates, seconds = 0, 0.0
    for seed in seeds:
        for series in generate_labelled_series(seed):
            detector = VolumeAnomalyDetector(
                bucket=series.bucket, warmup=int(PROBATION * len(series.values))
            )
            began = time.perf_counter()
            ours = run_labelled(series, detector)
            seconds += time.perf_counter() - began
            updates += len(series.values)
            row: dict[str, Any] = {"seed": seed, "series": series.name}
            for name, found in (
                ("detector", ours),
                ("windowed_gaussian", windowed_gaussian(series.values)),
            ):
                result = nab_score(found, series)
                for key in totals[name]:
                    totals[name][key] += result[key]
                row[name] = round(_normalised(result["raw"], int(result["windows"])), 1)
            per_series.append(row)
    summary = {
        name: {
            "score": round(_normalised(total["raw"], int(total["windows"])), 1),
            "hits": int(total["hits"]),
            "windows": int(total["windows"]),
            "false_positives": int(total["false"]),
        }
        for name, total in totals.items()
    }
    return {
        "profile": "standard",
        "seeds": list(seeds),
        "summary": summary,
        "series": per_series,
        "updates_per_second": round(updates / seconds) if seconds > 0 else None,
    }


def render_labelled_table(results: dict[str, Any]) -> Table:
    """Rich table: NAB-style scores of the detector and the windowed-Gaussian baseline."""
    table = Table(title="Labelled generated series, window scoring (NAB standard profile, 0–100)")
    for column in ("detector", "score", "windows found", "false positives"):
        table.add_column(column, justify="left" if column == "detector" else "right")
    for name, row in results["summary"].items():
        table.add_row(
            name,
            f"{row['score']:.1f}",
            f"{row['hits']}/{row['windows']}",
            str(row["false_positives"]),
        )
    table.caption = f"{results['updates_per_second']:,} detector updates/s"
    return table


def main(argv: list[str] | None = None) -> None:
    """Command: evaluate one or more seeds, print the table and the JSON results."""
    from rich.console import Console

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seeds", type=int, nargs="+", default=[7])
    parser.add_argument("--weeks", type=int, default=6)
    parser.add_argument("--incidents", type=int, default=8)
    parser.add_argument(
        "--breach-share", type=float, default=0.4, help="share of incidents that are breach ones"
    )
    parser.add_argument("--json", action="store_true", help="also print the JSON results")
    parser.add_argument(
        "--no-labelled", action="store_true", help="skip the labelled-series evaluation"
    )
    args = parser.parse_args(argv)
    results = [
        evaluate_anomalies(
            seed=s, weeks=args.weeks, incidents=args.incidents, breach_share=args.breach_share
        )
        for s in args.seeds
    ]
    console = Console(width=max(Console().width, 150))
    console.print(render_table(results))
    labelled = None if args.no_labelled else evaluate_labelled(args.seeds)
    if labelled is not None:
        console.print(render_labelled_table(labelled))
    if args.json:
        # Plain print: rich would wrap long lines and break the JSON for whoever parses it.
        print(json.dumps({"incidents": results, "labelled": labelled}, indent=2))


if __name__ == "__main__":
    main()
