"""Batch writes to PostgreSQL through staging tables, shared by the PostgreSQL sinks.

Each table of a batch is COPYed into a session temporary staging table (created once per
connection), then merged into its target by a statement the sink composes (an upsert
guarded by version, or an insert-if-absent), and the staging rows are deleted in the same
transaction. A batch is one transaction.

The staging tables are not ``ON COMMIT DELETE ROWS``: PostgreSQL truncates every such
table of the session at each commit that touched a temporary table, about 0.45 ms per
table on the project's machine, which made the commit the largest wait of the pipeline
at low load. A ``DELETE`` of the few rows just merged costs next to nothing; as temporary
tables are never autovacuumed, a table is truncated once its deleted rows pass
:data:`TRUNCATE_AFTER_ROWS`. A lost connection is retried with backoff on a fresh one
(:func:`sinks.retry.retry_connection_loss`); every other error propagates.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from models.telemetry import telemetry
from sinks.retry import RetryPolicy, retry_connection_loss

log = logging.getLogger(__name__)

Rows = dict[str, list[tuple[Any, ...]]]
"""Rows per table name, in the column order of that table's COPY statement."""


@dataclass(frozen=True)
class StagedTable:
    """SQL for one table: staging DDL, COPY into the staging table and the merge."""

    create_staging: sql.Composed
    copy: sql.Composed
    merge: sql.Composed
    staging: sql.Identifier
    """The temporary table that ``create_staging`` creates (no ``ON COMMIT`` action)."""


TRUNCATE_AFTER_ROWS = 20_000
"""Deleted rows after which a staging table is truncated (temporary tables are not vacuumed)."""


@dataclass(frozen=True)
class _Rendered:
    copy: bytes
    merge: bytes
    empty: bytes
    truncate: bytes


class StagedWriter:
    """One connection writing batches of rows per table; see the module docstring.

    Args:
        dsn: libpq connection string.
        schema: Schema of the target tables (checked to exist at every connect).
        tables: Table name → its statements.
        sink: Name of the sink, for logs and retry metrics.
        connect_timeout: Seconds to wait for each connection attempt.
        retry: Delays and limit of the retries after a connection loss.
        on_connect: Run in the set-up transaction of every new connection.
        after_merge: Run in each batch's transaction after its merges.
    """

    def __init__(
        self,
        dsn: str,
        *,
        schema: str,
        tables: dict[str, StagedTable],
        sink: str,
        connect_timeout: int,
        retry: RetryPolicy,
        on_connect: Callable[[psycopg.Connection[Any]], None] | None = None,
        after_merge: Callable[[psycopg.Connection[Any], Rows], None] | None = None,
    ) -> None:
        self._dsn = dsn
        self._schema = schema
        self._tables = tables
        self._sink = sink
        self._connect_timeout = connect_timeout
        self._retry = retry
        self._on_connect = on_connect
        self._after_merge = after_merge
        self._conn: psycopg.Connection[Any] | None = None
        self._rendered: dict[str, _Rendered] = {}
        self._deleted: dict[str, int] = {}
        # Fail at start-up, not at the first batch, when the store or a table is missing.
        self._conn = self._connect()

    def _connect(self) -> psycopg.Connection[Any]:
        conn = psycopg.connect(self._dsn, connect_timeout=self._connect_timeout)
        try:
            with conn.transaction():
                for table in self._tables:
                    found = conn.execute(
                        "SELECT to_regclass(%s)", (f"{self._schema}.{table}",)
                    ).fetchone()
                    if found is None or found[0] is None:
                        raise RuntimeError(
                            f"table {self._schema}.{table} does not exist; apply the analytics "
                            "migrations first (`triage migrate`, or sinks.migrations."
                            "apply_migrations with sql/analytics)"
                        )
            # Temp tables live as long as the session, so they are created once here.
            with conn.transaction():
                for statements in self._tables.values():
                    conn.execute(statements.create_staging)
                if self._on_connect is not None:
                    self._on_connect(conn)
            # Composed statements are rendered to bytes once per connection: rendering them
            # at every execution was a tenth of the pipeline's busy time at low load.
            self._rendered = {
                table: _Rendered(
                    copy=st.copy.as_bytes(conn),
                    merge=st.merge.as_bytes(conn),
                    empty=sql.SQL("DELETE FROM {}").format(st.staging).as_bytes(conn),
                    truncate=sql.SQL("TRUNCATE {}").format(st.staging).as_bytes(conn),
                )
                for table, st in self._tables.items()
            }
            self._deleted = dict.fromkeys(self._tables, 0)
        except BaseException:
            conn.close()
            raise
        return conn

    def write(self, rows: Rows, *, describe: str) -> None:
        """Write every table's rows in one transaction; returns once it is committed."""

        def attempt() -> None:
            if self._conn is None or self._conn.closed:
                self._conn = self._connect()
            self._write(self._conn, rows)

        retry_connection_loss(
            attempt,
            on_loss=self._discard_connection,
            describe=describe,
            policy=self._retry,
            on_retry=lambda: telemetry().sink_retry(self._sink),
        )

    def _write(self, conn: psycopg.Connection[Any], rows: Rows) -> None:
        deleted = dict(self._deleted)
        with conn.transaction(), conn.cursor() as cur:
            for table, table_rows in rows.items():
                if not table_rows:
                    continue
                rendered = self._rendered[table]
                with cur.copy(rendered.copy) as copy:
                    for row in table_rows:
                        copy.write_row(row)
                cur.execute(rendered.merge)
                deleted[table] += len(table_rows)
                if deleted[table] >= TRUNCATE_AFTER_ROWS:
                    cur.execute(rendered.truncate)
                    deleted[table] = 0
                else:
                    cur.execute(rendered.empty)
            if self._after_merge is not None:
                self._after_merge(conn, rows)
        # Counted only once committed: a rolled-back batch left its staging rows unwritten.
        self._deleted = deleted

    def _discard_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except psycopg.Error:
                log.debug("closing a broken %s connection failed", self._sink, exc_info=True)

    @property
    def backend_pid(self) -> int | None:
        """The server process of the current connection (``None`` when there is none)."""
        conn = self._conn
        return None if conn is None or conn.closed else conn.info.backend_pid

    def close(self) -> None:
        """Close the connection (when the dataflow ends)."""
        self._discard_connection()
