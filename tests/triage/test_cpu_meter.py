"""The benchmark's CPU meter: process trees' CPU seconds from /proc, live and reaped."""

from __future__ import annotations

import subprocess
import sys
import time

import psycopg
import pytest
import redis

from triage.services import LocalPostgres, LocalRedis
from triage.tools.cpu import (
    CpuMeter,
    postgres_server_pid,
    redis_server_pid,
    thread_seconds,
    tree_seconds,
)

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads /proc (Linux only)")

# A child that burns about `BURN` seconds of CPU in a grandchild, then (with `wait`) reaps
# it and sleeps, or (without) sleeps while the grandchild still runs.
BURN = 0.4
_PARENT = """
import subprocess, sys, time
burn = "import time\\nend = time.process_time() + {burn}\\nwhile time.process_time() < end: pass\\n"
child = subprocess.Popen([sys.executable, "-c", burn + ({linger} and "time.sleep(30)" or "")])
if {wait}:
    child.wait()
print("ready", flush=True)
time.sleep(30)
"""


def _spawn(*, wait: bool, linger: bool) -> subprocess.Popen[str]:
    code = _PARENT.format(burn=BURN, wait=wait, linger=linger)
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)


def test_a_reaped_grandchild_is_counted_in_its_parents_tree() -> None:
    proc = _spawn(wait=True, linger=False)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        seconds = tree_seconds(proc.pid)
        assert seconds is not None
        # The grandchild has exited: only the parent's cutime still holds its time.
        assert seconds >= BURN * 0.8
    finally:
        proc.kill()
        proc.wait()


def test_a_live_grandchild_is_counted_and_the_meter_sees_its_burn() -> None:
    meter_base = None
    proc = _spawn(wait=False, linger=True)
    try:
        meter_base = CpuMeter({"tree": proc.pid, "gone": None})
        deadline = time.monotonic() + 20
        seconds = 0.0
        while time.monotonic() < deadline:
            seconds = tree_seconds(proc.pid) or 0.0
            if seconds >= BURN * 0.8:
                break
            time.sleep(0.05)
        assert seconds >= BURN * 0.8
        read = meter_base.read()
        assert set(read["cpu_seconds"]) == {"tree"}  # a name without a pid is left out
        assert read["cpu_seconds"]["tree"] > 0
        assert read["cores"]["tree"] == pytest.approx(
            read["cpu_seconds"]["tree"] / read["wall_seconds"], abs=0.02
        )
    finally:
        proc.kill()
        proc.wait()


def test_a_process_that_is_gone_gives_none() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    assert tree_seconds(proc.pid) is None


def test_the_servers_are_found_from_a_connection(
    postgres: LocalPostgres, redis_server: LocalRedis
) -> None:
    postmaster = int((postgres.data_dir / "postmaster.pid").read_text().split()[0])
    with psycopg.connect(postgres.dsn) as conn:
        assert postgres_server_pid(conn) == postmaster
        busy = CpuMeter({"postgres": postmaster})
        conn.execute("SELECT count(*) FROM generate_series(1, 3000000)").fetchone()
        # The query ran in a backend: a child of the postmaster, counted in its tree.
        assert busy.read()["cpu_seconds"]["postgres"] > 0
    client = redis.Redis.from_url(redis_server.url)
    try:
        pid = redis_server_pid(client)
        assert pid is not None and tree_seconds(pid) is not None
        assert pid == int(client.info("server")["process_id"])
    finally:
        client.close()


def test_threads_are_summed_by_name_with_the_first_thread_as_main() -> None:
    # A second thread burns while the first sleeps: the burn is not the main thread's.
    code = (
        "import threading, time\n"
        "def burn():\n"
        "    while True: pass\n"
        "threading.Thread(target=burn, daemon=True).start()\n"
        "print('ready', flush=True); time.sleep(30)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        meter = CpuMeter({"p": proc.pid}, threads_of="p")
        deadline = time.monotonic() + 20
        spent: dict[str, float] = {}
        while time.monotonic() < deadline:
            spent = thread_seconds(proc.pid)
            if sum(s for name, s in spent.items() if name != "main") >= BURN:
                break
            time.sleep(0.05)
        others = sum(s for name, s in spent.items() if name != "main")
        assert others >= BURN
        assert spent["main"] < others / 2
        read = meter.read()
        assert read["threads"]["of"] == "p"
        busiest = next(iter(read["threads"]["cpu_seconds"]))
        assert busiest != "main"
    finally:
        proc.kill()
        proc.wait()
