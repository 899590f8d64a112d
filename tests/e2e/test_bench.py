"""``triage bench`` end to end at a small size: its own private stores, one and two pipeline
processes, and a JSON document whose runs all completed, with the CPU each used.

The numbers themselves are machine-dependent and not asserted (benchmarks print them);
what must hold is that every run routed every ticket, the two process counts left the same
stores, and the CPU meter saw the pipeline and PostgreSQL work.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def test_a_small_bench_completes_every_run_and_meters_the_cpu(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIAGE_")}
    env["TRIAGE_STATE_DIR"] = str(tmp_path)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "triage",
            "bench",
            "--events",
            "300",
            "--rate",
            "20",
            "--seconds",
            "2",
            "--processes",
            "1,2",
            "--state-dir",
            str(tmp_path),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])

    latency = report["latency"]
    assert latency["routed"] == latency["tickets"] > 0
    throughput = report["throughput"]
    assert throughput["routed"] == throughput["tickets"] == 300
    mixed = report["mixed_throughput"]
    assert mixed["tickets_complete"] == mixed["change_events"] // 5
    assert report["recovery"]["restart_to_first_decision_s"] is not None

    cpu = throughput["cpu"]
    assert cpu["cpu_seconds"]["pipeline"] > 0
    assert cpu["cpu_seconds"]["postgres"] > 0  # the private server is on this host
    assert "redis" in cpu["cpu_seconds"]
    assert cpu["machine_cores"] == os.cpu_count()
    assert throughput["pipeline_cpu_ms_per_ticket"] > 0
    # One process runs its worker on the main thread.
    assert next(iter(cpu["threads"]["cpu_seconds"])) == "main"

    scale = report["scale"]
    assert report["same_results"] is True, scale.get("differing")
    for count in ("1", "2"):
        assert scale[count]["routed"] == 300
        assert scale[count]["cpu"]["cpu_seconds"]["pipeline"] > 0
    # Two processes: each runs Bytewax's worker thread beside its main thread.
    assert any(
        name.startswith("timely:work") for name in scale["2"]["cpu"]["threads"]["cpu_seconds"]
    )
    assert scale["ratio"] > 0
