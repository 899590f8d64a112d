"""``triage routing warm-start``: teach the router a history of handling times.

A history file is a CSV with one finished work item per row:

* ``agent_id`` (or ``agent``): the helpdesk agent id (an integer) who handled it;
* ``work_type`` (or ``type``): the work type, as the router knows it (the ticket
  category, the call type);
* ``handling_seconds``: the handling time, 0 or more;
* ``queue`` (optional when ``--queue`` is given): the queue (team) whose router learns it;
* ``completed_at`` (or ``arrival``, optional): when it was finished (default: now);
* ``wait_seconds`` and ``quality`` (0..1), optional.

The rows are added to the helpdesk database's ``work_outcomes`` table without a ticket id
(history, nothing to release) and ``origin = 'warm-start'``. The running pipeline learns
them through CDC like every other outcome, in order, and a replay learns them again: the
warm start is as durable as the log, and needs no access to the pipeline's state.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psycopg

_ALIASES = {
    "agent_id": ("agent_id", "agent"),
    "work_type": ("work_type", "type"),
    "handling_seconds": ("handling_seconds",),
    "queue": ("queue",),
    "completed_at": ("completed_at", "arrival"),
    "wait_seconds": ("wait_seconds",),
    "quality": ("quality",),
}
_REQUIRED = ("agent_id", "work_type", "handling_seconds")
_BATCH = 5_000


class OutcomesFileError(ValueError):
    """The history file is missing, lacks a column, or has a row that cannot be read."""


@dataclass(frozen=True)
class HistoryOutcome:
    """One row of a history file, validated."""

    agent_id: int
    queue: str
    work_type: str
    handling_seconds: float
    completed_at: datetime
    wait_seconds: float | None = None
    quality: float | None = None


def _columns(header: list[str], path: Path, default_queue: str | None) -> dict[str, str]:
    found: dict[str, str] = {}
    for name, aliases in _ALIASES.items():
        for alias in aliases:
            if alias in header:
                found[name] = alias
                break
    missing = [n for n in _REQUIRED if n not in found]
    if "queue" not in found and not default_queue:
        missing.append("queue (or --queue)")
    if missing:
        raise OutcomesFileError(
            f"{path} lacks column(s) {', '.join(missing)}; found {', '.join(header) or 'none'}"
        )
    return found


def _number(value: str, column: str, line: int, *, hi: float = math.inf) -> float:
    try:
        number = float(value)
    except ValueError:
        raise OutcomesFileError(f"line {line}: {column} {value!r} is not a number") from None
    if not (math.isfinite(number) and 0 <= number <= hi):
        raise OutcomesFileError(f"line {line}: {column} {value!r} must be within 0..{hi:g}")
    return number


def parse_history(
    rows: Iterable[dict[str, str | None]],
    columns: dict[str, str],
    *,
    default_queue: str | None = None,
    now: datetime | None = None,
    first_line: int = 2,
) -> Iterator[HistoryOutcome]:
    """Validate the rows of a history file (dicts by column) one by one.

    Example:
        >>> rows = [{"agent": "7", "type": "billing", "handling_seconds": "240"}]
        >>> cols = {"agent_id": "agent", "work_type": "type",
        ...         "handling_seconds": "handling_seconds"}
        >>> [o.agent_id for o in parse_history(rows, cols, default_queue="billing")]
        [7]
        >>> next(parse_history([{**rows[0], "agent": "Ann"}], cols, default_queue="billing"))
        Traceback (most recent call last):
        ...
        triage.jobs.warm_start.OutcomesFileError: line 2: agent_id 'Ann' is not a positive integer id
    """  # noqa: E501 (a doctest's exception line names the module and cannot be wrapped)
    stamp = now or datetime.now(UTC)
    for line, row in enumerate(rows, start=first_line):
        if None in row:
            raise OutcomesFileError(f"line {line}: more fields than columns in the header")

        def value(name: str, row: dict[str, str | None] = row) -> str:
            column = columns.get(name)
            return (row.get(column) or "").strip() if column else ""

        agent = value("agent_id")
        if not agent.isdigit() or int(agent) < 1:
            raise OutcomesFileError(f"line {line}: agent_id {agent!r} is not a positive integer id")
        work_type = value("work_type")
        if not work_type:
            raise OutcomesFileError(f"line {line}: work_type is empty")
        queue = value("queue") or default_queue or ""
        if not queue:
            raise OutcomesFileError(f"line {line}: queue is empty (give --queue for a default)")
        when = value("completed_at")
        completed_at = stamp
        if when:
            try:
                parsed = datetime.fromisoformat(when)
            except ValueError:
                raise OutcomesFileError(
                    f"line {line}: completed_at {when!r} is not an ISO-8601 timestamp"
                ) from None
            completed_at = parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
        wait, quality = value("wait_seconds"), value("quality")
        yield HistoryOutcome(
            agent_id=int(agent),
            queue=queue,
            work_type=work_type,
            handling_seconds=_number(value("handling_seconds"), "handling_seconds", line),
            completed_at=completed_at,
            wait_seconds=_number(wait, "wait_seconds", line) if wait else None,
            quality=_number(quality, "quality", line, hi=1.0) if quality else None,
        )


def read_history(path: Path, *, default_queue: str | None = None) -> list[HistoryOutcome]:
    """Read and validate a whole history file (nothing is written when a row is bad)."""
    if not path.is_file():
        raise OutcomesFileError(f"outcomes file not found: {path}")
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        header = [h.strip() for h in reader.fieldnames or []]
        columns = _columns(header, path, default_queue)
        reader.fieldnames = header
        outcomes = list(parse_history(reader, columns, default_queue=default_queue))
    if not outcomes:
        raise OutcomesFileError(f"{path} has a header but no rows")
    return outcomes


def write_history(
    dsn: str,
    outcomes: list[HistoryOutcome],
    *,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Add the outcomes to ``work_outcomes`` (one transaction, COPY); returns the count."""
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        with cur.copy(
            "COPY work_outcomes (agent_id, queue, work_type, handling_seconds, wait_seconds,"
            " quality, completed_at, origin) FROM STDIN"
        ) as copy:
            for i, o in enumerate(outcomes, start=1):
                copy.write_row(
                    (
                        o.agent_id,
                        o.queue,
                        o.work_type,
                        o.handling_seconds,
                        o.wait_seconds,
                        o.quality,
                        o.completed_at,
                        "warm-start",
                    )
                )
                if progress is not None and i % _BATCH == 0:
                    progress(_BATCH)
        if progress is not None and len(outcomes) % _BATCH:
            progress(len(outcomes) % _BATCH)
    return len(outcomes)
