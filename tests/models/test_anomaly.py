"""Seasonal volume anomaly detector: incidents found, weekly rhythm quiet, drivers named."""

from __future__ import annotations

import pickle
from datetime import UTC, date, datetime, time, timedelta

import numpy as np
import pytest

from evaluation.workload import rhythm_factor
from models.anomaly import (
    AnomalyAlert,
    AnomalyScore,
    DriverTracker,
    VolumeAnomalyDetector,
    tail_z,
)
from models.calendar import BusinessCalendar, weekday_hours

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
    assert tail_z(50, 10.0) == pytest.approx(9.0, abs=0.3)
    # O(1) closed form: a count of ten million costs what a count of ten does.
    assert tail_z(10**7, 10**7 + 20_000) == pytest.approx(-6.3, abs=0.1)
    assert tail_z(50, 10.0, spread=3.0) < tail_z(50, 10.0)
    with pytest.raises(ValueError):
        VolumeAnomalyDetector(bucket=timedelta(minutes=7))


def test_rate_drivers_blame_the_value_whose_rate_rose_not_the_busier_one() -> None:
    tracker = DriverTracker(max_values=3)
    for _ in range(100):  # both categories: 20 targets an hour, 1 breached
        tracker.learn(
            "rate",
            2.0,
            {"category": {"billing": 1.0, "shipping": 1.0}},
            {"category": {"billing": 20.0, "shipping": 20.0}},
        )
    breaches = {"category": {"billing": 3.0, "shipping": 8.0}}
    exposure = {"category": {"billing": 60.0, "shipping": 20.0, "account": 20.0}}
    # 5 % of the hour's 100 targets: billing tripled its targets, shipping its breach rate.
    drivers = tracker.explain("rate", breaches, 5.0, exposure)
    assert [(d.value, d.expected) for d in drivers] == [("shipping", pytest.approx(1.0))]
    # Judged by shares of breaches alone, billing's 3 would exceed its usual half of 5.
    shares = tracker.explain("rate", breaches, 5.0)
    assert [d.value for d in shares] == ["shipping", "billing"]
    for _ in range(3):  # a rate is as good as its exposure: that decides what is kept
        tracker.learn(
            "rate", 1.0, {"category": {"new": 1.0}}, {"category": {"account": 50.0, "new": 1.0}}
        )
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


def test_alert_direction_defaults_to_up_for_existing_constructors() -> None:
    alert = AnomalyAlert("s", START, 10.0, 2.0, 5.0)
    assert alert.direction == "up" and alert.drivers == []


def test_a_channel_going_silent_alerts_down_and_is_not_learned() -> None:
    detector = VolumeAnomalyDetector(warmup=2 * 168)
    scores = feed(detector, range(3 * 168))
    assert not any(s.is_anomaly for s in scores)
    # Monday 10:00 to 13:00 of week four: nothing arrives.
    silent = [
        detector.update("volume:billing", START + (3 * 168 + h) * HOUR, 0.0) for h in range(10, 13)
    ]
    assert silent[0].alert is not None and silent[0].alert.direction == "down"
    assert silent[0].score <= -4 and all(s.is_anomaly for s in silent)
    assert silent[1].alert is None  # one episode
    # The zeros were clipped when learned: next week's Monday still expects a busy morning.
    feed(detector, range(3 * 168 + 13, 4 * 168 + 9), seed=8)
    monday = detector.baseline("volume:billing", START + (4 * 168 + 11) * HOUR)
    assert monday is not None
    assert monday[0] > 0.6 * silent[1].expected


def test_weekend_is_learned_friday_saturday_quiet_and_sunday_busy() -> None:
    detector = VolumeAnomalyDetector(warmup=168)
    rng = np.random.default_rng(2)

    def rate(at: datetime) -> float:
        quiet = at.weekday() in (4, 5)
        return (2.0 if quiet else 30.0) if 8 <= at.hour < 18 else 1.0

    scores = [
        detector.update("s", START + h * HOUR, float(rng.poisson(rate(START + h * HOUR))))
        for h in range(6 * 168)
    ]
    assert not any(s.is_anomaly for s in scores)
    saturday_noon = START + (6 * 168 + 5 * 24 + 12) * HOUR
    sunday_noon = saturday_noon + 24 * HOUR
    saturday = detector.baseline("s", saturday_noon)
    sunday = detector.baseline("s", sunday_noon)
    assert saturday is not None and sunday is not None
    assert sunday[0] > 25.0 and saturday[0] < 0.2 * sunday[0]


def test_warmup_in_points_and_duration_both_work() -> None:
    by_points = VolumeAnomalyDetector(warmup=5)
    by_time = VolumeAnomalyDetector(warmup=timedelta(hours=5))
    for h in range(5):
        assert by_points.update("s", START + h * HOUR, 10.0).warming_up
        assert by_time.update("s", START + h * HOUR, 10.0).warming_up
    assert not by_points.update("s", START + 5 * HOUR, 10.0).warming_up
    assert not by_time.update("s", START + 5 * HOUR, 10.0).warming_up


def test_non_count_series_use_a_gaussian_scale_and_alert_both_ways() -> None:
    detector = VolumeAnomalyDetector(warmup=200)
    rng = np.random.default_rng(4)
    # Utilisation between 0 and 1: Poisson would call 0.4 a zero and never alert.
    for h in range(400):
        score = detector.update("util", START + h * HOUR, 0.5 + float(rng.normal(0, 0.02)))
        assert not score.is_anomaly
    up = detector.update("util", START + 400 * HOUR, 0.7)
    down = detector.update("util", START + 402 * HOUR, 0.3)
    assert up.alert is not None and up.alert.direction == "up"
    assert down.alert is not None and down.alert.direction == "down"
    assert up.score == pytest.approx(10.0, rel=0.35)
    # Negative measurements are fine too.
    shifted = VolumeAnomalyDetector(warmup=50)
    for h in range(100):
        assert not shifted.update(
            "d", START + h * HOUR, -3.0 + float(rng.normal(0, 0.1))
        ).is_anomaly


def test_level_shift_is_absorbed_after_a_bounded_episode() -> None:
    detector = VolumeAnomalyDetector(warmup=168, absorb_after=12)
    rng = np.random.default_rng(6)
    for h in range(2 * 168):
        detector.update("s", START + h * HOUR, float(rng.poisson(20.0)))
    after = [
        detector.update("s", START + h * HOUR, float(rng.poisson(60.0)))
        for h in range(2 * 168, 3 * 168)
    ]
    flagged = [i for i, s in enumerate(after) if s.is_anomaly]
    assert flagged[:3] == [0, 1, 2] and after[0].alert is not None
    # Each episode ends by its 12th point; after at most two the new level is the normal one.
    assert len(flagged) <= 24
    assert not any(s.is_anomaly for s in after[24:])
    assert after[-1].expected == pytest.approx(60.0, rel=0.2)


def test_calendar_closures_are_expected_not_alerted_nor_learned() -> None:
    holiday = date(2024, 1, 22)  # the fourth Monday
    calendar = BusinessCalendar("UTC", weekday_hours(time(9), time(17)), {holiday})
    detector = VolumeAnomalyDetector(warmup=2 * 168, calendar=calendar)
    plain = VolumeAnomalyDetector(warmup=2 * 168)
    feed(detector, range(3 * 168))
    feed(plain, range(3 * 168))
    at = START + (3 * 168 + 10) * HOUR
    assert at.date() == holiday
    closed = detector.update("volume:billing", at, 0.0)
    assert not closed.is_anomaly and closed.score <= -4
    assert plain.update("volume:billing", at, 0.0).alert is not None
    # Not learned: the baseline of that slot is what it was before the holiday.
    before = detector.baseline("volume:billing", at + 168 * HOUR)
    fresh = VolumeAnomalyDetector(warmup=2 * 168)
    feed(fresh, range(3 * 168))
    assert before == fresh.baseline("volume:billing", at + 168 * HOUR)
