"""Agent workload and burnout risk: signals, weights, decay and reasons."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime, timedelta

from models.burnout import AgentWorkload

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def test_idle_agent_has_no_risk_and_full_load_weighs_forty() -> None:
    w = AgentWorkload()
    assert w.risk() == (0.0, ())
    w.sample_load(4, 4, T0)
    assert w.risk() == (40.0, ("load 100%",))


def test_every_signal_at_its_maximum_reaches_one_hundred() -> None:
    w = AgentWorkload()
    for i in range(10):
        at = T0 + timedelta(hours=i)
        w.sample_load(6, 5, at)
        w.on_assignment(on_shift=False, negative=True, at=at)
        w.on_outcome(breached=True, at=at)
    risk, reasons = w.risk()
    assert risk == 100.0
    assert reasons[0] == "load 100%" and "after hours 100%" in reasons


def test_old_strain_fades_with_the_half_life() -> None:
    w = AgentWorkload(half_life=timedelta(days=1))
    for i in range(20):
        w.on_assignment(on_shift=False, negative=False, at=T0 + timedelta(minutes=i))
    for i in range(20):
        w.on_assignment(on_shift=True, negative=False, at=T0 + timedelta(days=5, minutes=i))
    assert w.after_hours.mean < 0.1
    assert pickle.loads(pickle.dumps(w)).risk() == w.risk()
