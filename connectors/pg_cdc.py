"""Embedded CDC reader: a Bytewax source over a PostgreSQL logical replication slot.

The reader needs no Kafka and no JVM. It polls ``pgoutput`` through the SQL interface
(``pg_logical_slot_get_binary_changes``), because psycopg 3 has no streaming replication
API, and serialises every change as the same Debezium JSON envelope (schemas disabled,
``decimal.handling.mode=string``) that the production Kafka path delivers, so everything
downstream is shared.

Two slots. The named slot is the *durable* one: it is never read, only advanced
(``pg_replication_slot_advance``) to a resume position that Bytewax recovery has
restored, or to what the pipeline reports as durable downstream, never beyond the last
fully emitted transaction; it is what survives a crash. Changes are read from a
*temporary* copy of it (``pg_copy_logical_replication_slot``), made when streaming
starts and consumed as it is read, so every poll decodes only new WAL. (Peeking the
durable slot instead would decode everything since its position again at every poll:
quadratic in the changes per recovery epoch.) The copy belongs to the reader's session,
so PostgreSQL drops it when the connection ends, and a reconnect copies the durable slot
afresh.

Delivery guarantee: at-least-once. After a crash or reconnect, reading restarts at the
durable slot's position; transactions emitted before the resume state are skipped, later
ones are delivered again with the same LSN, which sinks use as the version of their
upserts, so redelivery is harmless.

Kept as one module: the reader's snapshot, streaming and slot-advancing states
are one state machine over one connection.
"""

from __future__ import annotations

import json
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from psycopg import sql
from psycopg.types.string import TextLoader
from pydantic import BaseModel, ConfigDict, Field

from connectors.debezium import source_block
from connectors.pgoutput import (
    ARRAY_ELEMENT_OIDS,
    Begin,
    Column,
    Commit,
    Delete,
    Insert,
    PgOutputError,
    Relation,
    Truncate,
    TupleValue,
    Update,
    convert_tuple,
    format_lsn,
    parse_message,
    value_converter,
)
from models.events import RawChange, SourcePosition
from models.telemetry import report_changes, report_in_flight

log = logging.getLogger(__name__)

# Reference tables first so that enrichment and routing state (customers, agents, KB, the
# handling times learned from work outcomes) is loaded before the tickets and ticket events
# that look it up; other published tables follow by name. An outcome of a ticket read later
# waits for it in its queue (models/queue_state.py).
SNAPSHOT_TABLE_ORDER = (
    "customers",
    "agents",
    "kb_articles",
    "work_outcomes",
    "tickets",
    "ticket_events",
)

# The decoding output functions run in our session, so these settings fix the text form
# of timestamps, floats and bytea that the converters in connectors.pgoutput expect.
_SESSION_SETTINGS = (
    ("TimeZone", "UTC"),
    ("DateStyle", "ISO, YMD"),
    ("IntervalStyle", "postgres"),
    ("extra_float_digits", "3"),
    ("bytea_output", "hex"),
)

_TXN_BOUNDARY_TAGS = (b"B", b"C", b"R")

_READ = sql.SQL(
    "SELECT (lsn - '0/0'::pg_lsn)::int8, data "
    "FROM pg_logical_slot_get_binary_changes(%s, NULL, %s, "
    "'proto_version', '1', 'publication_names', %s)"
)
# The reader's own slot: a temporary copy of the durable slot, dropped with the session.
_COPY_SLOT = sql.SQL("SELECT pg_copy_logical_replication_slot(%s, %s, true)")
_SLOT_POSITION = sql.SQL(
    "SELECT (confirmed_flush_lsn - '0/0'::pg_lsn)::int8, plugin, database "
    "FROM pg_replication_slots WHERE slot_name = %s"
)
_CREATE_SLOT = sql.SQL(
    "SELECT (lsn - '0/0'::pg_lsn)::int8 FROM pg_create_logical_replication_slot(%s, 'pgoutput')"
)
# Advancing to a position before confirmed_flush_lsn is an error, so only move forward.
_ADVANCE = sql.SQL(
    "SELECT ((pg_replication_slot_advance(slot_name, %s::pg_lsn)).end_lsn - '0/0'::pg_lsn)::int8 "
    "FROM pg_replication_slots WHERE slot_name = %s AND confirmed_flush_lsn < %s::pg_lsn"
)
_PRIMARY_KEY = sql.SQL(
    "SELECT a.attname FROM pg_index i "
    "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey) "
    "WHERE i.indrelid = %s AND i.indisprimary "
    "ORDER BY array_position(i.indkey::int2[], a.attnum)"
)
_ARRAY_TYPES = sql.SQL(
    "SELECT oid::int8, typelem::int8 FROM pg_type WHERE oid = ANY (%s) AND typcategory = 'A'"
)
_PUBLISHED_TABLES = sql.SQL(
    "SELECT c.oid::int8, pt.schemaname, pt.tablename FROM pg_publication_tables pt "
    "JOIN pg_namespace n ON n.nspname = pt.schemaname "
    "JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = pt.tablename "
    "WHERE pt.pubname = %s"
)
_TABLE_COLUMNS = sql.SQL(
    "SELECT attname, atttypid::int8, atttypmod FROM pg_attribute "
    "WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped ORDER BY attnum"
)


class PgCdcOptions(BaseModel):
    """The embedded CDC reader's tunable options; the application's settings extend them.

    Attributes:
        slot_name: Logical replication slot owned by this reader.
        publication: Publication that selects the captured tables.
        max_changes_per_poll: Changes requested per poll; PostgreSQL only checks the limit
            at transaction boundaries, so one large transaction may exceed it.
        poll_interval: Wait between polls once the reader has caught up.
        snapshot_batch_size: Rows fetched from the snapshot cursor per batch.
        initial_snapshot: Emit every existing row (``op: r``) before streaming on first start.
        max_backoff: Longest wait between reconnection attempts.
        max_in_flight: Changes the reader may have emitted beyond the durable position
            (the last epoch every worker completed) before it stops reading until the
            flow catches up; ``0`` turns the bound off. Bytewax sources have no
            back-pressure of their own, so without it a backlog is read into memory at
            once, the epoch that holds it completes only when all of it is processed, and
            a crash in between replays the whole backlog before the first new decision.
            It bounds that replay and the memory a backlog takes. Applies only when the
            durable position is known (the pipeline's recovery watermark).
        max_batch: Most changes emitted at once. A larger transaction goes out over several
            batches, so the flow works through it batch by batch and epochs keep closing
            (and the durable position moving) while it is processed.
    """

    model_config = ConfigDict(frozen=True)

    slot_name: str = Field(default="triage_embedded", pattern=r"^[a-z0-9_]{1,63}$")
    publication: str = "triage_cdc"
    max_changes_per_poll: int = Field(default=5000, ge=1)
    poll_interval: timedelta = timedelta(milliseconds=20)
    snapshot_batch_size: int = Field(default=2000, ge=1)
    initial_snapshot: bool = True
    max_backoff: timedelta = timedelta(seconds=5)
    max_in_flight: int = Field(default=20_000, ge=0)
    max_batch: int = Field(default=5000, ge=1)


class PgCdcSettings(PgCdcOptions):
    """Settings of the embedded CDC reader: its options plus what the deployment fixes.

    Attributes:
        dsn: libpq connection string of the helpdesk database (needs ``wal_level=logical``
            and the REPLICATION attribute or superuser).
        topic_prefix: Debezium ``topic.prefix``; topics are ``<prefix>.<schema>.<table>``.
        stop_at_idle: End the stream (EOF) once caught up; for tests and benchmarks.
    """

    dsn: str
    topic_prefix: str = "triage"
    stop_at_idle: bool = False


@dataclass(frozen=True)
class CdcState:
    """Resume position of the reader, snapshotted by Bytewax recovery.

    Attributes:
        snapshot_done: The initial snapshot was fully emitted; when false it is redone.
        lsn: End LSN of the commit record of the last fully emitted transaction (the
            slot's consistent point before any streamed transaction). Transactions that
            committed before it are never emitted again, and the slot may be advanced to it.
        partial: Changes already emitted of the transaction that commits next. A large
            transaction is emitted in parts (see ``max_in_flight``), and a resume skips
            the part emitted before.
    """

    snapshot_done: bool
    lsn: int
    partial: int = 0

    @property
    def position(self) -> tuple[int, int]:
        """Where the stream stands, ordered: (last whole transaction, part of the next)."""
        return (self.lsn, self.partial)


@dataclass(frozen=True)
class _Table:
    """What the envelope builder needs to know about one captured table."""

    namespace: str
    name: str
    columns: tuple[Column, ...]
    key_columns: tuple[str, ...]
    topic: str
    converters: tuple[Callable[[str], Any], ...]


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


# One shared encoder: json.dumps builds a new one per call whenever options are given.
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def _dumps(obj: Any) -> bytes:
    return _ENCODER.encode(obj).encode()


def _connect(dsn: str, *, autocommit: bool) -> psycopg.Connection[Any]:
    conn = psycopg.connect(dsn, autocommit=autocommit, connect_timeout=10)
    for name, value in _SESSION_SETTINGS:
        conn.execute("SELECT set_config(%s, %s, false)", (name, value))
    if not autocommit:
        conn.commit()
    return conn


def _slot_position(conn: psycopg.Connection[Any], slot: str) -> int | None:
    """The slot's confirmed flush LSN, or None when this database has no such slot."""
    row = conn.execute(_SLOT_POSITION, (slot,)).fetchone()
    if row is None:
        return None
    lsn, plugin, database = row
    if plugin != "pgoutput" or database != conn.info.dbname:
        raise RuntimeError(
            f"replication slot {slot!r} belongs to database {database!r} with plugin "
            f"{plugin!r}; choose another slot_name or drop it with pg_drop_replication_slot()"
        )
    return int(lsn) if lsn is not None else 0


def _advance(conn: psycopg.Connection[Any], slot: str, lsn: int) -> int | None:
    text = format_lsn(lsn)
    row = conn.execute(_ADVANCE, (text, slot, text)).fetchone()
    return None if row is None else int(row[0])


def advance_slot(dsn: str, slot: str, lsn: int) -> int | None:
    """Move a slot forward to ``lsn``; a position at or behind it is left alone.

    Only call this for positions whose events are durable downstream: changes before the
    slot's position are gone for good.

    Args:
        dsn: Connection string of the database that owns the slot.
        slot: Slot name.
        lsn: Target LSN as an integer.

    Returns:
        The slot's new confirmed position, or None when it did not move.
    """
    with psycopg.connect(dsn, autocommit=True) as conn:
        return _advance(conn, slot, lsn)


def drop_slot(dsn: str, slot: str) -> bool:
    """Drop a replication slot so that it no longer retains WAL.

    Returns:
        True when the slot existed and was dropped.
    """
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
            "WHERE slot_name = %s",
            (slot,),
        ).fetchone()
    return row is not None


def slot_position(dsn: str, slot: str) -> int | None:
    """The slot's confirmed flush LSN as an integer, or None when there is no such slot."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        return _slot_position(conn, slot)


class _Snapshot:
    """Reads every published table in one REPEATABLE READ transaction, chunk by chunk.

    A server-side cursor per table keeps memory flat whatever the table size. Columns are
    fetched as text so that the same converters as for pgoutput apply.
    """

    def __init__(self, conn: psycopg.Connection[Any], tables: list[_Table], batch: int) -> None:
        self._conn = conn
        self._pending_tables = list(tables)
        self._batch = batch
        self._cursor: psycopg.ServerCursor[Any] | None = None
        self._table: _Table | None = None
        self.started_ms = _now_ms()

    def fetch(self) -> tuple[list[tuple[_Table, Sequence[TupleValue]]], bool]:
        """Up to one batch of (table, row) pairs, and whether the snapshot is exhausted."""
        rows: list[tuple[_Table, Sequence[TupleValue]]] = []
        while len(rows) < self._batch:
            if self._cursor is None:
                if not self._pending_tables:
                    return rows, True
                self._open(self._pending_tables.pop(0))
            assert self._cursor is not None and self._table is not None
            want = self._batch - len(rows)
            chunk = self._cursor.fetchmany(want)
            rows.extend((self._table, row) for row in chunk)
            if len(chunk) < want:
                self._cursor.close()
                self._cursor = None
        return rows, False

    def _open(self, table: _Table) -> None:
        for column in table.columns:
            self._conn.adapters.register_loader(column.type_oid, TextLoader)
        query = sql.SQL("SELECT {} FROM {}").format(
            sql.SQL(", ").join(sql.Identifier(c.name) for c in table.columns),
            sql.Identifier(table.namespace, table.name),
        )
        self._cursor = self._conn.cursor(name=f"triage_snapshot_{table.name}")
        self._cursor.execute(query)
        self._table = table
        log.info("snapshotting %s.%s", table.namespace, table.name)

    def close(self) -> None:
        try:
            if self._cursor is not None:
                self._cursor.close()
            self._conn.commit()
        finally:
            self._conn.close()


class _PgCdcPartition(StatefulSourcePartition[RawChange, CdcState]):
    def __init__(
        self,
        settings: PgCdcSettings,
        resume_state: CdcState | None,
        durable_lsn: Callable[[], int | tuple[int, int] | None] | None,
    ) -> None:
        self._settings = settings
        self._durable_lsn = durable_lsn
        self._state = resume_state or CdcState(snapshot_done=not settings.initial_snapshot, lsn=0)
        self._resume_pending = resume_state is not None
        self._conn: psycopg.Connection[Any] | None = None
        self._snapshot: _Snapshot | None = None
        self._held_back: tuple[_Table, Sequence[TupleValue]] | None = None
        self._advanced = 0
        self._tables: dict[int, _Table] = {}
        self._keys: dict[int, tuple[str, ...]] = {}
        self._array_elements: dict[int, int] = dict(ARRAY_ELEMENT_OIDS)
        self._known_types: set[int] = set(ARRAY_ELEMENT_OIDS)
        # The temporary slot changes are read from; made when streaming starts.
        self._reader_slot: str | None = None
        self._awake: datetime | None = None
        self._backoff = 0.0
        # Decoded transactions not yet wholly emitted: (commit end LSN, changes); the
        # first ``self._state.partial`` changes of the head one are emitted already.
        self._txns: deque[tuple[int, list[RawChange]]] = deque()
        # Back-pressure: (stream position after an emitted batch, changes emitted up to
        # it), oldest first, for batches not yet known to be durable.
        self._emitted: deque[tuple[tuple[int, int], int]] = deque()
        self._emitted_total = 0
        self._durable_total = 0
        self._paused = False

    # -- Bytewax interface ----------------------------------------------------------------

    def next_batch(self) -> list[RawChange]:
        try:
            if self._conn is None:
                self._open()
            streaming = self._state.snapshot_done
            batch = self._stream_step() if streaming else self._snapshot_step()
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            self._recover(exc)
            return []
        except psycopg.errors.UndefinedObject as exc:
            # The slot vanished under us (dropped by an operator); reopening recreates it.
            self._recover(exc)
            return []
        self._backoff = 0.0
        if batch or not self._paused:
            report_changes(batch)
        return batch

    def next_awake(self) -> datetime | None:
        return self._awake

    def snapshot(self) -> CdcState:
        return self._state

    def close(self) -> None:
        self._close_connections()

    # -- connection handling --------------------------------------------------------------

    def _open(self) -> None:
        settings = self._settings
        conn = _connect(settings.dsn, autocommit=True)
        self._conn = conn
        position = _slot_position(conn, settings.slot_name)
        if position is None:
            if self._state.snapshot_done and self._state.lsn:
                log.warning(
                    "replication slot %s is missing although the resume state says streaming "
                    "had started; changes may have been missed, so the initial snapshot is "
                    "taken again",
                    settings.slot_name,
                )
                self._state = CdcState(snapshot_done=not settings.initial_snapshot, lsn=0)
            try:
                created = conn.execute(_CREATE_SLOT, (settings.slot_name,)).fetchone()
                position = int(created[0]) if created else 0
                log.info(
                    "created replication slot %s at %s", settings.slot_name, format_lsn(position)
                )
            except psycopg.errors.DuplicateObject:
                position = _slot_position(conn, settings.slot_name) or 0
        elif self._resume_pending and self._state.snapshot_done:
            # Bytewax restored this state, so everything before it is durable downstream.
            if position > self._state.lsn:
                log.warning(
                    "slot %s is at %s, past the resume position %s; changes in between "
                    "cannot be re-read",
                    settings.slot_name,
                    format_lsn(position),
                    format_lsn(self._state.lsn),
                )
            moved = _advance(conn, settings.slot_name, self._state.lsn)
            position = moved if moved is not None else position
        self._resume_pending = False
        self._advanced = position
        self._reader_slot = None
        if not self._state.snapshot_done:
            # Stream transactions start at the slot's consistent point.
            self._state = CdcState(snapshot_done=False, lsn=position)
        log.info("CDC reader on slot %s positioned at %s", settings.slot_name, format_lsn(position))

    def _recover(self, exc: Exception) -> None:
        self._backoff = min(max(self._backoff * 2, 0.1), self._settings.max_backoff.total_seconds())
        log.warning(
            "CDC reader failed (%s); reconnecting in %.1fs%s",
            str(exc).strip() or type(exc).__name__,
            self._backoff,
            "; the initial snapshot restarts" if not self._state.snapshot_done else "",
        )
        self._close_connections()
        self._awake = datetime.now(UTC) + timedelta(seconds=self._backoff)

    def _close_connections(self) -> None:
        # The reader slot is temporary: it ends with the connection. What it delivered and
        # was not emitted yet is read again through the next one.
        self._reader_slot = None
        self._txns.clear()
        snapshot, self._snapshot, self._held_back = self._snapshot, None, None
        conn, self._conn = self._conn, None
        for closer in (snapshot.close if snapshot else None, conn.close if conn else None):
            if closer is None:
                continue
            try:
                closer()
            except psycopg.Error:
                log.debug("ignoring error while closing", exc_info=True)

    # -- initial snapshot -----------------------------------------------------------------

    def _start_snapshot(self) -> _Snapshot:
        assert self._conn is not None
        rows = self._conn.execute(_PUBLISHED_TABLES, (self._settings.publication,)).fetchall()
        order = {name: i for i, name in enumerate(SNAPSHOT_TABLE_ORDER)}
        rows.sort(key=lambda r: (order.get(r[2], len(order)), r[1], r[2]))
        tables = []
        for relid, namespace, name in rows:
            columns = tuple(
                Column(col_name, int(oid), int(typmod), False)
                for col_name, oid, typmod in self._conn.execute(_TABLE_COLUMNS, (relid,))
            )
            self._learn_types(c.type_oid for c in columns)
            tables.append(self._table(int(relid), namespace, name, columns))
        conn = _connect(self._settings.dsn, autocommit=False)
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        log.info(
            "initial snapshot of %d tables at %s",
            len(tables),
            format_lsn(self._state.lsn),
        )
        return _Snapshot(conn, tables, self._settings.snapshot_batch_size)

    def _snapshot_step(self) -> list[RawChange]:
        # The slot was created before the snapshot transaction began, so the snapshot may
        # already contain changes that the stream delivers again after it, with larger
        # LSNs. Every snapshot row carries the slot's consistent point as its version, and
        # sinks apply versioned upserts, so replaying those changes converges on the state
        # the database reached.
        if self._snapshot is None:
            self._snapshot = self._start_snapshot()
        snapshot = self._snapshot
        rows, done = snapshot.fetch()
        if self._held_back is not None:
            rows.insert(0, self._held_back)
            self._held_back = None
        if not done and rows:
            # The last row of the whole snapshot is flagged "last", so keep one row back
            # until we know whether more follow.
            self._held_back = rows.pop()
        now = _now_ms()
        out = []
        for i, (table, values) in enumerate(rows):
            flag = "last" if done and i == len(rows) - 1 else "true"
            after = self._row(table, values)
            out.append(
                self._change(
                    table, "r", None, after, self._state.lsn, None, snapshot.started_ms, flag, now
                )
            )
        if done:
            self._snapshot = None
            snapshot.close()
            self._state = replace(self._state, snapshot_done=True)
            log.info("initial snapshot finished")
        self._awake = None
        return out

    # -- streaming ------------------------------------------------------------------------

    def _stream_step(self) -> list[RawChange]:
        assert self._conn is not None
        durable = self._advance_to_durable()
        room = self._room(durable)
        self._paused = room <= 0
        if self._paused:
            self._awake = datetime.now(UTC) + self._settings.poll_interval
            return []
        caught_up = True
        if not self._txns:
            reader = self._reader_slot or self._copy_durable_slot()
            limit = self._settings.max_changes_per_poll
            with self._conn.cursor(binary=True) as cur:
                cur.execute(_READ, (reader, limit, self._settings.publication))
                rows = cur.fetchall()
            self._txns.extend(self._decode(rows))
            caught_up = len(rows) < limit
        out = self._take(min(room, self._settings.max_batch))
        if out and self._settings.max_in_flight and self._durable_lsn is not None:
            # Tracked only when bounded: nothing else would ever drain it.
            self._emitted_total += len(out)
            self._emitted.append((self._state.position, self._emitted_total))
        if out or self._txns or not caught_up:
            self._awake = None
            return out
        if self._settings.stop_at_idle:
            raise StopIteration
        self._awake = datetime.now(UTC) + self._settings.poll_interval
        return out

    def _advance_to_durable(self) -> tuple[int, int] | None:
        """Move the durable slot up to the recovery watermark; return the watermark."""
        if self._durable_lsn is None:
            return None
        try:
            durable = self._durable_lsn()
        except Exception:
            log.exception("durable_lsn callback failed; the slot is not advanced this time")
            return None
        if durable is None:
            return None
        if not isinstance(durable, tuple):  # a bare LSN: whole transactions only
            durable = (durable, 0)
        target = min(durable[0], self._state.lsn)
        if target > self._advanced:
            assert self._conn is not None
            _advance(self._conn, self._settings.slot_name, target)
            self._advanced = target
        return durable

    def _room(self, durable: tuple[int, int] | None) -> int:
        """How many more changes may be emitted before ``max_in_flight`` are undurable."""
        limit = self._settings.max_in_flight
        if not limit or durable is None:
            return 1 << 62
        emitted = self._emitted
        while emitted and emitted[0][0] <= durable:
            self._durable_total = emitted.popleft()[1]
        in_flight = self._emitted_total - self._durable_total
        report_in_flight(in_flight)
        return limit - in_flight

    def _take(self, room: int) -> list[RawChange]:
        """Up to ``room`` changes from the decoded transactions, in order; the state
        follows: whole transactions move ``lsn``, a part of one moves ``partial``."""
        out: list[RawChange] = []
        txns = self._txns
        while txns and room > 0:
            end_lsn, changes = txns[0]
            done = self._state.partial
            part = changes[done : done + room]
            out.extend(part)
            room -= len(part)
            if done + len(part) >= len(changes):
                txns.popleft()
                self._state = replace(self._state, lsn=end_lsn, partial=0)
            else:
                self._state = replace(self._state, partial=done + len(part))
        return out

    def _copy_durable_slot(self) -> str:
        """Create this session's reader slot at the durable slot's position."""
        assert self._conn is not None
        # Unique per session: a dead session's copy may linger until the server notices.
        reader = f"{self._settings.slot_name[:40]}_r{self._conn.info.backend_pid}"
        self._conn.execute(_COPY_SLOT, (self._settings.slot_name, reader))
        self._reader_slot = reader
        log.info("reading changes through temporary slot %s", reader)
        return reader

    def _decode(self, rows: list[tuple[int, bytes]]) -> list[tuple[int, list[RawChange]]]:
        """The transactions in ``rows`` not emitted yet: (commit end LSN, changes)."""
        out: list[tuple[int, list[RawChange]]] = []
        txn: list[RawChange] = []
        begin: Begin | None = None
        skip = True
        now = _now_ms()
        last_commit = self._state.lsn
        for lsn, data in rows:
            if skip and data[:1] not in _TXN_BOUNDARY_TAGS:
                # Changes of an already emitted transaction need no parsing.
                continue
            try:
                msg = parse_message(data)
            except PgOutputError:
                log.exception("skipping undecodable pgoutput message at %s", format_lsn(lsn))
                continue
            if isinstance(msg, Relation):
                self._on_relation(msg)
            elif isinstance(msg, Begin):
                begin = msg
                txn = []
                # The commit record starts before its end LSN, so a transaction whose
                # commit starts before the state's LSN was emitted already.
                skip = msg.final_lsn < self._state.lsn
            elif isinstance(msg, Commit):
                if not skip:
                    out.append((msg.end_lsn, txn))
                    last_commit = msg.end_lsn
                txn = []
                begin = None
                skip = True
            elif not skip and begin is not None:
                self._on_change(msg, lsn, begin, last_commit, now, txn)
        return out

    def _on_relation(self, rel: Relation) -> None:
        self._learn_types(c.type_oid for c in rel.columns)
        self._tables[rel.relation_id] = self._table(
            rel.relation_id, rel.namespace, rel.name, rel.columns
        )

    def _on_change(
        self,
        msg: object,
        lsn: int,
        begin: Begin,
        last_commit: int,
        now: int,
        txn: list[RawChange],
    ) -> None:
        ts_ms = begin.commit_time_us // 1000
        emit = txn.append

        def change(table: _Table, op: str, before: Any, after: Any) -> None:
            emit(
                self._change(
                    table, op, before, after, lsn, begin.xid, ts_ms, "false", now, last_commit
                )
            )

        if isinstance(msg, Insert):
            table = self._tables[msg.relation_id]
            change(table, "c", None, self._row(table, msg.new))
        elif isinstance(msg, Update):
            table = self._tables[msg.relation_id]
            after = self._row(table, msg.new)
            before = self._row(table, msg.old) if msg.old is not None else None
            if before is not None and self._key(table, before) != self._key(table, after):
                # A primary key change is a delete of the old row and an insert of the new
                # one, as Debezium reports it, so that sinks keyed by id stay correct.
                change(table, "d", before, None)
                change(table, "c", None, after)
            else:
                change(table, "u", before, after)
        elif isinstance(msg, Delete):
            table = self._tables[msg.relation_id]
            change(table, "d", self._row(table, msg.old), None)
        elif isinstance(msg, Truncate):
            for relid in msg.relation_ids:
                if relid in self._tables:
                    change(self._tables[relid], "t", None, None)

    # -- envelope -------------------------------------------------------------------------

    def _table(self, relid: int, namespace: str, name: str, columns: tuple[Column, ...]) -> _Table:
        keys = self._keys.get(relid)
        if keys is None:
            assert self._conn is not None
            keys = tuple(r[0] for r in self._conn.execute(_PRIMARY_KEY, (relid,)))
            if not keys:
                keys = tuple(c.name for c in columns if c.is_key)
            self._keys[relid] = keys
        topic = f"{self._settings.topic_prefix}.{namespace}.{name}"
        converters = tuple(value_converter(c.type_oid, self._array_elements) for c in columns)
        return _Table(namespace, name, columns, keys, topic, converters)

    def _learn_types(self, oids: Any) -> None:
        unknown = {oid for oid in oids if oid not in self._known_types and oid >= 16384}
        # Built-in types below 16384 are covered by the static tables; user-defined
        # array types (e.g. of an enum) are looked up once so they decode as lists.
        if unknown and self._conn is not None:
            for oid, elem in self._conn.execute(_ARRAY_TYPES, (list(unknown),)):
                self._array_elements[int(oid)] = int(elem)
        self._known_types.update(unknown)

    def _row(self, table: _Table, values: Sequence[TupleValue]) -> dict[str, Any]:
        row, problems = convert_tuple(table.columns, values, table.converters)
        for problem in problems:
            log.warning("%s.%s: kept raw text for %s", table.namespace, table.name, problem)
        return row

    @staticmethod
    def _key(table: _Table, row: dict[str, Any]) -> dict[str, Any]:
        return {name: row.get(name) for name in table.key_columns}

    def _change(
        self,
        table: _Table,
        op: str,
        before: dict[str, Any] | None,
        after: dict[str, Any] | None,
        lsn: int,
        xid: int | None,
        ts_ms: int,
        snapshot: str,
        now: int,
        last_commit: int | None = None,
    ) -> RawChange:
        row = after if after is not None else before
        key = _dumps(self._key(table, row)) if row is not None else None
        envelope = {
            "before": before,
            "after": after,
            "source": source_block(
                topic_prefix=self._settings.topic_prefix,
                table=table.name,
                lsn=lsn,
                ts_ms=ts_ms,
                snapshot=snapshot,
                tx_id=xid,
                db=self._conn.info.dbname if self._conn is not None else None,
                schema=table.namespace,
                sequence=f'["{last_commit}","{lsn}"]' if last_commit else None,
            ),
            "op": op,
            "ts_ms": now,
            "transaction": None,
        }
        return RawChange(
            topic=table.topic, key=key, value=_dumps(envelope), position=SourcePosition(lsn=lsn)
        )


class PgCdcSource(FixedPartitionedSource[RawChange, CdcState]):
    """Bytewax source streaming the helpdesk tables' changes from a logical replication slot.

    On first start it creates the slot, emits every existing row of the published tables
    (``op: r``), then streams inserts, updates, deletes and truncates as Debezium envelopes
    on topics ``<prefix>.<schema>.<table>``, each with its change LSN as position.

    Delivery guarantee: at-least-once; each event's LSN is the sinks' idempotency version.
    The slot is advanced only to positions known to be durable: the Bytewax resume state
    on restart, and while running the value of ``durable_lsn`` (never past the last
    fully emitted transaction). Without ``durable_lsn`` the slot is advanced only on
    restart. Changes are read through a temporary copy of the slot (module docstring).

    Args:
        settings: Reader settings.
        durable_lsn: Returns the position up to which every emitted event is durable
            downstream, as :attr:`CdcState.position` of a snapshotted state (a bare LSN
            means whole transactions only, so with ``max_in_flight`` smaller than a
            transaction the reader would wait for its end forever), or None when
            nothing is known.
    """

    def __init__(
        self,
        settings: PgCdcSettings,
        durable_lsn: Callable[[], int | tuple[int, int] | None] | None = None,
    ) -> None:
        self.settings = settings
        self.durable_lsn = durable_lsn

    def list_parts(self) -> list[str]:
        return [self.settings.slot_name]

    def build_part(
        self, step_id: str, for_part: str, resume_state: CdcState | None
    ) -> _PgCdcPartition:
        if for_part != self.settings.slot_name:
            raise ValueError(f"unknown partition {for_part!r}; expected the slot name")
        return _PgCdcPartition(self.settings, resume_state, self.durable_lsn)
