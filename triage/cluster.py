"""A local Bytewax cluster: ``triage pipeline --processes P`` on one host.

Worker threads of one process share the GIL, so parallel Python needs processes. This
starts P processes of ``triage pipeline`` that join one Bytewax cluster over loopback
(process id and the address list, as Bytewax's own ``-i``/``-a`` options), and supervises
them: a signal is passed on to every process; when one process ends, the others are
stopped too, because a Bytewax cluster cannot go on without one of its processes (a
restart resumes all of them from the last complete epoch).

The batch jobs run in this supervisor, not in the processes, so they run once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

from triage.runtime import Stack
from triage.settings import AppSettings

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct ports free on ``host`` right now."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _die_with_parent() -> None:
    # Linux: a process of the cluster gets SIGTERM when its supervisor dies, even by
    # SIGKILL, so a crash never leaves half a cluster running.
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def cluster_env(
    settings: AppSettings, stack: Stack, process_id: int, addresses: list[str]
) -> dict[str, str]:
    """Environment of process ``process_id``: same stores, its place in the cluster."""
    import json

    env = {**os.environ, **stack.env()}
    env.update(
        {
            "TRIAGE_STATE_DIR": str(settings.state_dir),
            "TRIAGE_CLUSTER__PROCESS_ID": str(process_id),
            "TRIAGE_CLUSTER__ADDRESSES": json.dumps(addresses),
            "TRIAGE_CLUSTER__PROCESSES": "1",
            "TRIAGE_CLUSTER__RECOVERY_DIR": str(settings.recovery_dir),
            "TRIAGE_JOBS__ENABLED": "false",
        }
    )
    env.setdefault("PYTHONFAULTHANDLER", "1")
    return env


def run_local_cluster(settings: AppSettings, stack: Stack, *, log_dir: Path) -> int:
    """Run ``settings.cluster.processes`` pipeline processes until a signal or an exit.

    Returns the exit code: 0 after a signal, else the first failing process's code.
    """
    from pipelines.recovery import ensure_recovery_dir
    from triage.jobs.scheduler import JobScheduler

    count = settings.cluster.processes
    # Partitions are created once, before any process opens them.
    ensure_recovery_dir(settings.recovery_dir, count * settings.cluster.workers_per_process)
    addresses = [f"127.0.0.1:{port}" for port in free_ports(count)]
    log_dir.mkdir(parents=True, exist_ok=True)
    procs: list[subprocess.Popen[bytes]] = []
    stopping = False

    def forward(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    jobs: JobScheduler | None = None
    try:
        for i in range(count):
            with open(log_dir / f"process-{i}.log", "ab") as out:
                procs.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "triage", "pipeline", "--no-migrate"],
                        env=cluster_env(settings, stack, i, addresses),
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        preexec_fn=_die_with_parent,
                    )
                )
        log.info("local cluster of %d processes on %s", count, ", ".join(addresses))
        # Threads only after the processes are forked (preexec_fn runs in the fork).
        if settings.jobs.enabled:
            jobs = JobScheduler.from_settings(settings, stack).start()
        code = 0
        while True:
            codes = [p.poll() for p in procs]
            if all(c is not None for c in codes):
                break
            ended = [c for c in codes if c is not None]
            if ended and not stopping:
                code = next((c for c in ended if c != 0), 0) or 1
                log.error("a pipeline process exited (%s); stopping the cluster", ended)
                forward(signal.SIGTERM, None)
            time.sleep(0.2)
        if not stopping:
            code = next((c for c in codes if c), 0) or code
        return code
    finally:
        deadline = time.monotonic() + 20
        for p in procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if jobs is not None:
            jobs.stop()
        for s, handler in previous.items():
            signal.signal(s, handler)
