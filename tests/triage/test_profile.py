"""`triage profile`: samples sorted into the flow's stages, pipeline processes found,
and a real py-spy recording of a process busy in one stage."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from triage.cli.commands import app
from triage.tools.cpu import parent_pid
from triage.tools.profile import (
    OTHER_FLOW,
    RUNTIME,
    StageProfile,
    parse_raw,
    pipeline_pids,
    record,
    stage_of,
)

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads /proc (Linux only)")

ROOT = Path(__file__).resolve().parents[2]
RUN = "run_pipeline (triage/runtime.py:270)"


def test_the_innermost_step_names_the_stage() -> None:
    # Flattening a ticket inside the warehouse sink is the warehouse's cost, and the
    # analytics sink's isolation helper (another module) is still the analytics write.
    warehouse = [
        RUN,
        "_WarehousePartition.write_batch (sinks/warehouse.py:520)",
        "ticket_fields (models/codecs.py:117)",
    ]
    analytics = [
        RUN,
        "_PostgresPartition.write_batch (sinks/postgres.py:540)",
        "write_isolating (sinks/dead_letters.py:70)",
        "Copy.write_row (psycopg/_copy.py:90)",
    ]
    queue = [
        RUN,
        "_JournalLogic.on_item (pipelines/state.py:316)",
        "_JournalLogic._record (pipelines/state.py:300)",
        "_JournalLogic._apply (pipelines/state.py:290)",
        "make_queue_step.<locals>.queue_step (pipelines/flow.py:705)",
    ]
    journal = queue[:3]  # pickling the input for the journal, outside the mapper
    assert stage_of(warehouse) == "write warehouse"
    assert stage_of(analytics) == "write analytics"
    assert stage_of(queue) == "route (queues, SLA clocks)"
    assert stage_of(journal) == "recovery snapshots"
    assert stage_of([RUN, "ticket_key (pipelines/flow.py:540)"]) == OTHER_FLOW
    assert stage_of([RUN, "shim_mapper (bytewax/operators/__init__.py:1)"]) == RUNTIME
    assert stage_of([]) == RUNTIME


def test_raw_stacks_are_parsed_and_idle_server_samples_left_out() -> None:
    lines = [
        f"{RUN};make_enrich_step.<locals>.enrich_step (pipelines/flow.py:495) 30\n",
        f"{RUN};duplicates_step (pipelines/flow.py:531) 10\n",
        "thread;serve_forever (socketserver.py:233);select (selectors.py:415) 50\n",
        "not a sample line\n",
        "\n",
    ]
    profile = StageProfile()
    for frames, count in parse_raw(lines):
        profile.add(frames, count)
    report = profile.report()
    assert report["samples"] == 40
    assert report["stages_percent"] == {"enrich": 75.0, "duplicates": 25.0}
    assert sum(report["top_functions_percent"].values()) == pytest.approx(100.0)


def _sleeper(*args: str) -> subprocess.Popen[bytes]:
    """A process whose command line reads like ``python -c … <args>``."""
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", *args])


def test_pipeline_processes_are_found_and_a_clusters_supervisor_is_not() -> None:
    spawn_child = (
        "import subprocess, sys, time\n"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)',"
        " '-m', 'triage', 'pipeline', '--no-migrate'])\n"
        "time.sleep(60)\n"
    )
    single = _sleeper("-m", "triage", "pipeline")
    other = _sleeper("-m", "triage", "api")
    supervisor = subprocess.Popen([sys.executable, "-c", spawn_child, "-m", "triage", "pipeline"])
    children: list[int] = []
    try:
        deadline = time.monotonic() + 10
        found: list[int] = []
        while time.monotonic() < deadline:
            found = pipeline_pids()
            children = [pid for pid in found if parent_pid(pid) == supervisor.pid]
            if single.pid in found and children:
                break
            time.sleep(0.05)
        assert single.pid in found
        assert other.pid not in found
        assert supervisor.pid not in found
        assert len(children) == 1  # the cluster's process is sampled, not its supervisor
    finally:
        for proc in (single, other, supervisor):
            proc.kill()
            proc.wait()
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_a_real_recording_attributes_a_busy_decode_loop_to_decode() -> None:
    code = (
        "from models.events import RawChange\n"
        "from pipelines.flow import decode\n"
        "raw = RawChange(topic='triage.public.tickets', key=b'{}', value=b'not json')\n"
        "print('ready', flush=True)\n"
        "while True: decode(raw)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        report = record([proc.pid], seconds=2, rate=100).report()
    finally:
        proc.kill()
        proc.wait()
    assert report["samples"] >= 50
    assert next(iter(report["stages_percent"])) == "decode"
    assert report["stages_percent"]["decode"] >= 80


def test_the_command_explains_when_no_pipeline_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("triage.tools.profile.pipeline_pids", lambda: [])
    result = CliRunner().invoke(app, ["profile", "--seconds", "1"])
    assert result.exit_code == 1
    assert "no running `triage pipeline` found" in result.output
