"""The call-history replay: policies on a known workload, the draw rule, the CLI."""

from __future__ import annotations

import csv
import json
import random
import statistics
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from evaluation.simulation import (
    POLICIES,
    Call,
    CallHistory,
    CallsFileError,
    generate_calls,
    read_calls,
    render_table,
    roster_windows,
    simulate_calls,
    simulate_file,
)
from triage.cli import app

DAY = datetime(2024, 3, 4, 9, 0, tzinfo=UTC)
# Names sort the slow agents first, so a least-loaded pecking order by id favours them.
MEAN_SECONDS = {
    "a-slow-1": 240.0,
    "a-slow-2": 240.0,
    "a-slow-3": 240.0,
    "a-slow-4": 240.0,
    "z-fast-1": 60.0,
    "z-fast-2": 60.0,
}


def write_history(path: Path, *, days: int = 2, seed: int = 1, queues: bool = False) -> Path:
    """Three hours of calls a day, one every 40 s on average, handled by random agents."""
    rng = random.Random(seed)
    agents = sorted(MEAN_SECONDS)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(
            ["arrival", "type", "agent", "handling_seconds", "queue"][: 5 if queues else 4]
        )
        for day in range(days):
            t = DAY + timedelta(days=day)
            while t < DAY + timedelta(days=day, hours=3):
                t += timedelta(seconds=rng.expovariate(1 / 40))
                work_type = rng.choice(("sales", "tech"))
                agent = rng.choice(agents)
                seconds = round(MEAN_SECONDS[agent] * rng.uniform(0.5, 1.5), 1)
                row = [t.isoformat(), work_type, agent, seconds]
                if queues:
                    row.append("vip" if agent == "z-fast-1" else "main")
                writer.writerow(row)
    return path


def test_learned_beats_least_loaded_and_the_oracle_is_best(tmp_path: Path) -> None:
    result = simulate_file(write_history(tmp_path / "calls.csv"), seed=3)
    policies = result["policies"]
    assert list(policies) == list(POLICIES)
    for m in policies.values():
        assert m["capacity_violations"] == 0 and m["assigned_off_roster"] == 0
        assert m["served"] == result["calls"] and m["unserved"] == 0
    means = {name: m["mean_handling_s"] for name, m in policies.items()}
    assert means["learned"] < 0.85 * means["least_loaded"]
    assert means["oracle"] == min(means.values())
    assert policies["oracle"]["share_of_oracle_gain"] == 1.0
    assert 0.5 < policies["learned"]["share_of_oracle_gain"] < 1.0
    assert policies["least_loaded"]["gain_vs_least_loaded"] == 0.0
    text = Console(record=True, width=160)
    text.print(render_table(result))
    assert "oracle" in text.export_text()


def test_a_run_replays_exactly_with_its_seed(tmp_path: Path) -> None:
    path = write_history(tmp_path / "calls.csv", days=1)
    policies = ("least_loaded", "learned")
    one = simulate_file(path, seed=11, policies=policies)
    assert one == simulate_file(path, seed=11, policies=policies)
    other = simulate_file(path, seed=12, policies=policies)
    assert other["policies"]["learned"] != one["policies"]["learned"]


def test_longest_idle_spreads_the_calls_that_least_loaded_stacks_on_the_first_agent(
    tmp_path: Path,
) -> None:
    # Least-loaded at capacity 1 always hands a call to the free agent with the lowest id:
    # the slow agents, first in name order. Longest idle rotates through everyone, fast
    # agents included, so its mean handling time lies below least-loaded's.
    result = simulate_file(
        write_history(tmp_path / "calls.csv"), policies=("least_loaded", "longest_idle")
    )
    m = result["policies"]
    assert m["longest_idle"]["mean_handling_s"] < m["least_loaded"]["mean_handling_s"]


def test_queues_are_a_hard_filter(tmp_path: Path) -> None:
    path = write_history(tmp_path / "calls.csv", days=1, queues=True)
    calls = read_calls(path)
    result = simulate_calls(calls, policies=("oracle",))
    assert result["queues"] == 2
    # Every "vip" call must be served by the only agent who served that queue.
    assert result["policies"]["oracle"]["served"] == len(calls)
    assert result["policies"]["oracle"]["capacity_violations"] == 0


def test_handling_times_come_from_the_pair_then_the_rescaled_agent(tmp_path: Path) -> None:
    t = DAY
    calls = [
        Call(0, 2, t, "sales", "ann", 100.0),
        Call(1, 3, t, "sales", "ann", 120.0),
        Call(2, 4, t, "sales", "ann", 140.0),
        Call(3, 5, t, "tech", "bob", 600.0),
        Call(4, 6, t, "sales", "bob", 200.0),
    ]
    history = CallHistory.from_calls(calls)
    rng = random.Random(1)
    # Ann has three sales calls: her own times.
    assert {history.draw(rng, "ann", "sales") for _ in range(50)} == {100.0, 120.0, 140.0}
    assert history.true_mean("ann", "sales") == pytest.approx(120.0)
    # Ann never took tech (mean 600 s against sales' 140 s): her sales times rescaled.
    scale = 600.0 / 140.0
    drawn = sorted({round(history.draw(rng, "ann", "tech"), 6) for _ in range(50)})
    assert drawn == pytest.approx([100.0 * scale, 120.0 * scale, 140.0 * scale])
    # Bob has only one sales call: all his calls, each rescaled to sales.
    bob = [history.draw(rng, "bob", "sales") for _ in range(4000)]
    assert statistics.fmean(bob) == pytest.approx(history.true_mean("bob", "sales"), rel=0.03)
    assert history.true_mean("bob", "sales") == pytest.approx((140.0 + 200.0) / 2)


def test_roster_runs_from_the_first_call_to_the_end_of_the_last_each_day() -> None:
    calls = [
        Call(0, 2, DAY, "sales", "ann", 60.0),
        Call(1, 3, DAY + timedelta(hours=2), "sales", "ann", 300.0),
        Call(2, 4, DAY + timedelta(days=1), "sales", "ann", 30.0),
    ]
    assert roster_windows(calls) == [
        (DAY, DAY + timedelta(hours=2, seconds=300), "ann"),
        (DAY + timedelta(days=1), DAY + timedelta(days=1, seconds=30), "ann"),
    ]


def test_generated_history_reads_back(tmp_path: Path) -> None:
    path = tmp_path / "generated.csv"
    n = generate_calls(path, agents=6, types=2, days=1, seed=2)
    calls = read_calls(path)
    assert len(calls) == n > 100
    assert {c.agent for c in calls} <= {f"agent-{i:03d}" for i in range(1, 7)}


def test_cli_prints_a_table_or_json(tmp_path: Path) -> None:
    path = write_history(tmp_path / "calls.csv", days=1)
    runner = CliRunner()
    out = runner.invoke(
        app, ["simulate", "routing", "--calls", str(path), "--json", "--policy", "oracle"]
    )
    assert out.exit_code == 0, out.output
    doc = json.loads(out.stdout)
    assert list(doc["policies"]) == ["oracle"] and doc["capacity"] == 1
    table = runner.invoke(app, ["simulate", "routing", "--calls", str(path), "--capacity", "2"])
    assert table.exit_code == 0 and "least_loaded" in table.stdout


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "calls file not found"),
        ("", "is empty"),
        (
            "arrival,type,agent\n2024-03-04T09:00:00Z,sales,ann\n",
            "lacks column(s) handling_seconds",
        ),
        ("arrival,type,agent,handling_seconds\n", "no calls"),
        (
            "arrival,type,agent,handling_seconds\n2024-03-04T09:00:00Z,sales,ann,60\n"
            "yesterday,sales,ann,60\n",
            "line 3: arrival 'yesterday' is not an ISO-8601 timestamp",
        ),
        (
            "arrival,type,agent,handling_seconds\n2024-03-04T09:00:00Z,sales,ann,soon\n",
            "line 2: handling_seconds 'soon' is not a number",
        ),
        (
            "arrival,type,agent,handling_seconds\n2024-03-04T09:00:00Z,sales,ann,-5\n",
            "line 2: handling_seconds '-5' must be 0 or more",
        ),
        (
            "arrival,type,agent,handling_seconds\n2024-03-04T09:00:00Z,sales,,60\n",
            "line 2: column 'agent' is empty",
        ),
    ],
)
def test_bad_input_is_named_by_the_cli(tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "calls.csv"
    if content is not None:
        path.write_text(content)
    with pytest.raises(CallsFileError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_calls(path)
    out = CliRunner().invoke(app, ["simulate", "routing", "--calls", str(path)])
    assert out.exit_code == 2
    assert message in " ".join(out.output.split())


def test_cli_refuses_an_unknown_policy(tmp_path: Path) -> None:
    path = write_history(tmp_path / "calls.csv", days=1)
    out = CliRunner().invoke(
        app, ["simulate", "routing", "--calls", str(path), "--policy", "fastest"]
    )
    assert out.exit_code == 2 and "unknown policy 'fastest'" in out.output
