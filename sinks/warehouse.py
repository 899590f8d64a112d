"""Warehouse sink: ticket facts, routing decisions, SLA events and model metrics as Parquet.

Files are laid out for BI engines (DuckDB, Spark, Trino, polars) as hive partitions by UTC
day, one immutable file per batch, table and day::

    <root>/<table>/date=YYYY-MM-DD/part-<worker>-<uuid>.parquet

``date`` lives in the directory name only; engines read it back with hive partitioning,
e.g. ``read_parquet('<root>/ticket_facts/*/*.parquet', hive_partitioning = true)`` in DuckDB.
Files are written under a temporary name (``.*.tmp``, matched by no ``*.parquet`` glob) and
renamed once complete, so readers never see a partial file.

Tables, their key, the column ordering versions of a key, and the partition day:

* ``ticket_facts`` — one row per ticket change; key ``ticket_id``, newest ``version`` wins;
  day of ``created_at``. Columns: ticket_id, version (source LSN), op, customer_id,
  customer_tier, organization, region, channel, status, priority, priority_reasons
  (list[str]), category, category_source, intent, intent_source, queue, language,
  language_confidence, sentiment, sentiment_label, assigned_agent_id, subject,
  description (PII masked), created_at, updated_at, first_reply_at, solved_at, csat,
  first_reply_due, resolution_due, sla_policy, sla_breached, deleted, source_committed_at,
  enriched_at, written_at.
* ``routing_decisions`` — every decision; key ``(ticket_id, version)``; day of
  ``source_committed_at`` (a replayed decision is re-made at another wall-clock time but
  carries the same commit). Columns: ticket_id, version, queue, status, agent_id, score,
  confidence, reasons (list[str]), priority, sla_deadline, model_version, decided_at,
  source_committed_at, candidates, extra (JSON text), written_at.
* ``sla_events`` — key ``(ticket_id, metric, kind, at)``; day of ``at``. Columns:
  ticket_id, metric, kind, at, deadline, policy, business_seconds_elapsed,
  paused_seconds, breached, written_at.
* ``model_metrics`` — key ``(model, n_seen)``; day of ``at``. Columns: model, version, at,
  n_seen, accuracy, weighted_f1, drift_detected, written_at.

Timestamps are ``timestamp[us, UTC]``; ``written_at`` is when the sink wrote the row and
breaks ties between copies of one key (the later copy wins).

Kept as one module: the Parquet tables' schemas, their partitioned writes, reads
and compaction share the file layout.
"""

from __future__ import annotations

import functools
import logging
import os
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Literal, cast

import polars as pl
import pyarrow as pa
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from models.codecs import ROUTING_COLUMNS, routing_row, ticket_fields
from models.helpdesk import EnrichedTicket, RoutingDecision
from models.intelligence import ModelMetric
from models.pii import EMAIL_TOKEN as EMAIL_TOKEN  # re-exported: first defined here
from models.pii import PHONE_TOKEN as PHONE_TOKEN
from models.sla import SlaEvent
from models.telemetry import report_written

log = logging.getLogger(__name__)

Compression = Literal["zstd", "snappy", "lz4", "gzip", "brotli", "uncompressed"]
"""Parquet codecs the sink can write."""

WarehouseItem = EnrichedTicket | RoutingDecision | SlaEvent | ModelMetric
"""What the warehouse sink accepts."""

TICKET_FACTS = "ticket_facts"
ROUTING_DECISIONS = "routing_decisions"
SLA_EVENTS = "sla_events"
MODEL_METRICS = "model_metrics"

PARTITION_COLUMN = "date"
"""Hive partition column: the UTC day, in directory names only (``date=YYYY-MM-DD``)."""

_TS = pl.Datetime("us", "UTC")


@dataclass(frozen=True)
class TableSpec:
    """Schema and deduplication rule of one warehouse table.

    Attributes:
        schema: Column names and types of the Parquet files, in order.
        key: Columns identifying one logical row.
        order: Columns ordering copies of one key; the last copy is the one kept.
        partition_source: Timestamp column whose UTC day is the partition.
    """

    schema: Mapping[str, pl.DataType]
    key: tuple[str, ...]
    order: tuple[str, ...]
    partition_source: str


TABLES: dict[str, TableSpec] = {
    TICKET_FACTS: TableSpec(
        schema={
            "ticket_id": pl.Int64(),
            "version": pl.Int64(),
            "op": pl.String(),
            "customer_id": pl.Int64(),
            "customer_tier": pl.String(),
            "organization": pl.String(),
            "region": pl.String(),
            "channel": pl.String(),
            "status": pl.String(),
            "priority": pl.String(),
            "priority_reasons": pl.List(pl.String()),
            "category": pl.String(),
            "category_source": pl.String(),
            "intent": pl.String(),
            "intent_source": pl.String(),
            "queue": pl.String(),
            "language": pl.String(),
            "language_confidence": pl.Float64(),
            "sentiment": pl.Float64(),
            "sentiment_label": pl.String(),
            "assigned_agent_id": pl.Int64(),
            "subject": pl.String(),
            "description": pl.String(),
            "created_at": _TS,
            "updated_at": _TS,
            "first_reply_at": _TS,
            "solved_at": _TS,
            "csat": pl.Int64(),
            "first_reply_due": _TS,
            "resolution_due": _TS,
            "sla_policy": pl.String(),
            "sla_breached": pl.Boolean(),
            "deleted": pl.Boolean(),
            "source_committed_at": _TS,
            "enriched_at": _TS,
            "written_at": _TS,
        },
        key=("ticket_id",),
        order=("version", "written_at"),
        partition_source="created_at",
    ),
    ROUTING_DECISIONS: TableSpec(
        schema={
            "ticket_id": pl.Int64(),
            "version": pl.Int64(),
            "queue": pl.String(),
            "status": pl.String(),
            "agent_id": pl.Int64(),
            "score": pl.Float64(),
            "confidence": pl.Float64(),
            "reasons": pl.List(pl.String()),
            "priority": pl.String(),
            "sla_deadline": _TS,
            "model_version": pl.String(),
            "decided_at": _TS,
            "source_committed_at": _TS,
            "candidates": pl.Int64(),
            "extra": pl.String(),
            "written_at": _TS,
        },
        key=("ticket_id", "version"),
        order=("written_at",),
        partition_source="source_committed_at",
    ),
    SLA_EVENTS: TableSpec(
        schema={
            "ticket_id": pl.Int64(),
            "metric": pl.String(),
            "kind": pl.String(),
            "at": _TS,
            "deadline": _TS,
            "policy": pl.String(),
            "business_seconds_elapsed": pl.Float64(),
            "paused_seconds": pl.Float64(),
            "breached": pl.Boolean(),
            "written_at": _TS,
        },
        key=("ticket_id", "metric", "kind", "at"),
        order=("written_at",),
        partition_source="at",
    ),
    MODEL_METRICS: TableSpec(
        schema={
            "model": pl.String(),
            "version": pl.String(),
            "at": _TS,
            "n_seen": pl.Int64(),
            "accuracy": pl.Float64(),
            "weighted_f1": pl.Float64(),
            "drift_detected": pl.Int64(),
            "written_at": _TS,
        },
        key=("model", "n_seen"),
        order=("written_at",),
        partition_source="at",
    ),
}
"""Every warehouse table, by name."""


def ticket_fact_record(item: EnrichedTicket, *, allow_pii: bool = False) -> dict[str, Any]:
    """One ``ticket_facts`` row (without ``written_at``); free text masked unless allowed."""
    fields = ticket_fields(item, allow_pii=allow_pii)
    return {name: fields[name] for name in TABLES[TICKET_FACTS].schema if name != "written_at"}


def routing_decision_record(item: RoutingDecision) -> dict[str, Any]:
    """One ``routing_decisions`` row (without ``written_at``)."""
    return dict(zip(ROUTING_COLUMNS, routing_row(item), strict=True))


def sla_event_record(item: SlaEvent) -> dict[str, Any]:
    """One ``sla_events`` row (without ``written_at``)."""
    return {
        "ticket_id": item.ticket_id,
        "metric": item.metric,
        "kind": item.kind,
        "at": item.at,
        "deadline": item.deadline,
        "policy": item.policy,
        "business_seconds_elapsed": item.business_seconds_elapsed,
        "paused_seconds": item.paused_seconds,
        "breached": item.breached,
    }


def model_metric_record(item: ModelMetric) -> dict[str, Any]:
    """One ``model_metrics`` row (without ``written_at``)."""
    return {
        "model": item.model,
        "version": item.version,
        "at": item.at,
        "n_seen": item.n_seen,
        "accuracy": item.accuracy,
        "weighted_f1": item.weighted_f1,
        "drift_detected": item.drift_detected,
    }


def empty_frame(table: str) -> pl.DataFrame:
    """A frame with ``table``'s columns and no rows (without the partition column)."""
    return pl.DataFrame(schema=dict(TABLES[table].schema))


def batch_to_frames(
    items: Iterable[WarehouseItem],
    *,
    allow_pii: bool = False,
    written_at: datetime | None = None,
) -> dict[str, pl.DataFrame]:
    """Turn a batch of flow items into one frame per warehouse table.

    Within the batch only the newest copy of each key is kept (the same rule compaction
    applies across files). Each frame has the table's columns plus ``date``, the partition
    day, which the sink puts in the directory name rather than in the file.

    Args:
        items: Enriched tickets, routing decisions, SLA events and model metrics, mixed.
        allow_pii: Keep e-mail addresses and phone numbers in ticket subjects and
            descriptions; by default they are replaced with ``[email]`` / ``[phone]``.
        written_at: Write time stamped on every row; now (UTC) by default.

    Returns:
        A frame per table name of :data:`TABLES`, every table present (maybe empty).

    Raises:
        TypeError: For an item of another type.
    """
    stamp = written_at or datetime.now(UTC)
    facts: dict[int, EnrichedTicket] = {}
    decisions: dict[tuple[int, int], RoutingDecision] = {}
    events: dict[tuple[int, str, str, datetime], SlaEvent] = {}
    metrics: dict[tuple[str, int], ModelMetric] = {}
    for item in items:
        if isinstance(item, EnrichedTicket):
            seen = facts.get(item.ticket_id)
            if seen is None or item.version >= seen.version:
                facts[item.ticket_id] = item
        elif isinstance(item, RoutingDecision):
            decisions[(item.ticket_id, item.version)] = item
        elif isinstance(item, SlaEvent):
            events[(item.ticket_id, item.metric, item.kind, item.at)] = item
        elif isinstance(item, ModelMetric):
            metrics[(item.model, item.n_seen)] = item
        else:
            raise TypeError(f"WarehouseSink cannot write {type(item).__name__}")
    records: dict[str, list[dict[str, Any]]] = {
        TICKET_FACTS: [ticket_fact_record(facts[k], allow_pii=allow_pii) for k in sorted(facts)],
        ROUTING_DECISIONS: [routing_decision_record(decisions[k]) for k in sorted(decisions)],
        SLA_EVENTS: [sla_event_record(events[k]) for k in sorted(events)],
        MODEL_METRICS: [model_metric_record(metrics[k]) for k in sorted(metrics)],
    }
    frames: dict[str, pl.DataFrame] = {}
    for table, rows in records.items():
        spec = TABLES[table]
        columns = {
            name: [stamp] * len(rows) if name == "written_at" else [row[name] for row in rows]
            for name in spec.schema
        }
        frame = _frame(table, columns)
        frames[table] = frame.with_columns(
            pl.col(spec.partition_source).dt.date().alias(PARTITION_COLUMN)
        )
    return frames


@functools.cache
def _arrow_types(table: str) -> dict[str, pa.DataType]:
    """The Arrow type polars gives each column of ``table`` (what the frame will hold)."""
    return {
        name: pl.Series(name, [], dtype=dtype).to_arrow().type
        for name, dtype in TABLES[table].schema.items()
    }


def _frame(table: str, columns: dict[str, list[Any]]) -> pl.DataFrame:
    """A frame of ``table``'s schema from Python values, one list per column.

    Through Arrow arrays: pyarrow converts lists, time-zone-aware datetimes and nested
    lists in C++, about four times faster than polars' constructor, which takes a
    per-value fallback for list and datetime columns. Values Arrow refuses go through
    polars' constructor, which decides as before.
    """
    types = _arrow_types(table)
    try:
        arrays = {name: pa.array(values, type=types[name]) for name, values in columns.items()}
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        return pl.DataFrame(columns, schema=dict(TABLES[table].schema))
    return cast(pl.DataFrame, pl.from_arrow(pa.table(arrays)))


def warm_up() -> None:
    """Build an empty frame of every table, before the first item.

    pyarrow imports pandas at its first conversion, which took 0.3 s: at the first ticket
    that was a stall of the whole worker (measured as the maximum commit→decision latency
    at 25 tickets/s).
    """
    for table, spec in TABLES.items():
        _frame(table, {name: [] for name in spec.schema})


def latest_per_key(frame: pl.DataFrame, table: str) -> pl.DataFrame:
    """Keep the newest copy of each key of ``table`` (see :class:`TableSpec`)."""
    spec = TABLES[table]
    return frame.sort(list(spec.order)).unique(
        subset=list(spec.key), keep="last", maintain_order=True
    )


def partition_dir(root: Path | str, table: str, day: date | str) -> Path:
    """``<root>/<table>/date=YYYY-MM-DD``."""
    text = day.isoformat() if isinstance(day, date) else date.fromisoformat(day).isoformat()
    return Path(root) / table / f"{PARTITION_COLUMN}={text}"


def _write_file(frame: pl.DataFrame, directory: Path, name: str, compression: Compression) -> Path:
    """Write ``frame`` durably to ``directory/name``, visible only once complete."""
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / name
    temp = directory / f".{name}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        frame.write_parquet(temp, compression=compression)
        with open(temp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(temp, final)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    _fsync_dir(directory)
    return final


def _fsync_dir(directory: Path) -> None:
    # A rename is durable once its directory is synced.
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_frames(
    root: Path | str,
    frames: Mapping[str, pl.DataFrame],
    *,
    worker: int | str = 0,
    compression: Compression = "zstd",
) -> list[Path]:
    """Write each frame's rows as one new file per partition day.

    Args:
        root: Warehouse root directory.
        frames: Output of :func:`batch_to_frames`.
        worker: Name part telling which writer produced a file.
        compression: Parquet compression codec.

    Returns:
        The files written.
    """
    written: list[Path] = []
    for table, frame in frames.items():
        if frame.is_empty():
            continue
        by_day = frame.partition_by(PARTITION_COLUMN, as_dict=True, include_key=False)
        for (day,), part in sorted(by_day.items(), key=lambda kv: str(kv[0])):
            name = f"part-{worker}-{uuid.uuid4().hex}.parquet"
            written.append(_write_file(part, partition_dir(root, table, day), name, compression))
    return written


def _parts(directory: Path) -> list[Path]:
    return sorted(directory.glob("part-*.parquet"))


def read_table(root: Path | str, table: str, *, latest: bool = True) -> pl.DataFrame:
    """Read a warehouse table with its ``date`` partition column.

    Args:
        root: Warehouse root directory.
        table: A name of :data:`TABLES`.
        latest: Keep only the newest copy of each key (what compaction would leave);
            ``False`` returns every stored copy, replays included.

    Returns:
        The rows, with the table's columns and ``date``.
    """
    spec = TABLES[table]
    files = sorted(
        str(p) for p in (Path(root) / table).glob(f"{PARTITION_COLUMN}=*/part-*.parquet")
    )
    if not files:
        return empty_frame(table).with_columns(pl.lit(None, dtype=pl.Date).alias(PARTITION_COLUMN))
    frame = pl.scan_parquet(
        files,
        schema=dict(spec.schema),
        hive_partitioning=True,
        hive_schema={PARTITION_COLUMN: pl.Date()},
    ).collect()
    return latest_per_key(frame, table) if latest else frame


@dataclass(frozen=True)
class CompactionResult:
    """What :func:`compact` did to one partition.

    Attributes:
        files_before: Part files read.
        rows_before: Rows in them.
        rows_after: Rows in the compacted file (one per key).
        path: The compacted file, or ``None`` when the partition had no files.
    """

    files_before: int
    rows_before: int
    rows_after: int
    path: Path | None


def compact(
    root: Path | str, table: str, day: date | str, *, compression: Compression = "zstd"
) -> CompactionResult:
    """Rewrite one partition as a single file holding the newest copy of each key.

    The new file is written under a temporary name and renamed into place before the
    parts it replaces are deleted, so at no moment is a row missing: a crash in between
    leaves duplicates for the next compaction, never a gap. Parts written while the
    compaction runs are left alone. Concurrent compactions of one partition lose nothing
    either: each deletes only the parts it read, and its output holds their rows.

    Args:
        root: Warehouse root directory.
        table: A name of :data:`TABLES`.
        day: The partition's UTC day.
        compression: Parquet compression codec of the compacted file.

    Returns:
        Counts of files and rows before and after.
    """
    spec = TABLES[table]
    directory = partition_dir(root, table, day)
    parts = _parts(directory)
    if not parts:
        return CompactionResult(files_before=0, rows_before=0, rows_after=0, path=None)
    frame = pl.read_parquet([str(p) for p in parts], schema=dict(spec.schema))
    kept = latest_per_key(frame, table).sort(list(spec.key))
    path = _write_file(kept, directory, f"part-compacted-{uuid.uuid4().hex}.parquet", compression)
    for part in parts:
        part.unlink(missing_ok=True)
    _fsync_dir(directory)
    log.info(
        "compacted %s: %d files, %d rows -> %d rows",
        directory,
        len(parts),
        frame.height,
        kept.height,
    )
    return CompactionResult(
        files_before=len(parts), rows_before=frame.height, rows_after=kept.height, path=path
    )


class _WarehousePartition(StatelessSinkPartition[WarehouseItem]):
    """One worker's writer: a new set of files per batch."""

    def __init__(
        self, root: Path, *, worker: int, allow_pii: bool, compression: Compression
    ) -> None:
        self._root = root
        self._worker = worker
        self._allow_pii = allow_pii
        self._compression = compression

    def write_batch(self, items: list[WarehouseItem]) -> None:
        """Write the batch; returns once every file is durably in place."""
        frames = batch_to_frames(items, allow_pii=self._allow_pii)
        written = write_frames(
            self._root, frames, worker=self._worker, compression=self._compression
        )
        log.debug("warehouse: %d items in %d files", len(items), len(written))
        report_written("warehouse", items)


class WarehouseSink(DynamicSink[WarehouseItem]):
    """Write ticket facts, routing decisions, SLA events and model metrics to Parquet.

    Delivery guarantee: at-least-once. Files are immutable and every batch adds new ones,
    so a replay after recovery writes its rows again. Idempotency keys: ``ticket_id``
    (newest ``version`` wins) for ticket facts, ``(ticket_id, version)`` for routing
    decisions, ``(ticket_id, metric, kind, at)`` for SLA events and ``(model, n_seen)`` for
    model metrics; :func:`compact` rewrites a partition to one row per key and
    :func:`read_table` applies the same rule on read. Engines reading the raw files see
    replayed copies until the partition is compacted.

    E-mail addresses and phone numbers in ticket subjects and descriptions are masked
    unless ``allow_pii`` is set.

    Args:
        root: Directory holding the tables (created when missing).
        allow_pii: Store ticket text unmasked.
        compression: Parquet compression codec.
    """

    def __init__(
        self, root: Path | str, *, allow_pii: bool = False, compression: Compression = "zstd"
    ) -> None:
        self._root = Path(root)
        self._allow_pii = allow_pii
        self._compression = compression

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _WarehousePartition:
        """Create the root directory and this worker's writer."""
        self._root.mkdir(parents=True, exist_ok=True)
        if not os.access(self._root, os.W_OK):
            raise PermissionError(f"warehouse root {self._root} is not writable")
        warm_up()
        return _WarehousePartition(
            self._root,
            worker=worker_index,
            allow_pii=self._allow_pii,
            compression=self._compression,
        )
