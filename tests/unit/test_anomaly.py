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


def test_rate_drivers_blame_the_value_whose_rate_rose_not_the_busier_one() -> None:
    tracker = DriverTracker(max_values=3)
    for _ in range(100):  # both categories: 20 targets an hour, 1 breached
        tracker.learn("rate", 2.0, {"category": {"billing": 1.0, "shipping": 1.0}},
                      {"category": {"billing": 20.0, "shipping": 20.0}})  # fmt: skip
    breaches = {"category": {"billing": 3.0, "shipping": 8.0}}
    exposure = {"category": {"billing": 60.0, "shipping": 20.0, "account": 20.0}}
    # 5 % of the hour's 100 targets: billing tripled its targets, shipping its breach rate.
    drivers = tracker.explain("rate", breaches, 5.0, exposure)
    assert [(d.value, d.expected) for d in drivers] == [("shipping", pytest.approx(1.0))]
    # Judged by shares of breaches alone, billing's 3 would exceed its usual half of 5.
    shares = tracker.explain("rate", breaches, 5.0)
    assert [d.value for d in shares] == ["shipping", "billing"]
    for _ in range(3):  # a rate is as good as its exposure: that decides what is kept
        tracker.learn("rate", 1.0, {"category": {"new": 1.0}},
                      {"category": {"account": 50.0, "new": 1.0}})  # fmt: skip
    assert set(tracker._series["rate"].exposures["category"]) == {"account", "billing", "shipping"}
    assert set(tracker._series["rate"].values["category"]) == {"account", "billing", "shipping"}


def test_rate_bucket_without_exposure_says_nothing_and_few_targets_never_alert() -> None:
    def history(detector: VolumeAnomalyDetector) -> VolumeAnomalyDetector:
        for h in range(3 * 168):  # 5 % of 40 targets an hour breach
            detector.update("rate", START + h * HOUR, 2.0, exposure=40.0)
        return detector

    detector = history(VolumeAnomalyDetector())
    strict = history(VolumeAnomalyDetector(min_exposure=10.0))
    at = START + 3 * 168 * HOUR
    before = pickle.dumps(detector)
    empty = detector.update("rate", at, 0.0, exposure=0.0)
    assert empty.expected is None and not empty.is_anomaly
    assert pickle.dumps(detector) == before  # an empty hour is not learned as a zero rate
    assert not detector.update("rate", at, 1.0, exposure=2.0).is_anomaly  # 1 of 2
    # 6 of 6 breached where 5 % is usual: material at the default minimum of 5 targets,
    # below a minimum of 10.
    assert detector.update("rate", at + HOUR, 6.0, exposure=6.0).is_anomaly
    assert not strict.update("rate", at + HOUR, 6.0, exposure=6.0).is_anomaly
