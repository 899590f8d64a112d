"""Memory of a long run: the pipeline's resident set after N tickets (``triage bench --memory``).

A helpdesk-shaped life cycle, so that what the pipeline must keep (open tickets, their SLA
clocks, agents' loads) stays the size of a real backlog while history grows: tickets are
inserted in chunks and each chunk is closed two chunks later. Everything else the pipeline
holds in memory (duplicate and KB indexes, text models, windows, queues) must then stay
bounded, which is what the growth between the checkpoints shows.

Linux only (the resident set is read from ``/proc``).
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import psycopg
import redis
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from triage.runtime import PipelineProcess, migrate, open_stack
from triage.services import free_port
from triage.settings import AppSettings
from triage.tools.bench import (
    _insert_bulk,
    _metric_lines,
    _pipeline_env,
    _seed,
    _ticket_rows,
    _wait_decided,
    _warm_up,
)

CHUNK = 5_000
"""Tickets per insert; the chunk inserted two chunks earlier is closed after each insert."""


def _rss_kib(pid: int) -> int:
    """Resident set of one process in KiB (0 once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def _descendants(pid: int) -> list[int]:
    found: list[int] = []
    todo = [pid]
    while todo:
        current = todo.pop()
        for task in Path(f"/proc/{current}/task").glob("*/children"):
            try:
                children = [int(c) for c in task.read_text().split()]
            except (FileNotFoundError, ProcessLookupError):
                continue
            found.extend(children)
            todo.extend(children)
    return found


def process_tree_rss_mib(pid: int) -> tuple[float, float]:
    """(the process's own resident set, with its descendants) in MiB."""
    own = _rss_kib(pid)
    tree = own + sum(_rss_kib(child) for child in _descendants(pid))
    return round(own / 1024, 1), round(tree / 1024, 1)


_HELD = re.compile(r'^triage_state_(keys|bytes)\{state="([^"]+)"\} (\S+)$')
_MEMORY = re.compile(r'^triage_process_(python_blocks|malloc_bytes)(?:\{part="([^"]+)"\})? (\S+)$')


def held_state(lines: Iterable[str]) -> dict[str, Any]:
    """What a pipeline's ``/metrics`` says it holds: per kind of state the keys and the MiB
    of their latest snapshots (largest first), and its allocators' figures.

    Example:
        >>> held_state([
        ...     'triage_state_keys{state="TicketText"} 1500.0',
        ...     'triage_state_bytes{state="TicketText"} 1048576.0',
        ...     'triage_process_python_blocks 250000.0',
        ...     'triage_process_malloc_bytes{part="free"} 2097152.0',
        ... ])
        {'state': {'TicketText': {'keys': 1500, 'mib': 1.0}}, \
'allocator': {'python_blocks': 250000, 'malloc_free_mib': 2.0}}
    """
    state: dict[str, dict[str, float]] = {}
    allocator: dict[str, float] = {}
    for line in lines:
        if m := _HELD.match(line):
            row = state.setdefault(m.group(2), {"keys": 0, "mib": 0.0})
            if m.group(1) == "keys":
                row["keys"] = int(float(m.group(3)))
            else:
                row["mib"] = round(float(m.group(3)) / 2**20, 1)
        elif m := _MEMORY.match(line):
            if m.group(1) == "python_blocks":
                allocator["python_blocks"] = int(float(m.group(3)))
            else:
                allocator[f"malloc_{m.group(2)}_mib"] = round(float(m.group(3)) / 2**20, 1)
    ranked = dict(sorted(state.items(), key=lambda kv: -kv[1]["mib"]))
    return {"state": ranked, "allocator": allocator}


def run_memory_bench(
    settings: AppSettings, *, checkpoints: list[int], console: Console
) -> dict[str, Any]:
    """Run tickets through one pipeline process up to the last checkpoint; returns the
    resident set at each checkpoint and the growth from the first checkpoint to the last."""
    checkpoints = sorted(set(checkpoints))
    total = checkpoints[-1]
    state_dir = settings.state_dir / "bench-memory"
    if state_dir.exists():
        shutil.rmtree(state_dir)
    rows: list[dict[str, Any]] = []
    with open_stack(settings, state_dir / "services") as stack:
        migrate(stack)
        _seed(stack.source_dsn)
        client = redis.Redis.from_url(stack.redis_url)
        metrics_port = free_port()
        pipeline = PipelineProcess(
            stack, state_dir / "pipeline", extra_env=_pipeline_env(1, metrics_port)
        )
        pipeline.start()
        try:
            pipeline.wait_ready(settings.source.slot_name, flow_id=settings.pipeline.flow_id)
            with psycopg.connect(stack.source_dsn, autocommit=True) as conn:
                customers = _warm_up(conn, client, settings.redis.key_prefix, pipeline, timeout=120)
                assert pipeline.proc is not None
                pid = pipeline.proc.pid
                own, tree = process_tree_rss_mib(pid)
                rows.append({"tickets": 0, "rss_mib": own, "rss_with_children_mib": tree})
                chunks: list[list[int]] = []
                done = 0
                started = time.perf_counter()
                with Progress(
                    TextColumn("memory run"),
                    BarColumn(),
                    MofNCompleteColumn(),
                    TimeElapsedColumn(),
                    console=console,
                    transient=True,
                ) as bar:
                    task = bar.add_task("tickets", total=total)
                    while done < total:
                        n = min(CHUNK, total - done)
                        fresh = _ticket_rows(n, customers, start=20_000_000 + done)
                        ids = _insert_bulk(conn, fresh)
                        chunks.append(ids)
                        if len(chunks) > 2:
                            old = chunks.pop(0)
                            conn.execute(
                                "UPDATE tickets SET status = 'closed' WHERE id = ANY(%s)", (old,)
                            )
                        routed = _wait_decided(stack.analytics_dsn, ids, pipeline, timeout=900)
                        if routed < len(ids):
                            raise RuntimeError(
                                f"pipeline stalled after {done + routed} tickets:\n"
                                f"{pipeline.log_tail()}"
                            )
                        done += n
                        bar.update(task, completed=done)
                        if any(done >= c > done - n for c in checkpoints):
                            # The state gauges are as of each key's last snapshot: read
                            # them a few epochs after the chunk was decided.
                            time.sleep(3 * settings.pipeline.epoch_interval.total_seconds())
                            own, tree = process_tree_rss_mib(pid)
                            row = {
                                "tickets": done,
                                "rss_mib": own,
                                "rss_with_children_mib": tree,
                                "elapsed_s": round(time.perf_counter() - started, 1),
                                **held_state(_metric_lines([metrics_port])),
                            }
                            rows.append(row)
                            # A long run shows each checkpoint as it is reached (stderr; the
                            # JSON on stdout comes at the end).
                            bar.console.print(f"checkpoint {row}")
        finally:
            pipeline.stop()
    measured = [r for r in rows if r["tickets"] > 0]
    result: dict[str, Any] = {"chunk": CHUNK, "checkpoints": rows}
    if len(measured) >= 2:
        first, last = measured[0], measured[-1]
        result["growth_pct"] = round(100 * (last["rss_mib"] / first["rss_mib"] - 1), 1)
        result["growth_between"] = [first["tickets"], last["tickets"]]
    return result
