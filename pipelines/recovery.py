"""What Bytewax recovery has made durable: the source position of the last complete epoch.

Bytewax writes each step's state snapshots and each worker's frontier into the recovery
partitions (SQLite files). An epoch below every worker's frontier has passed through the
whole dataflow, sinks included, so the source snapshot taken at that epoch is a position
whose events are all durable downstream. The embedded CDC reader advances its replication
slot only up to that position.

This reads the recovery store, which is Bytewax's own format (checked against 0.21); a
mismatch makes :meth:`RecoveryWatermark.__call__` return ``None`` (slot not advanced while
running, which is safe: it is still advanced on resume). Read it only from another
process than the dataflow's (see :class:`RecoveryWatermark`).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import pickle
import sqlite3
import time
from pathlib import Path
from typing import Any

from bytewax.recovery import init_db_dir

log = logging.getLogger(__name__)


def ensure_recovery_dir(path: Path, partitions: int = 1) -> Path:
    """Create the recovery partitions the first time; leave existing ones alone."""
    path.mkdir(parents=True, exist_ok=True)
    if not any(path.glob("part-*.sqlite3")):
        init_db_dir(path, partitions)
    return path


def committed_state(recovery_dir: Path, step_id: str, state_key: str) -> Any | None:
    """The newest snapshot of ``step_id``/``state_key`` from a fully completed epoch."""
    files = sorted(recovery_dir.glob("part-*.sqlite3"))
    if not files:
        return None
    frontiers: list[tuple[int, int]] = []
    snaps: list[tuple[int, bytes | None]] = []
    for file in files:
        conn = sqlite3.connect(f"file:{file}?mode=ro", uri=True, timeout=1.0)
        try:
            frontiers += conn.execute("SELECT ex_num, worker_frontier FROM fronts").fetchall()
            snaps += conn.execute(
                "SELECT snap_epoch, ser_change FROM snaps WHERE step_id = ? AND state_key = ?",
                (step_id, state_key),
            ).fetchall()
        finally:
            conn.close()
    if not frontiers:
        return None
    latest_ex = max(ex for ex, _ in frontiers)
    frontier = min(front for ex, front in frontiers if ex == latest_ex)
    done = [(epoch, blob) for epoch, blob in snaps if epoch < frontier]
    if not done:
        return None
    _, blob = max(done, key=lambda row: row[0])
    return None if blob is None else pickle.loads(blob)


def epochs_completed(recovery_dir: Path) -> bool:
    """Whether every worker has completed at least one epoch (the flow is running).

    Read from another process than the dataflow's (see :class:`RecoveryWatermark`).
    """
    frontiers: list[tuple[int, int]] = []
    for file in sorted(recovery_dir.glob("part-*.sqlite3")):
        conn = sqlite3.connect(f"file:{file}?mode=ro", uri=True, timeout=1.0)
        try:
            frontiers += conn.execute("SELECT ex_num, worker_frontier FROM fronts").fetchall()
        except sqlite3.Error:
            return False
        finally:
            conn.close()
    if not frontiers:
        return False
    latest_ex = max(ex for ex, _ in frontiers)
    return min(front for ex, front in frontiers if ex == latest_ex) > 1


def _follow_committed(
    recovery_dir: str,
    step_id: str,
    state_key: str,
    shared: Any,
    interval: float,
    parent: int,
) -> None:
    """Child process: keep ``shared`` at the committed source position: ``[lsn, part]``
    (``lsn`` -1 while unknown). The part is written first, and read after the LSN."""
    path = Path(recovery_dir)
    while os.getppid() == parent:
        try:
            state = committed_state(path, step_id, state_key)
            lsn = getattr(state, "lsn", None) if state is not None else None
            if isinstance(lsn, int):
                with shared.get_lock():
                    shared[1] = int(getattr(state, "partial", 0) or 0)
                    shared[0] = lsn
        except (sqlite3.Error, pickle.UnpicklingError, AttributeError) as exc:
            log.warning("cannot read recovery store %s: %s", path, exc)
        time.sleep(interval)


class RecoveryWatermark:
    """Callable giving the durable source position ``(lsn, part)`` (see
    :class:`connectors.pg_cdc.CdcState`), refreshed every ``interval`` seconds.

    The recovery files are read by a small child process, never by the pipeline process
    itself: Bytewax keeps them open with its own SQLite library, and a second SQLite in
    the same process that opens and closes the same files would drop Bytewax's POSIX
    locks (they are per process), after which SQLite may truncate the shared-memory file
    Bytewax has mapped. The child shares only one integer with the pipeline.
    """

    def __init__(
        self, recovery_dir: Path, step_id: str, state_key: str, *, interval: float = 1.0
    ) -> None:
        self.recovery_dir = recovery_dir
        self.step_id = step_id
        self.state_key = state_key
        self.interval = interval
        self._shared: Any = None
        self._child: Any = None

    def _start(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._shared = ctx.Array("q", [-1, 0])
        self._child = ctx.Process(
            target=_follow_committed,
            args=(
                str(self.recovery_dir),
                self.step_id,
                self.state_key,
                self._shared,
                self.interval,
                os.getpid(),
            ),
            name="recovery-watermark",
            daemon=True,
        )
        self._child.start()

    def __call__(self) -> tuple[int, int] | None:
        if self._child is None:
            self._start()
        with self._shared.get_lock():
            lsn, part = int(self._shared[0]), int(self._shared[1])
        return None if lsn < 0 else (lsn, part)

    def close(self) -> None:
        if self._child is not None and self._child.is_alive():
            self._child.terminate()
            self._child.join(timeout=5)
