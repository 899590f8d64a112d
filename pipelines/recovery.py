"""What Bytewax recovery has made durable: the source position of the last complete epoch.

Bytewax writes each step's state snapshots and each worker's frontier into the recovery
partitions (SQLite files). An epoch below every worker's frontier has passed through the
whole dataflow, sinks included, so the source snapshot taken at that epoch is a position
whose events are all durable downstream. The embedded CDC reader advances its replication
slot only up to that position.

This reads the recovery store, which is Bytewax's own format (checked against 0.21); a
mismatch makes :meth:`RecoveryWatermark.__call__` return ``None`` (slot not advanced while
running, which is safe: it is still advanced on resume).
"""

from __future__ import annotations

import logging
import pickle
import sqlite3
import time
from collections.abc import Callable
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


class RecoveryWatermark:
    """Callable giving the durable source position, read at most every ``min_interval`` s."""

    def __init__(
        self,
        recovery_dir: Path,
        step_id: str,
        state_key: str,
        extract: Callable[[Any], int | None] = lambda state: getattr(state, "lsn", None),
        *,
        min_interval: float = 1.0,
    ) -> None:
        self.recovery_dir = recovery_dir
        self.step_id = step_id
        self.state_key = state_key
        self.extract = extract
        self.min_interval = min_interval
        self._last_read = 0.0
        self._value: int | None = None

    def __call__(self) -> int | None:
        now = time.monotonic()
        if now - self._last_read >= self.min_interval:
            self._last_read = now
            try:
                state = committed_state(self.recovery_dir, self.step_id, self.state_key)
                if state is not None:
                    self._value = self.extract(state)
            except (sqlite3.Error, pickle.UnpicklingError, AttributeError) as exc:
                log.warning("cannot read recovery store %s: %s", self.recovery_dir, exc)
        return self._value
