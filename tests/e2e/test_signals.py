"""SIGTERM and SIGINT stop every long-running command and everything it started.

Each command runs on private services under its own state directory; after the signal it
must exit within a bounded time and leave no process behind that belongs to that state
directory (the pipeline's processes, the private PostgreSQL and Redis).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from triage.services import free_port

pytestmark = pytest.mark.e2e


def _processes_of(state_dir: Path) -> list[int]:
    """Processes whose command line or environment names ``state_dir``."""
    marker = str(state_dir).encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            data = (entry / "cmdline").read_bytes() + (entry / "environ").read_bytes()
        except OSError:
            continue
        if marker in data:
            found.append(int(entry.name))
    return found


def _up(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


def _wait(check, timeout: float, what: str, proc: subprocess.Popen[bytes], log: Path) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check():
        assert proc.poll() is None, f"{what}: exited early\n{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"{what}: timed out\n{log.read_text()[-3000:]}"
        time.sleep(0.3)


@pytest.mark.parametrize(
    ("command", "sig", "repeat"),
    [
        (["demo", "--tickets", "5000", "--rate", "20", "--json"], signal.SIGTERM, 1),
        # A supervisor that signals again while the demo shuts down must not cut the
        # shutdown short (the pipeline and the private services would stay behind).
        (["demo", "--tickets", "5000", "--rate", "20", "--json"], signal.SIGTERM, 3),
        (["demo", "--tickets", "5000", "--rate", "20", "--json"], signal.SIGINT, 1),
        (["pipeline", "--processes", "2"], signal.SIGTERM, 1),
        (["pipeline"], signal.SIGINT, 1),
        (["api"], signal.SIGINT, 1),
        (["api"], signal.SIGTERM, 1),
    ],
    ids=[
        "demo-sigterm",
        "demo-sigterm-repeated",
        "demo-sigint",
        "pipeline-cluster-sigterm",
        "pipeline-sigint",
        "api-sigint",
        "api-sigterm",
    ],
)
def test_a_signal_stops_the_command_and_everything_it_started(
    tmp_path: Path, command: list[str], sig: signal.Signals, repeat: int
) -> None:
    state = tmp_path / "state"
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TRIAGE_")},
        "TRIAGE_STATE_DIR": str(state),
        "TRIAGE_API__PORT": str(port),
        "TRIAGE_JOBS__ENABLED": "false",
        "TRIAGE_METRICS__PORT": str(free_port()) if command[0] == "pipeline" else "",
    }
    if not env["TRIAGE_METRICS__PORT"]:
        del env["TRIAGE_METRICS__PORT"]
    log = tmp_path / "command.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "triage", *command], env=env, stdout=out, stderr=out
        )
    try:
        if command[0] == "pipeline":
            metrics = f"http://127.0.0.1:{env['TRIAGE_METRICS__PORT']}/metrics"
            _wait(lambda: _up(metrics), 180, "pipeline metrics", proc, log)
            if "--processes" in command:  # both processes of the local cluster are up
                _wait(
                    lambda: len(list((state / "cluster").glob("*.log"))) == 2,
                    60,
                    "cluster",
                    proc,
                    log,
                )
        else:
            _wait(lambda: _up(f"http://127.0.0.1:{port}/health"), 180, "API", proc, log)
        if command[0] == "demo":
            time.sleep(3)  # the workload and the pipeline are busy
        assert len(_processes_of(state)) >= 2  # the command's services and children
        proc.send_signal(sig)
        for _ in range(repeat - 1):
            time.sleep(0.3)
            if proc.poll() is None:
                proc.send_signal(sig)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    deadline = time.monotonic() + 15
    while _processes_of(state) and time.monotonic() < deadline:
        time.sleep(0.3)
    assert _processes_of(state) == [], log.read_text()[-3000:]
