"""Agents needed per hour from forecast ticket volumes, by the Erlang C queueing model.

Erlang C (M/M/n) assumes Poisson arrivals, exponential handling times and that waiting
contacts never give up; it therefore errs on the side of more agents, which is the safe
side for a staffing plan. Traffic in Erlangs is the arrival rate times the average
handling time (AHT): 100 contacts an hour at 180 s each keep 5 agents busy on average.

The probability of waiting is computed through the Erlang B recursion
``B(n) = A·B(n-1) / (n + A·B(n-1))`` and ``C = n·B / (n - A·(1 - B))``, which stays
between 0 and 1 at every step and so never overflows, unlike the textbook formula's
``A**n / n!`` terms (traffic of a few hundred Erlangs is fine).

Example:
    >>> round(erlang_c(2.0, 3), 4)
    0.4444
    >>> agents_needed(100, aht_seconds=180, target_service_level=0.8, target_seconds=20)
    8
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import NamedTuple

from models.forecast import Forecast

SECONDS_PER_HOUR = 3600.0


class StaffingHour(NamedTuple):
    """Agents needed in one hour of a staffing plan."""

    hour: datetime
    """Start of the hour."""
    volume: float
    """Forecast contacts arriving in that hour."""
    agents: int
    """Smallest number of agents meeting the service-level target."""


def traffic_erlangs(arrival_rate_per_hour: float, aht_seconds: float) -> float:
    """Offered load: arrivals per hour × handling hours per contact.

    Example:
        >>> traffic_erlangs(100, 180)
        5.0
    """
    if arrival_rate_per_hour < 0 or aht_seconds <= 0:
        raise ValueError("arrival rate must be ≥ 0 and AHT > 0")
    return arrival_rate_per_hour * aht_seconds / SECONDS_PER_HOUR


def _erlang_b(traffic: float, agents: int) -> float:
    blocking = 1.0
    for n in range(1, agents + 1):
        blocking = traffic * blocking / (n + traffic * blocking)
    return blocking


def _erlang_c_from_b(traffic: float, agents: int, blocking: float) -> float:
    if agents <= traffic:
        return 1.0  # the queue grows without bound: everyone waits
    return agents * blocking / (agents - traffic * (1.0 - blocking))


def erlang_c(traffic_erlangs: float, agents: int) -> float:
    """Probability that a contact has to wait (Erlang C); 1.0 when agents ≤ traffic.

    Example:
        >>> round(erlang_c(5.0, 8), 4)
        0.1673
    """
    if traffic_erlangs < 0:
        raise ValueError("traffic must be ≥ 0")
    if agents < 0:
        raise ValueError("agents must be ≥ 0")
    if traffic_erlangs == 0:
        return 0.0
    return _erlang_c_from_b(traffic_erlangs, agents, _erlang_b(traffic_erlangs, agents))


def _service_level(
    traffic: float, agents: int, wait: float, target_seconds: float, aht: float
) -> float:
    if traffic == 0:
        return 1.0
    if agents <= traffic:
        return 0.0
    # P(wait ≤ t) = 1 - C · exp(-(n - A) · t / AHT) for M/M/n with first-come service.
    return 1.0 - wait * math.exp(-(agents - traffic) * target_seconds / aht)


def service_level(
    arrival_rate_per_hour: float, aht_seconds: float, agents: int, target_seconds: float = 20.0
) -> float:
    """Share of contacts answered within ``target_seconds`` (0 when agents ≤ traffic).

    Example:
        >>> round(service_level(100, 180, agents=8, target_seconds=20), 3)
        0.88
    """
    if target_seconds < 0:
        raise ValueError("target_seconds must be ≥ 0")
    traffic = traffic_erlangs(arrival_rate_per_hour, aht_seconds)
    wait = erlang_c(traffic, agents)
    return _service_level(traffic, agents, wait, target_seconds, aht_seconds)


def agents_needed(
    arrival_rate_per_hour: float,
    aht_seconds: float,
    target_service_level: float = 0.8,
    target_seconds: float = 20.0,
    *,
    max_occupancy: float = 1.0,
) -> int:
    """Smallest number of agents meeting the service level with occupancy below the cap.

    Occupancy (traffic / agents) must stay strictly below ``max_occupancy``; at 1.0 that
    is the stability condition of the queue, lower caps leave agents slack. No arrivals
    need no agents.

    Example:
        >>> agents_needed(100, 180, target_service_level=0.8, target_seconds=20)
        8
        >>> agents_needed(100, 180, 0.8, 20, max_occupancy=0.6)
        9
    """
    if not 0.0 <= target_service_level < 1.0:
        raise ValueError("target_service_level must lie in [0, 1)")
    if not 0.0 < max_occupancy <= 1.0:
        raise ValueError("max_occupancy must lie in (0, 1]")
    if target_seconds < 0:
        raise ValueError("target_seconds must be ≥ 0")
    traffic = traffic_erlangs(arrival_rate_per_hour, aht_seconds)
    if traffic == 0:
        return 0
    # The Erlang B value is carried from n to n + 1 so the search costs one step per agent.
    blocking = 1.0
    agents = 0
    while True:
        agents += 1
        blocking = traffic * blocking / (agents + traffic * blocking)
        if traffic / agents >= max_occupancy:
            continue
        wait = _erlang_c_from_b(traffic, agents, blocking)
        reached = _service_level(traffic, agents, wait, target_seconds, aht_seconds)
        if reached >= target_service_level:
            return agents


def staffing_plan(
    forecast: Forecast,
    aht_seconds: float,
    *,
    target_service_level: float = 0.8,
    target_seconds: float = 20.0,
    max_occupancy: float = 1.0,
    use_upper: bool = False,
) -> list[StaffingHour]:
    """Agents needed for every forecast hour.

    Args:
        forecast: Hourly volume forecast.
        aht_seconds: Average handling time of one contact.
        target_service_level: Share of contacts to answer within ``target_seconds``.
        target_seconds: Answer-time target.
        max_occupancy: Cap on traffic per agent (see :func:`agents_needed`).
        use_upper: Staff for the interval's upper bound instead of the point forecast,
            to meet the target even in a busy hour.

    Example:
        >>> from datetime import datetime
        >>> import numpy as np
        >>> fc = Forecast(datetime(2024, 1, 1), np.array([100.0, 0.0]),
        ...               np.array([80.0, 0.0]), np.array([130.0, 2.0]), "poisson")
        >>> [p.agents for p in staffing_plan(fc, aht_seconds=180)]
        [8, 0]
        >>> [p.agents for p in staffing_plan(fc, aht_seconds=180, use_upper=True)]
        [10, 1]
    """
    volumes = forecast.upper if use_upper else forecast.values
    return [
        StaffingHour(
            hour,
            float(volume),
            agents_needed(
                float(volume),
                aht_seconds,
                target_service_level,
                target_seconds,
                max_occupancy=max_occupancy,
            ),
        )
        for hour, volume in zip(forecast.hours, volumes, strict=True)
    ]
