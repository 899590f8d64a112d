"""CPU time spent by the processes a benchmark depends on, read from ``/proc`` (Linux).

Events per second alone do not say what holds a run: whether the pipeline's process was
busy the whole time, or waited on PostgreSQL, or the machine had no core left. A
:class:`CpuMeter` reads the CPU seconds of named process trees at the start and the end
of a run; their ratio to the wall time is the cores each kept busy.

A process tree's seconds are the user and system time of the root and of every live
descendant, plus the time of descendants the root has already reaped (``cutime`` and
``cstime``): PostgreSQL's short-lived backends and a cluster's worker processes are
counted even after they exit. Processes on another host, or a system without ``/proc``,
give ``None``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

_PROC = Path("/proc")
_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _fields(raw: str) -> list[str]:
    """The fields of a ``stat`` file after the command name (``state`` first)."""
    # The command name is in parentheses and may itself hold spaces or parentheses.
    return raw[raw.rindex(")") + 2 :].split()


def _stat(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name, or ``None``."""
    try:
        return _fields((_PROC / str(pid) / "stat").read_text())
    except (OSError, ValueError):
        return None


def parent_pid(pid: int) -> int | None:
    """The parent of live process ``pid`` on this host, else ``None``."""
    fields = _stat(pid)
    return int(fields[1]) if fields is not None else None


def _children() -> dict[int, list[int]]:
    """Every live process's children, by parent pid (none without ``/proc``)."""
    tree: dict[int, list[int]] = {}
    try:
        entries = list(_PROC.iterdir())
    except OSError:
        return tree
    for entry in entries:
        if not entry.name.isdigit():
            continue
        parent = parent_pid(int(entry.name))
        if parent is not None:
            tree.setdefault(parent, []).append(int(entry.name))
    return tree


def _descendants(pid: int, children: Mapping[int, list[int]]) -> list[int]:
    """``pid`` and its live descendants."""
    out: list[int] = []
    seen: set[int] = set()
    stack = [pid]
    while stack:
        proc = stack.pop()
        if proc in seen:
            continue
        seen.add(proc)
        out.append(proc)
        stack.extend(children.get(proc, []))
    return out


def tree_seconds(pid: int, children: Mapping[int, list[int]] | None = None) -> float | None:
    """CPU seconds of ``pid`` and its descendants, live and reaped; ``None`` when
    ``pid`` is not a live process of this host."""
    root = _stat(pid)
    if root is None:
        return None
    tree = _children() if children is None else children
    # Fields (1-based in proc(5), counted here from ``state``): utime 14, stime 15,
    # cutime 16, cstime 17 are indices 11 to 14. Reaped children are in the root's
    # cutime/cstime; a descendant that exits meanwhile is in its parent's once reaped.
    ticks = sum(int(v) for v in root[11:15])
    for proc in _descendants(pid, tree)[1:]:
        fields = _stat(proc)
        if fields is not None:
            ticks += int(fields[11]) + int(fields[12])
    return ticks / _TICK


def thread_seconds(pid: int, children: Mapping[int, list[int]] | None = None) -> dict[str, float]:
    """CPU seconds of the live threads of ``pid`` and its descendants, summed by thread
    name: ``main`` for each process's first thread, else the name the thread set
    (Bytewax's workers are ``timely:work-<n>``; Python threads keep the program's name)."""
    tree = _children() if children is None else children
    by_name: dict[str, float] = {}
    for proc in _descendants(pid, tree):
        try:
            tasks = list((_PROC / str(proc) / "task").iterdir())
        except OSError:
            continue
        for task in tasks:
            try:
                name = (task / "comm").read_text().strip()
                raw = (task / "stat").read_text()
            except OSError:
                continue
            fields = _fields(raw)
            seconds = (int(fields[11]) + int(fields[12])) / _TICK
            if task.name == str(proc):
                name = "main"  # the process's first thread
            by_name[name] = by_name.get(name, 0.0) + seconds
    return by_name


def postgres_server_pid(conn: Any) -> int | None:
    """The pid of the PostgreSQL server (postmaster) behind ``conn`` when it runs on this
    host, else ``None``: a backend's parent is the postmaster."""
    row = conn.execute("SELECT pg_backend_pid()").fetchone()
    return parent_pid(int(row[0])) if row else None


def redis_server_pid(client: Any) -> int | None:
    """The pid of the Redis server behind ``client`` when it runs on this host."""
    pid = client.info("server").get("process_id")
    return int(pid) if pid is not None and _stat(int(pid)) is not None else None


class CpuMeter:
    """CPU seconds and busy cores of named process trees over one run.

    Example:
        >>> meter = CpuMeter({"bench": os.getpid()})
        >>> _ = sum(range(100_000))
        >>> sorted(meter.read()["cpu_seconds"])
        ['bench']
    """

    def __init__(self, pids: Mapping[str, int | None], *, threads_of: str | None = None) -> None:
        """``threads_of``: also read that tree's CPU per thread name (``threads``)."""
        self.pids = {name: pid for name, pid in pids.items() if pid is not None}
        self.threads_of = threads_of if threads_of in self.pids else None
        self.started = time.perf_counter()
        self.base = self._now()
        self.base_threads = self._threads()

    def _threads(self) -> dict[str, float]:
        return thread_seconds(self.pids[self.threads_of]) if self.threads_of else {}

    def _now(self) -> dict[str, float | None]:
        tree = _children()
        return {name: tree_seconds(pid, tree) for name, pid in self.pids.items()}

    def read(self) -> dict[str, Any]:
        """``cpu_seconds`` per name since the meter started, and ``cores`` (CPU seconds
        per wall second); a tree that was gone at either end is left out."""
        wall = time.perf_counter() - self.started
        now = self._now()
        cpu: dict[str, float] = {}
        for name, end in now.items():
            start = self.base.get(name)
            if start is not None and end is not None:
                cpu[name] = round(end - start, 2)
        out: dict[str, Any] = {
            "wall_seconds": round(wall, 2),
            "cpu_seconds": cpu,
            "cores": {name: round(s / wall, 2) for name, s in cpu.items()} if wall > 0 else {},
            "machine_cores": os.cpu_count(),
        }
        if self.threads_of:
            # Threads born during the run count from zero; busiest first.
            now_threads = self._threads()
            spent = {
                name: round(s - self.base_threads.get(name, 0.0), 2)
                for name, s in now_threads.items()
            }
            out["threads"] = {
                "of": self.threads_of,
                "cpu_seconds": dict(sorted(spent.items(), key=lambda kv: -kv[1])[:8]),
            }
        return out
