"""``triage demo --cdc kafka --json``: the main job on the production inbound path.

The command starts everything itself (PostgreSQL, Redis, a KRaft broker, Kafka Connect
with the production connector, the pipeline in Kafka mode and the API), drives a small
workload and prints the summary as one JSON line. With ``--serve`` it then keeps serving
until SIGTERM, after which nothing it started may be left running.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from triage.services import free_port

pytestmark = pytest.mark.real_kafka

REPO = Path(__file__).resolve().parents[2]
TICKETS = 12


def _processes_under(path: Path) -> list[str]:
    """Running processes whose command line or state directory (``TRIAGE_STATE_DIR``, how
    the pipeline is told where it lives) mentions ``path``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        state_dirs = [v.decode() for v in environ if v.startswith(b"TRIAGE_STATE_DIR=")]
        if str(path) in cmdline or any(str(path) in v for v in state_dirs):
            found.append(f"{entry.name}: {cmdline[:200]}")
    return found


def test_demo_through_kafka_routes_every_ticket_reports_lag_and_stops_cleanly(
    jvm_ready: str, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIAGE_")}
    env["TRIAGE_API__PORT"] = str(free_port())
    state = tmp_path / "state"
    errors = tmp_path / "demo.err"
    with errors.open("wb") as stderr:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "triage",
                "demo",
                "--cdc",
                "kafka",
                "--json",
                "--serve",
                "--tickets",
                str(TICKETS),
                "--rate",
                "12",
                "--state-dir",
                str(state),
            ],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    try:
        line = _read_line(proc, timeout=300)
        assert line, errors.read_text()[-3000:]
        summary = json.loads(line)
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert code == 0, errors.read_text()[-3000:]
    assert _processes_under(state) == []

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


def _read_line(proc: subprocess.Popen[str], *, timeout: float) -> str:
    """The first line the process prints, or "" when it exits or ``timeout`` passes."""
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    return proc.stdout.readline().strip() if ready else ""
