"""Offline routing evaluation: fairness, capacity and the learned ranker's advantage."""

from __future__ import annotations

import json
import random
import statistics
import time

import pytest
from rich.console import Console

from evaluation.routing import RANKERS, evaluate_routing, plan_assignment, render_table
from evaluation.workload import (
    WorkloadConfig,
    draw_service_seconds,
    mean_service_seconds,
    plan_agents,
)


@pytest.mark.parametrize("layout", ["teams", "pooled"])
def test_small_simulation_is_fast_serialisable_and_within_capacity(layout: str) -> None:
    started = time.perf_counter()
    result = evaluate_routing(seed=3, agents=10, tickets=400, days=3, layout=layout)
    assert time.perf_counter() - started < 20
    json.dumps(result)
    assert set(result["rankers"]) == set(RANKERS)
    for metrics in result["rankers"].values():
        assert metrics["capacity_violations"] == 0
        assert metrics["tickets"] == 400
        assert metrics["solved"] + metrics["never_assigned"] <= 400
        assert 0.0 <= metrics["sla_first_reply_compliance"] <= 1.0
    console = Console(record=True, width=160)
    console.print(render_table(result))
    assert "least_loaded" in console.export_text()


def test_assignment_draws_depend_only_on_ticket_agent_and_attempt() -> None:
    cfg = WorkloadConfig(seed=5)
    one = plan_assignment(cfg, ticket_id=3, agent_id=4, attempt=0, skill=0.9)
    assert one == plan_assignment(cfg, ticket_id=3, agent_id=4, attempt=0, skill=0.9)
    assert one != plan_assignment(cfg, ticket_id=3, agent_id=5, attempt=0, skill=0.9)


def test_learned_ranker_beats_round_robin_on_resolution_time() -> None:
    # A pooled helpdesk at moderate load, where the choice of agent matters: 2000 tickets
    # over two weeks. Over seeds 1-3 and 7-9 the learned ranker is 5-10% faster; the bar
    # here is lower so that the test states the property, not one seed's margin.
    result = evaluate_routing(seed=7, agents=20, tickets=2000, days=14, layout="pooled")
    rankers = result["rankers"]
    assert all(m["capacity_violations"] == 0 for m in rankers.values())
    assert result["improvement_vs_round_robin"] >= 0.03
    assert (
        rankers["learned"]["mean_resolution_min"] < rankers["least_loaded"]["mean_resolution_min"]
    )
    assert rankers["learned"]["learned_outcomes"] > 1500


def test_longest_idle_and_oracle_are_reported_beside_learned() -> None:
    result = evaluate_routing(seed=7, agents=20, tickets=1500, days=10, layout="pooled")
    rankers = result["rankers"]
    assert {"longest_idle", "oracle"} <= set(rankers)
    # The oracle, told the true mean service time per agent and category, is the yardstick.
    oracle = rankers["oracle"]["mean_resolution_min"]
    assert oracle < rankers["least_loaded"]["mean_resolution_min"]
    assert rankers["oracle"]["share_of_oracle_gain"] == 1.0
    assert rankers["least_loaded"]["improvement_vs_least_loaded"] == 0.0
    assert result["oracle_improvement_vs_least_loaded"] > 0.01
    assert all(m["capacity_violations"] == 0 for m in rankers.values())


def test_workload_knobs_keep_the_default_draws_and_widen_the_spread() -> None:
    default = WorkloadConfig(seed=5)
    assert default.home_skill_range == (0.7, 0.98) and default.service_shape == 2.0
    rng = random.Random(1)
    same = random.Random(1)
    draws = [draw_service_seconds(rng, default, 0.8) for _ in range(5)]
    # The historical formula: gamma(2, mean / 2).
    assert draws == [
        same.gammavariate(2.0, mean_service_seconds(default, 0.8) / 2.0) for _ in range(5)
    ]
    wide = WorkloadConfig(seed=5, home_skill_range=(0.1, 0.98))
    home = [
        level
        for spec in plan_agents(wide)
        for category, level in spec.skills.items()
        if wide.category_teams[category] == spec.team
    ]
    assert min(home) < 0.5
    heavy = WorkloadConfig(seed=5, service_shape=0.5)
    samples = [draw_service_seconds(rng, heavy, 0.8) for _ in range(20000)]
    mean = mean_service_seconds(heavy, 0.8)
    assert statistics.fmean(samples) == pytest.approx(mean, rel=0.05)
    # Heavier tail than the default: more draws beyond three times the mean.
    default_samples = [draw_service_seconds(rng, default, 0.8) for _ in range(20000)]
    assert sum(s > 3 * mean for s in samples) > 2 * sum(s > 3 * mean for s in default_samples)


def test_expected_time_ranker_can_be_evaluated_by_name() -> None:
    result = evaluate_routing(
        seed=2, agents=10, tickets=300, days=3, layout="pooled", rankers=("expected_time",)
    )
    metrics = result["rankers"]["expected_time"]
    assert metrics["capacity_violations"] == 0 and metrics["solved"] > 250
