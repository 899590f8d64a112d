"""Erlang C staffing: known values, monotonicity and plans from forecasts."""

from __future__ import annotations

import itertools
import math
from datetime import datetime

import numpy as np
import pytest

from models.forecast import Forecast
from models.staffing import (
    agents_needed,
    erlang_c,
    service_level,
    staffing_plan,
    traffic_erlangs,
)


def erlang_c_by_sums(traffic: float, agents: int) -> float:
    """The textbook closed form, fine for small numbers; checks the recursion."""
    top = traffic**agents / math.factorial(agents) * agents / (agents - traffic)
    below = sum(traffic**k / math.factorial(k) for k in range(agents))
    return top / (below + top)


def test_known_probability_of_waiting() -> None:
    assert erlang_c(2.0, 3) == pytest.approx(4 / 9, abs=1e-12)  # 0.4444
    assert erlang_c(5.0, 8) == pytest.approx(0.16727, abs=1e-5)


@pytest.mark.parametrize(("traffic", "agents"), [(0.5, 1), (2.0, 3), (5.0, 6), (9.3, 12)])
def test_recursion_matches_closed_form(traffic: float, agents: int) -> None:
    assert erlang_c(traffic, agents) == pytest.approx(erlang_c_by_sums(traffic, agents))


def test_unstable_queue_always_waits() -> None:
    assert erlang_c(5.0, 5) == 1.0
    assert erlang_c(5.0, 3) == 1.0
    assert service_level(100, 180, agents=5) == 0.0
    assert erlang_c(0.0, 2) == 0.0


def test_textbook_agents_needed() -> None:
    # 100 contacts/h × 180 s = 5 Erlangs. 7 agents answer 74.0 % within 20 s, 8 answer
    # 88.0 %, so 8 is the smallest staff meeting 80/20.
    assert traffic_erlangs(100, 180) == 5.0
    assert service_level(100, 180, agents=7, target_seconds=20) == pytest.approx(0.7404, abs=1e-4)
    assert service_level(100, 180, agents=8, target_seconds=20) == pytest.approx(0.8801, abs=1e-4)
    assert agents_needed(100, 180, target_service_level=0.8, target_seconds=20) == 8


def test_occupancy_cap_and_zero_traffic() -> None:
    assert agents_needed(100, 180, 0.8, 20, max_occupancy=0.6) == 9  # 5 / 9 < 0.6
    assert agents_needed(0, 180) == 0
    # A zero target still needs a stable queue: occupancy below 1.
    assert agents_needed(100, 180, target_service_level=0.0) == 6


def test_more_agents_serve_better() -> None:
    levels = [service_level(300, 240, agents=n, target_seconds=30) for n in range(20, 40)]
    assert all(b >= a for a, b in itertools.pairwise(levels))
    waits = [erlang_c(20.0, n) for n in range(21, 40)]
    assert all(b < a for a, b in itertools.pairwise(waits))


def test_large_traffic_is_stable() -> None:
    wait = erlang_c(1000.0, 1030)
    assert 0.0 < wait < 1.0
    agents = agents_needed(20_000, 180, target_service_level=0.9, target_seconds=20)
    assert 1000 < agents < 1060
    assert service_level(20_000, 180, agents) >= 0.9
    assert service_level(20_000, 180, agents - 1) < 0.9


def test_more_traffic_needs_more_agents() -> None:
    needed = [agents_needed(rate, 300) for rate in (10, 50, 100, 200, 400)]
    assert needed == sorted(needed)
    assert len(set(needed)) == len(needed)


def test_staffing_plan_uses_forecast_or_upper_bound() -> None:
    fc = Forecast(
        datetime(2024, 1, 1, 8),
        values=np.array([100.0, 40.0, 0.0]),
        lower=np.array([80.0, 30.0, 0.0]),
        upper=np.array([130.0, 55.0, 1.0]),
        method="poisson",
    )
    plan = staffing_plan(fc, aht_seconds=180)
    assert [p.hour for p in plan] == fc.hours
    assert [(p.volume, p.agents) for p in plan] == [
        (100.0, 8),
        (40.0, agents_needed(40, 180)),
        (0.0, 0),
    ]
    hour, volume, agents = plan[0]
    assert (hour, volume, agents) == (datetime(2024, 1, 1, 8), 100.0, 8)
    cautious = staffing_plan(fc, aht_seconds=180, use_upper=True)
    assert all(c.agents >= p.agents for c, p in zip(cautious, plan, strict=True))
    assert cautious[0].agents > plan[0].agents


def test_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        traffic_erlangs(-1, 180)
    with pytest.raises(ValueError):
        agents_needed(10, 0)
    with pytest.raises(ValueError):
        agents_needed(10, 180, target_service_level=1.0)
    with pytest.raises(ValueError):
        erlang_c(1.0, -1)
