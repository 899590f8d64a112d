"""Current-state Delta tables over the Parquet change log: one row per key, newest version,
replays add nothing, time travel, and DuckDB and deltalake read them as they are."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import duckdb_extensions
import pytest
from deltalake import DeltaTable

from sinks.warehouse import (
    ROUTING_DECISIONS,
    SLA_EVENTS,
    TICKET_FACTS,
    batch_to_frames,
    write_frames,
)
from sinks.warehouse_delta import current_path, optimize_current, publish_current, watermark
from tests.integration.test_warehouse import (
    make_decision,
    make_sla_event,
    make_ticket,
    sample_items,
)

pytestmark = pytest.mark.integration


def write(root: Path, items: list, at: datetime) -> None:  # type: ignore[type-arg]
    write_frames(root, batch_to_frames(items, written_at=at))


def current(root: Path, table: str) -> list[dict]:  # type: ignore[type-arg]
    rows = DeltaTable(str(current_path(root, table))).to_pyarrow_table().to_pylist()
    return sorted(rows, key=lambda r: tuple(str(r[k]) for k in ("ticket_id", "version")))


def test_current_tickets_hold_the_newest_version_once(tmp_path: Path) -> None:
    t0 = datetime.now(UTC)
    write(tmp_path, sample_items(), t0)
    first = {r.table: r for r in publish_current(tmp_path)}
    assert first[TICKET_FACTS].rows_inserted == 3  # tickets 1, 2, 3 (ticket 1 twice in the log)
    tickets = current(tmp_path, TICKET_FACTS)
    assert [(r["ticket_id"], r["version"], r["status"]) for r in tickets] == [
        (1, 12, "pending"),
        (2, 11, "open"),
        (3, 13, "open"),
    ]
    assert len(current(tmp_path, ROUTING_DECISIONS)) == 3

    # Later: ticket 1 moves on, ticket 2 gets a stale copy (a replay of an older change),
    # the same decisions and SLA events are written again.
    write(
        tmp_path,
        [
            make_ticket(1, 20, status="solved"),
            make_ticket(2, 5, status="new"),
            make_decision(1, 12),
            make_sla_event(1),
        ],
        t0 + timedelta(seconds=5),
    )
    second = {r.table: r for r in publish_current(tmp_path)}
    assert (second[TICKET_FACTS].rows_updated, second[TICKET_FACTS].rows_inserted) == (1, 0)
    assert second[ROUTING_DECISIONS].rows_inserted == 0
    assert second[SLA_EVENTS].rows_inserted == 0
    tickets = current(tmp_path, TICKET_FACTS)
    assert [(r["ticket_id"], r["version"], r["status"]) for r in tickets] == [
        (1, 20, "solved"),
        (2, 11, "open"),  # the older copy did not win
        (3, 13, "open"),
    ]

    # Time travel: the version before the second publish still shows ticket 1 pending.
    table = DeltaTable(str(current_path(tmp_path, TICKET_FACTS)))
    before = DeltaTable(str(current_path(tmp_path, TICKET_FACTS)), version=table.version() - 1)
    assert {r["ticket_id"]: r["status"] for r in before.to_pyarrow_table().to_pylist()}[
        1
    ] == "pending"
    assert watermark(table) is not None

    # Nothing new: no commit.
    again = {r.table: r for r in publish_current(tmp_path)}
    assert again[TICKET_FACTS].delta_version == table.version()


def test_duckdb_reads_the_current_state_with_its_delta_extension(tmp_path: Path) -> None:
    write(tmp_path, sample_items(), datetime.now(UTC))
    write(tmp_path, [make_ticket(1, 30, status="closed")], datetime.now(UTC))
    publish_current(tmp_path)
    con = duckdb.connect()
    duckdb_extensions.import_extension("delta", con=con)  # from the PyPI package, no download
    path = current_path(tmp_path, TICKET_FACTS)
    rows = con.execute(
        "SELECT ticket_id, status, count(*) OVER (PARTITION BY ticket_id) AS copies "
        "FROM delta_scan(?) ORDER BY ticket_id",
        [str(path)],
    ).fetchall()
    assert rows == [(1, "closed", 1), (2, "open", 1), (3, "open", 1)]


def test_optimize_compacts_files_and_keeps_the_current_state(tmp_path: Path) -> None:
    t0 = datetime.now(UTC)
    for n in range(4):
        write(tmp_path, [make_ticket(10 + n, 100 + n)], t0 + timedelta(seconds=n))
        publish_current(tmp_path)
    table = DeltaTable(str(current_path(tmp_path, TICKET_FACTS)))
    files_before = len(table.file_uris())
    assert files_before >= 4
    lines = optimize_current(tmp_path, keep=timedelta(0))
    assert any(line.startswith(TICKET_FACTS) for line in lines)
    after = DeltaTable(str(current_path(tmp_path, TICKET_FACTS)))
    assert len(after.file_uris()) < files_before
    assert sorted(r["ticket_id"] for r in after.to_pyarrow_table().to_pylist()) == [10, 11, 12, 13]
