"""Where a running pipeline's CPU goes, by stage of the flow.

``triage profile`` records the running ``triage pipeline`` processes with ``py-spy`` (a
sampling profiler that attaches from outside; a dev dependency) and sorts every sample into
the stage of the flow it was taken in: the innermost frame, from the sampled function
outwards, that belongs to a known step (:data:`STAGES`) names it. Samples in the flow's own
code outside those steps (wrappers, keys, branches) are ``other flow code``; samples with
no frame of the project's code under Bytewax's run loop are ``Bytewax runtime`` (its Rust
code, item exchange and snapshot writing, and its Python operator shims). Idle threads are
not sampled (``py-spy`` leaves them out); the metrics server's thread, which ``py-spy``
counts as busy while it waits in ``select``, is left out too.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from triage.tools.cpu import parent_pid

STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("read CDC", ("next_batch (connectors/", "KafkaSource", "_KafkaSourcePartition")),
    ("decode", ("decode (pipelines/flow.py",)),
    ("order per ticket", ("owner_step (pipelines/flow.py",)),
    ("enrich", ("enrich_step (pipelines/flow.py",)),
    ("duplicates", ("duplicates_step (pipelines/flow.py",)),
    ("classify", ("classify_step (pipelines/flow.py",)),
    ("learn", ("_LearnLogic.",)),
    ("route (queues, SLA clocks)", ("queue_step (pipelines/flow.py",)),
    ("live metrics", ("live_metrics_step (pipelines/flow.py",)),
    ("write analytics", ("write_batch (sinks/postgres.py", "write_batch (sinks/timescale.py")),
    ("write Redis", ("write_batch (sinks/redis.py",)),
    ("write search", ("write_batch (sinks/search_pg.py", "write_batch (sinks/search_es.py")),
    ("write warehouse", ("write_batch (sinks/warehouse.py",)),
    ("write Kafka (alerts, dead letters)", ("write_batch (sinks/kafka_alerts.py",)),
    (
        "recovery snapshots",
        ("snapshot (pipelines/state.py", "_StatefulLogic.snapshot", "_JournalLogic._record"),
    ),
)
"""Stage name and the frame texts (``function (file:line)`` as ``py-spy`` writes them,
matched as substrings) that mark it; the innermost match names a sample's stage."""

OTHER_FLOW = "other flow code"
RUNTIME = "Bytewax runtime"
_OURS = ("(pipelines/", "(models/", "(sinks/", "(connectors/")
_IDLE = ("serve_forever",)
_LINE = re.compile(r":\d+\)$")


@dataclass
class StageProfile:
    """Samples per stage and per function (self time) of one or more recordings."""

    samples: int = 0
    stages: Counter[str] = field(default_factory=Counter)
    functions: Counter[str] = field(default_factory=Counter)

    def add(self, frames: Sequence[str], count: int) -> None:
        """One stack (outermost frame first) seen ``count`` times."""
        if any(idle in frame for frame in frames for idle in _IDLE):
            return
        self.samples += count
        self.stages[stage_of(frames)] += count
        if frames:
            self.functions[_LINE.sub(")", frames[-1])] += count

    def report(self, top: int = 15) -> dict[str, Any]:
        """Shares of the samples in percent: per stage (largest first; they sum to 100)
        and the ``top`` functions by self time."""
        total = max(self.samples, 1)
        return {
            "samples": self.samples,
            "stages_percent": {
                name: round(100 * n / total, 1) for name, n in self.stages.most_common()
            },
            "top_functions_percent": {
                name: round(100 * n / total, 1) for name, n in self.functions.most_common(top)
            },
        }


def stage_of(frames: Sequence[str]) -> str:
    """The stage of one sampled stack, outermost frame first.

    Example:
        >>> stage_of(["run (runtime.py:1)", "enrich_step (pipelines/flow.py:9)",
        ...           "detect (models/language.py:3)"])
        'enrich'
        >>> stage_of(["run (runtime.py:1)", "key (pipelines/flow.py:5)"])
        'other flow code'
        >>> stage_of(["run (runtime.py:1)"])
        'Bytewax runtime'
    """
    for frame in reversed(frames):
        for name, marks in STAGES:
            if any(mark in frame for mark in marks):
                return name
    if any(mark in frame for frame in frames for mark in _OURS):
        return OTHER_FLOW
    return RUNTIME


def parse_raw(lines: Iterable[str]) -> Iterable[tuple[list[str], int]]:
    """Stacks and counts of ``py-spy record --format raw`` (folded stacks: frames joined
    by ``;``, a space, the count)."""
    for line in lines:
        stack, _, count = line.rstrip("\n").rpartition(" ")
        if not stack or not count.isdigit():
            continue
        yield stack.split(";"), int(count)


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _is_pipeline(argv: Sequence[str]) -> bool:
    for i, arg in enumerate(argv[:-1]):
        if arg == "pipeline" and i > 0 and Path(argv[i - 1]).name == "triage":
            return True
        if arg == "triage" and argv[i + 1] == "pipeline":
            return True
    return False


def pipeline_pids() -> list[int]:
    """The processes that run the flow: every ``triage pipeline`` process except a local
    cluster's supervisor (a ``triage pipeline`` whose children are ``triage pipeline``)."""
    found: dict[int, int | None] = {}
    try:
        entries = list(Path("/proc").iterdir())
    except OSError:
        return []
    for entry in entries:
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        if _is_pipeline(_cmdline(int(entry.name))):
            found[int(entry.name)] = parent_pid(int(entry.name))
    parents = set(found.values())
    return sorted(pid for pid in found if pid not in parents)


class ProfileError(RuntimeError):
    """Profiling could not start or failed: the message says why."""


def py_spy() -> str:
    """The ``py-spy`` executable beside this interpreter, else on ``PATH``."""
    beside = Path(sys.executable).with_name("py-spy")
    found = str(beside) if beside.exists() else shutil.which("py-spy")
    if found is None:
        raise ProfileError(
            "py-spy not found; it is a dev dependency (`uv sync` installs it into .venv)"
        )
    return found


def record(pids: Sequence[int], *, seconds: int, rate: int) -> StageProfile:
    """Sample ``pids`` together for ``seconds`` (whole seconds, as ``py-spy`` takes them) at
    ``rate`` samples/s each."""
    exe = py_spy()
    profile = StageProfile()
    with tempfile.TemporaryDirectory(prefix="triage-profile-") as tmp:
        runs = []
        for pid in pids:
            out = Path(tmp) / f"{pid}.raw"
            cmd = [exe, "record", "--nonblocking", "-r", str(rate), "-d", str(seconds)]
            cmd += ["-f", "raw", "-o", str(out), "-p", str(pid)]
            runs.append(
                (pid, out, subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
            )
        for pid, out, proc in runs:
            log, _ = proc.communicate(timeout=seconds + 60)
            if proc.returncode != 0 or not out.exists():
                lines = log.decode(errors="replace").strip().splitlines()
                said = [line for line in lines if "rror" in line][:2] or lines[-3:]
                raise ProfileError(
                    f"py-spy could not record process {pid} (exit {proc.returncode}): "
                    + " / ".join(said)
                    + " (attaching needs the same user as the pipeline, or root, and "
                    "ptrace allowed: kernel.yama.ptrace_scope)"
                )
            with out.open() as stacks:
                for frames, count in parse_raw(stacks):
                    profile.add(frames, count)
    return profile
