"""``triage demo --cdc kafka --json``: the main job on the production inbound path.

The command starts everything itself (PostgreSQL, Redis, a KRaft broker, Kafka Connect
with the production connector, the pipeline in Kafka mode and the API), drives a small
workload and prints the summary as one JSON line; afterwards nothing it started may be
left running.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from triage.services import free_port

pytestmark = pytest.mark.real_kafka

REPO = Path(__file__).resolve().parents[2]
TICKETS = 12


def _processes_under(path: Path) -> list[str]:
    """Command lines of running processes that mention ``path`` (services keep their state
    directories on their command lines)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(path) in cmdline and "pytest" not in cmdline:
            found.append(f"{entry.name}: {cmdline[:200]}")
    return found


def test_demo_through_debezium_and_kafka_routes_every_ticket_and_reports_lag(
    jvm_ready: str, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIAGE_")}
    env["TRIAGE_API__PORT"] = str(free_port())
    state = tmp_path / "state"
    result = subprocess.run(
        [
            sys.executable, "-m", "triage", "demo", "--cdc", "kafka", "--json",
            "--tickets", str(TICKETS), "--rate", "12", "--state-dir", str(state),
        ],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])

    assert summary["tickets_created"] == TICKETS
    assert summary["tickets_routed"] == TICKETS
    assert summary["dead_letters"] == 0
    assert summary["warehouse_tickets"] == TICKETS
    kafka = summary["kafka"]
    assert kafka["connector"] == "triage-helpdesk"
    assert kafka["connector_state"] == "RUNNING"
    lag = kafka["consumer_lag"]
    # Every ticket's insert went through Debezium's topic, and the pipeline's durable
    # position reached the end of every topic once the tickets were routed.
    assert lag["records"]["triage.public.tickets"] >= TICKETS
    assert lag["records"]["triage.public.agents"] > 0
    assert lag["total"] == 0, lag
    assert set(lag["by_topic"]) == set(lag["records"])
    assert (state / "demo" / "connect" / "connect.log").exists()
    assert _processes_under(state) == []
