"""Current-state Delta Lake tables over the warehouse's Parquet change log.

The pipeline appends every change to the Parquet change log (:mod:`sinks.warehouse`), so a
ticket changed ten times has ten rows there, and a replay adds copies. BI tools should not
have to deduplicate: :func:`publish_current` merges the rows written since its last run
into one Delta Lake table per warehouse table, under ``<root>/current/<table>``:

* ``ticket_facts``: one row per ticket, replaced only by a strictly newer ``version``
  (the source LSN), so a replayed or late older copy never wins;
* ``routing_decisions``, ``sla_events``, ``model_metrics``: one row per key (see
  :data:`sinks.warehouse.TABLES`), inserted if absent, so a replay adds nothing.

Each run is one atomic Delta commit per table (readers see all of it or none), partitioned
by the same UTC ``date`` as the change log. Delta keeps every earlier version of the table
for time travel (``DeltaTable(path, version=n)``, DuckDB ``delta_scan``) until
:func:`optimize_current` vacuums versions older than the retention it is given. New
columns in the change log are added to the table (schema evolution, ``merge_schema``).

What was merged is remembered in the table's commit metadata (``triage.written_through``:
the newest ``written_at`` merged). A run reads only change-log files modified since then,
minus :data:`OVERLAP`, and merges their rows again if they were already merged, which
changes nothing: the merge is idempotent, so a crash between the file write and the commit,
or a file renamed into place late, is picked up by the next run.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import polars as pl
from deltalake import CommitProperties, DeltaTable, write_deltalake
from deltalake.exceptions import CommitFailedError, TableNotFoundError

from sinks.warehouse import PARTITION_COLUMN, TABLES, TICKET_FACTS, latest_per_key

log = logging.getLogger(__name__)

CURRENT_DIR = "current"
"""Directory under the warehouse root holding the Delta tables."""

WATERMARK_KEY = "triage.written_through"
"""Commit metadata key: the newest ``written_at`` merged (ISO-8601 UTC)."""

OVERLAP = timedelta(minutes=10)
"""Change-log files modified this long before the watermark are read again."""

VERSION_COLUMN = {TICKET_FACTS: "version"}
"""Tables whose rows are replaced by a newer version; the others are insert-if-absent."""


@dataclass(frozen=True)
class PublishResult:
    """What one :func:`publish_current` run did to one table.

    Attributes:
        table: The warehouse table.
        files_read: Change-log files read (modified since the watermark, with overlap).
        rows_read: Rows in them that were written after the watermark minus the overlap.
        rows_inserted: Keys new to the current table.
        rows_updated: Keys replaced by a newer version.
        delta_version: The table's Delta version after the run (``None``: no table yet).
    """

    table: str
    files_read: int
    rows_read: int
    rows_inserted: int
    rows_updated: int
    delta_version: int | None


def current_path(root: Path | str, table: str) -> Path:
    """``<root>/current/<table>``: where the Delta table of ``table`` lives."""
    return Path(root) / CURRENT_DIR / table


def _open(path: Path) -> DeltaTable | None:
    try:
        return DeltaTable(str(path))
    except TableNotFoundError:
        return None


def watermark(table: DeltaTable | None) -> datetime | None:
    """The newest ``written_at`` merged into ``table`` so far (``None``: nothing yet)."""
    if table is None:
        return None
    for commit in table.history():
        value = commit.get(WATERMARK_KEY)
        if value:
            return datetime.fromisoformat(str(value))
    return None


def _changes(root: Path, table: str, since: datetime | None) -> tuple[int, pl.DataFrame]:
    """Rows of the change log written after ``since`` minus :data:`OVERLAP`, with ``date``."""
    spec = TABLES[table]
    files = sorted((root / table).glob(f"{PARTITION_COLUMN}=*/part-*.parquet"))
    if since is not None:
        cutoff = (since - OVERLAP).timestamp()
        files = [f for f in files if f.stat().st_mtime >= cutoff]
    if not files:
        return 0, pl.DataFrame()
    frame = pl.scan_parquet(
        [str(f) for f in files],
        schema=dict(spec.schema),
        hive_partitioning=True,
        hive_schema={PARTITION_COLUMN: pl.Date()},
    )
    if since is not None:
        frame = frame.filter(pl.col("written_at") > since - OVERLAP)
    return len(files), frame.collect()


def _merge_predicate(table: str) -> str:
    keys = [*TABLES[table].key, PARTITION_COLUMN]
    return " AND ".join(f"t.{k} = s.{k}" for k in keys)


def _commit(mark: datetime) -> CommitProperties:
    return CommitProperties(custom_metadata={WATERMARK_KEY: mark.isoformat()})


def publish_table(root: Path | str, table: str, *, retries: int = 5) -> PublishResult:
    """Merge the change-log rows of ``table`` written since the last run (see the module
    docstring) into its current-state Delta table; one commit, retried on a conflict."""
    root = Path(root)
    path = current_path(root, table)
    for attempt in range(retries + 1):
        current = _open(path)
        files, changes = _changes(root, table, watermark(current))
        if changes.is_empty():
            version = current.version() if current is not None else None
            return PublishResult(table, files, 0, 0, 0, version)
        rows = latest_per_key(changes, table)
        mark = changes["written_at"].max()
        assert isinstance(mark, datetime)
        data = rows.to_arrow()
        try:
            if current is None:
                path.parent.mkdir(parents=True, exist_ok=True)
                write_deltalake(
                    str(path),
                    data,
                    mode="append",
                    partition_by=[PARTITION_COLUMN],
                    commit_properties=_commit(mark),
                )
                return PublishResult(table, files, changes.height, rows.height, 0, 0)
            merge = current.merge(
                data,
                predicate=_merge_predicate(table),
                source_alias="s",
                target_alias="t",
                merge_schema=True,
                commit_properties=_commit(mark),
            )
            newer = VERSION_COLUMN.get(table)
            if newer is not None:
                merge = merge.when_matched_update_all(predicate=f"s.{newer} > t.{newer}")
            metrics = merge.when_not_matched_insert_all().execute()
        except CommitFailedError:
            # Another writer committed first (a second publisher, an optimize): read again.
            if attempt == retries:
                raise
            time.sleep(0.2 * (attempt + 1))
            continue
        return PublishResult(
            table,
            files,
            changes.height,
            int(metrics.get("num_target_rows_inserted", 0)),
            int(metrics.get("num_target_rows_updated", 0)),
            current.version(),
        )
    raise AssertionError("unreachable")


def publish_current(root: Path | str) -> list[PublishResult]:
    """Publish every warehouse table's current state (see the module docstring)."""
    return [publish_table(root, table) for table in TABLES]


def optimize_current(root: Path | str, *, keep: timedelta = timedelta(days=7)) -> list[str]:
    """Compact each current table's small files and vacuum files that no version younger
    than ``keep`` needs (time travel reaches back ``keep``). Returns a line per table."""
    lines: list[str] = []
    for table in TABLES:
        current = _open(current_path(root, table))
        if current is None:
            continue
        stats = current.optimize.compact()
        removed = current.vacuum(
            retention_hours=max(0, int(keep.total_seconds() // 3600)),
            enforce_retention_duration=False,
            dry_run=False,
        )
        lines.append(
            f"{table}: {stats.get('numFilesRemoved', 0)} files compacted into "
            f"{stats.get('numFilesAdded', 0)}, {len(removed)} old files vacuumed"
        )
    return lines
