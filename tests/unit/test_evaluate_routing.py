"""Offline routing evaluation: fairness, capacity and the learned ranker's advantage."""

from __future__ import annotations

import json
import time

import pytest
from rich.console import Console

from connectors.workload import WorkloadConfig
from triage.evaluate_routing import RANKERS, evaluate_routing, plan_assignment, render_table


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
