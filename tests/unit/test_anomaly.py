"""Seasonal volume anomaly detector: incidents found, weekly rhythm quiet, drivers named."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from connectors.workload import rhythm_factor
from models.anomaly import AnomalyScore, DriverTracker, VolumeAnomalyDetector, tail_z

START = datetime(2024, 1, 1, tzinfo=UTC)  # a Monday
HOUR = timedelta(hours=1)
CHANNELS = ("email", "web", "chat")


def hourly(rng: np.random.Generator, h: int, per_hour: float = 20.0) -> dict[str, float]:
    mean = per_hour * rhythm_factor(START + h * HOUR)
    counts = rng.multinomial(int(rng.poisson(mean)), [0.6, 0.3, 0.1])
    return {c: float(n) for c, n in zip(CHANNELS, counts, strict=True)}


def feed(
    detector: VolumeAnomalyDetector,
    hours: range,
    *,
    seed: int = 3,
    spike: tuple[int, int, str, float] | None = None,
) -> list[AnomalyScore]:
    rng = np.random.default_rng(seed)
    scores = []
    for h in hours:
        channels = hourly(rng, h)
        if spike and spike[0] <= h < spike[1]:
            channels[spike[2]] += spike[3]
        scores.append(
            detector.update(
                "volume:billing",
                START + h * HOUR,
                sum(channels.values()),
                drivers={"channel": channels},
            )
        )
    return scores


def test_quiet_on_weeks_of_weekly_rhythm_with_monday_peaks() -> None:
    detector = VolumeAnomalyDetector()
    scores = feed(detector, range(6 * 168))
    assert not any(s.is_anomaly for s in scores)
    mondays = [s for s in scores[4 * 168 :] if s.at.weekday() == 0 and 8 <= s.at.hour < 12]
    # Monday mornings are the busiest hours of the week, and expected as such.
    assert min(s.observed for s in mondays) > 1.5 * np.median([s.observed for s in scores])
    assert all(abs(s.score) < 3 for s in mondays)


def test_finds_an_injected_spike_and_names_the_channel_that_grew() -> None:
    detector = VolumeAnomalyDetector()
    start = 4 * 168 + 2 * 24 + 14  # Wednesday 14:00 of week 5
    scores = feed(detector, range(5 * 168), spike=(start, start + 3, "chat", 60.0))
    fired = [s for s in scores if s.is_anomaly]
    assert fired and {s.at for s in fired} <= {START + (start + k) * HOUR for k in range(3)}
    alerts = [s.alert for s in scores if s.alert is not None]
    assert len(alerts) == 1  # consecutive anomalous hours are one episode
    alert = alerts[0]
    assert alert.start == START + start * HOUR
    assert alert.observed > 2 * alert.expected
    top = alert.drivers[0]
    assert (top.dimension, top.value) == ("channel", "chat")
    assert top.lift > 3


def test_no_alert_during_warmup_or_on_a_material_but_tiny_excess() -> None:
    detector = VolumeAnomalyDetector(warmup=timedelta(days=14))
    scores = feed(detector, range(7 * 24), spike=(100, 101, "email", 200.0))
    assert not any(s.is_anomaly for s in scores)
    assert scores[100].warming_up
    quiet = VolumeAnomalyDetector(warmup=timedelta(0))
    for h in range(3 * 168):
        quiet.update("s", START + h * HOUR, 0.0 if h % 2 else 1.0)
    assert not quiet.update("s", START + 3 * 168 * HOUR, 3.0).is_anomaly  # excess < 3


def test_breach_rate_uses_exposure_so_volume_alone_is_not_a_jump() -> None:
    detector = VolumeAnomalyDetector()
    rng = np.random.default_rng(5)
    for h in range(4 * 168):
        tickets = int(rng.poisson(30 * rhythm_factor(START + h * HOUR)))
        detector.update("breach", START + h * HOUR, rng.binomial(tickets, 0.05), exposure=tickets)
    at = START + 4 * 168 * HOUR + 10 * HOUR
    assert not detector.update("breach", at, 10.0, exposure=200.0).is_anomaly  # 5 % of 200
    jump = detector.update("breach", at + HOUR, 20.0, exposure=40.0)
    assert jump.is_anomaly and jump.expected == pytest.approx(2.0, rel=0.3)


def test_replayed_bucket_is_neither_learned_nor_alerted() -> None:
    detector = VolumeAnomalyDetector(warmup=timedelta(0))
    for h in range(2 * 168):
        detector.update("s", START + h * HOUR, 10.0)
    last = START + (2 * 168 - 1) * HOUR
    before = pickle.dumps(detector)
    assert not detector.update("s", last, 500.0).is_anomaly
    assert pickle.dumps(detector) == before


def test_pickle_round_trip_continues_identically() -> None:
    detector = VolumeAnomalyDetector()
    feed(detector, range(3 * 168))
    clone = pickle.loads(pickle.dumps(detector))
    more = range(3 * 168, 3 * 168 + 48)
    assert feed(detector, more, seed=9) == feed(clone, more, seed=9)


def test_driver_tracker_is_bounded_and_deterministic() -> None:
    tracker = DriverTracker(max_values=10, top=3)
    for i in range(100):
        tracker.learn("s", 5.0, {"customer": {f"c{i}": 4.0, "big": 1.0}})
    stored = tracker._series["s"].values["customer"]
    assert len(stored) == 10 and "big" in stored
    drivers = tracker.explain("s", {"customer": {"big": 9.0, "new": 2.0, "c99": 4.0}}, 5.0)
    # Ranked by excess over each value's share of the expected 5 tickets.
    assert [d.value for d in drivers] == ["big", "c99", "new"]
    assert drivers[2].expected == 0.0 and drivers[2].lift == 3.0


def test_tail_z_matches_known_poisson_tails() -> None:
    assert tail_z(0, 4.0) < 0 < tail_z(12, 4.0)
    assert tail_z(50, 10.0) == pytest.approx(9.0, abs=0.01)
    assert tail_z(50, 10.0, spread=3.0) < tail_z(50, 10.0)
    with pytest.raises(ValueError):
        VolumeAnomalyDetector(bucket=timedelta(minutes=7))
