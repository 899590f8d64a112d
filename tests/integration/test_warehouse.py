"""WarehouseSink: hive-partitioned Parquet readable by DuckDB, PII masking, compaction, a flow."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import bytewax.operators as op
import duckdb
import pytest
from bytewax.dataflow import Dataflow, Stream
from bytewax.testing import TestingSource, cluster_main, run_main

from models.events import DeadLetter, SourcePosition
from models.helpdesk import EnrichedTicket, RoutingDecision, Ticket
from models.intelligence import ModelMetric
from models.pii import mask_pii
from models.sla import SlaEvent
from sinks.warehouse import (
    EMAIL_TOKEN,
    MODEL_METRICS,
    PHONE_TOKEN,
    ROUTING_DECISIONS,
    SLA_EVENTS,
    TABLES,
    TICKET_FACTS,
    WarehouseItem,
    WarehouseSink,
    batch_to_frames,
    compact,
    partition_dir,
    read_table,
    write_frames,
)
from tests.factories import routing_decision, sla_event

pytestmark = pytest.mark.integration

DAY1 = datetime(2025, 3, 1, 9, 30, tzinfo=UTC)
DAY2 = datetime(2025, 3, 2, 23, 59, tzinfo=UTC)
PII_TEXT = "Call +1 555 123 4567 or write to jane.doe@example.com about order 88231 (2025-03-01)."


def make_ticket(
    ticket_id: int, version: int, *, created: datetime = DAY1, status: str = "open"
) -> EnrichedTicket:
    ticket = Ticket(
        id=ticket_id,
        customer_id=40 + ticket_id,
        subject=f"Refund for jane.doe@example.com #{ticket_id}",
        description=PII_TEXT,
        channel="email",
        status=status,
        priority=None,
        category=None,
        intent=None,
        assigned_agent_id=3,
        created_at=created,
        updated_at=created + timedelta(seconds=version),
        first_reply_at=None,
        solved_at=None,
        csat=None,
        version=version,
    )
    return EnrichedTicket(
        ticket=ticket,
        op="u",
        committed_at=created + timedelta(seconds=version),
        customer_tier="premium",
        customer_language="en",
        language="en",
        language_confidence=0.9,
        priority="high",
        priority_reasons=("tier:premium",),
        category="billing",
        queue="billing",
        enriched_at=created + timedelta(seconds=version, milliseconds=3),
    )


def make_decision(ticket_id: int, version: int, *, committed: datetime = DAY1) -> RoutingDecision:
    return routing_decision(ticket_id, version, at=committed, extra={"rank": 1, "at": committed})


def make_sla_event(ticket_id: int, kind: str = "apply") -> SlaEvent:
    return sla_event(ticket_id, kind, at=DAY1, policy="premium")


def make_metric(n_seen: int) -> ModelMetric:
    return ModelMetric(
        model="category",
        version="v1",
        at=DAY2,
        n_seen=n_seen,
        accuracy=0.8,
        weighted_f1=0.75,
        drift_detected=0,
    )


def sample_items() -> list[WarehouseItem]:
    return [
        make_ticket(1, 10),
        make_ticket(1, 12, status="pending"),
        make_ticket(2, 11),
        make_ticket(3, 13, created=DAY2),
        make_decision(1, 10),
        make_decision(1, 12),
        make_decision(3, 13, committed=DAY2),
        make_sla_event(1),
        make_sla_event(1, "pause"),
        make_metric(100),
    ]


def parquet_glob(root: Path, table: str) -> str:
    return f"{root}/{table}/*/*.parquet"


def duck(query: str, glob: str) -> list[tuple[Any, ...]]:
    """Run ``query``, whose ``$files`` is the glob, on a fresh in-memory DuckDB."""
    with duckdb.connect() as con:
        return con.execute(query, {"files": glob}).fetchall()


class TestMaskPii:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("mail ana.b+x@mail.example.co.uk now", f"mail {EMAIL_TOKEN} now"),
            ("call +49 30 123 4567.", f"call {PHONE_TOKEN}."),
            ("call (555) 123-4567 today", f"call {PHONE_TOKEN} today"),
            ("call 030.1234.5678", f"call {PHONE_TOKEN}"),
            (
                "order 88231 on 2025-03-01 and 01.03.2025",
                "order 88231 on 2025-03-01 and 01.03.2025",
            ),
            ("version 2.1.0, 15 users", "version 2.1.0, 15 users"),
            ("ref 88231 (2025-03-01) at 10:37", "ref 88231 (2025-03-01) at 10:37"),
            ("+4930123456 or 555-123-4567", f"{PHONE_TOKEN} or {PHONE_TOKEN}"),
        ],
    )
    def test_masks_emails_and_phones_only(self, text: str, expected: str) -> None:
        assert mask_pii(text) == expected


class TestFrames:
    def test_one_frame_per_table_with_partition_day(self) -> None:
        frames = batch_to_frames(sample_items())
        assert set(frames) == set(TABLES)
        facts = frames[TICKET_FACTS]
        # Within a batch only the newest version of a ticket is kept.
        assert facts.select("ticket_id", "version").rows() == [(1, 12), (2, 11), (3, 13)]
        assert facts["date"].to_list() == [date(2025, 3, 1), date(2025, 3, 1), date(2025, 3, 2)]
        assert frames[ROUTING_DECISIONS].height == 3
        assert frames[SLA_EVENTS].height == 2
        assert frames[MODEL_METRICS]["date"].to_list() == [date(2025, 3, 2)]

    def test_rejects_other_items(self) -> None:
        dead = DeadLetter(
            stage="decode",
            reason="bad",
            topic="t",
            key=None,
            payload="{}",
            position=SourcePosition(lsn=1),
            failed_at=DAY1,
        )
        with pytest.raises(TypeError, match="DeadLetter"):
            batch_to_frames([dead])  # type: ignore[list-item]


class TestFiles:
    def test_duckdb_reads_hive_partitions(self, tmp_path: Path) -> None:
        written = write_frames(tmp_path, batch_to_frames(sample_items()), worker=0)
        assert all(p.name.startswith("part-0-") and p.suffix == ".parquet" for p in written)
        assert not list(tmp_path.rglob("*.tmp"))
        assert {p.parent for p in written} >= {
            partition_dir(tmp_path, TICKET_FACTS, "2025-03-01"),
            partition_dir(tmp_path, TICKET_FACTS, "2025-03-02"),
        }
        facts = duck(
            "SELECT ticket_id, version, status, date, priority_reasons, created_at"
            " FROM read_parquet($files, hive_partitioning = true) ORDER BY ticket_id",
            parquet_glob(tmp_path, TICKET_FACTS),
        )
        assert [row[:5] for row in facts] == [
            (1, 12, "pending", date(2025, 3, 1), ["tier:premium"]),
            (2, 11, "open", date(2025, 3, 1), ["tier:premium"]),
            (3, 13, "open", date(2025, 3, 2), ["tier:premium"]),
        ]
        assert facts[2][5] == DAY2
        per_day = duck(
            "SELECT date, count(*) FROM read_parquet($files, hive_partitioning = true)"
            " GROUP BY date ORDER BY date",
            parquet_glob(tmp_path, ROUTING_DECISIONS),
        )
        assert per_day == [(date(2025, 3, 1), 2), (date(2025, 3, 2), 1)]
        extra = duck(
            "SELECT extra FROM read_parquet($files, hive_partitioning = true) WHERE ticket_id = 3",
            parquet_glob(tmp_path, ROUTING_DECISIONS),
        )
        assert len(extra) == 1 and '"rank": 1' in extra[0][0]
        assert read_table(tmp_path, SLA_EVENTS)["kind"].sort().to_list() == ["apply", "pause"]
        assert read_table(tmp_path, MODEL_METRICS).height == 1

    def test_pii_masked_by_default(self, tmp_path: Path) -> None:
        write_frames(tmp_path / "masked", batch_to_frames([make_ticket(1, 1)]))
        write_frames(tmp_path / "raw", batch_to_frames([make_ticket(1, 1)], allow_pii=True))
        masked = duck(
            "SELECT subject, description FROM read_parquet($files, hive_partitioning = true)",
            parquet_glob(tmp_path / "masked", TICKET_FACTS),
        )
        assert masked == [
            (
                f"Refund for {EMAIL_TOKEN} #1",
                f"Call {PHONE_TOKEN} or write to {EMAIL_TOKEN} about order 88231 (2025-03-01).",
            )
        ]
        raw = read_table(tmp_path / "raw", TICKET_FACTS)
        assert raw["description"].to_list() == [PII_TEXT]
        files = list((tmp_path / "masked").rglob("*.parquet"))
        assert not any(b"example.com" in f.read_bytes() for f in files)

    def test_read_table_of_an_empty_warehouse(self, tmp_path: Path) -> None:
        frame = read_table(tmp_path, TICKET_FACTS)
        assert frame.is_empty()
        assert frame.columns == [*TABLES[TICKET_FACTS].schema, "date"]


class TestCompaction:
    def test_removes_replays_and_keeps_newest_version(self, tmp_path: Path) -> None:
        first: list[WarehouseItem] = [make_ticket(1, 10), make_ticket(2, 11), make_decision(1, 10)]
        write_frames(tmp_path, batch_to_frames(first), worker=0)
        # A replay after recovery writes the same rows again, from another worker.
        write_frames(tmp_path, batch_to_frames(first), worker=1)
        write_frames(tmp_path, batch_to_frames([make_ticket(1, 12, status="solved")]), worker=0)
        # An older version arriving late must not win.
        write_frames(tmp_path, batch_to_frames([make_ticket(2, 5, status="new")]), worker=1)
        glob = parquet_glob(tmp_path, TICKET_FACTS)
        query = "SELECT ticket_id, version, status FROM read_parquet($files) ORDER BY 1, 2"
        assert len(duck(query, glob)) == 6

        result = compact(tmp_path, TICKET_FACTS, date(2025, 3, 1))

        assert (result.files_before, result.rows_before, result.rows_after) == (4, 6, 2)
        assert duck(query, glob) == [(1, 12, "solved"), (2, 11, "open")]
        day = partition_dir(tmp_path, TICKET_FACTS, "2025-03-01")
        assert [p.name for p in day.iterdir()] == [result.path.name if result.path else ""]
        decisions = compact(tmp_path, ROUTING_DECISIONS, "2025-03-01")
        assert (decisions.rows_before, decisions.rows_after) == (2, 1)
        # Compacting again changes nothing; an empty partition is fine.
        again = compact(tmp_path, TICKET_FACTS, "2025-03-01")
        assert (again.files_before, again.rows_after) == (1, 2)
        assert compact(tmp_path, TICKET_FACTS, "2030-01-01").path is None

    def test_read_table_applies_the_same_rule_before_compaction(self, tmp_path: Path) -> None:
        items = sample_items()
        for worker in (0, 1):
            write_frames(tmp_path, batch_to_frames(items), worker=worker)
        raw = read_table(tmp_path, TICKET_FACTS, latest=False)
        latest = read_table(tmp_path, TICKET_FACTS)
        assert raw.height == 6
        assert sorted(latest.select("ticket_id", "version").rows()) == [(1, 12), (2, 11), (3, 13)]


def _flow(items: list[WarehouseItem], root: Path) -> Dataflow:
    flow = Dataflow("warehouse_sink_test")
    stream: Stream[WarehouseItem] = op.input("read_items", flow, TestingSource(items, batch_size=4))
    op.output("write_warehouse", stream, WarehouseSink(root))
    return flow


def _versions() -> list[tuple[int, int]]:
    return [(i, 100 + i) for i in range(1, 31)]


class TestDataflow:
    def test_run_main_replay_and_compaction(self, tmp_path: Path) -> None:
        items: list[WarehouseItem] = []
        for ticket_id in range(1, 31):
            created = DAY1 if ticket_id % 2 else DAY2
            for version in (ticket_id, 100 + ticket_id):
                items.append(make_ticket(ticket_id, version, created=created))
                items.append(make_decision(ticket_id, version, committed=created))
        items.append(make_metric(10))
        root = tmp_path / "warehouse"
        run_main(_flow(items, root))
        # At-least-once redelivery: the whole input again.
        run_main(_flow(items, root))

        facts = read_table(root, TICKET_FACTS)
        assert sorted(facts.select("ticket_id", "version").rows()) == _versions()
        assert read_table(root, TICKET_FACTS, latest=False).height > facts.height
        assert read_table(root, ROUTING_DECISIONS).height == 60
        assert facts["description"].str.contains("example.com").sum() == 0

        for table in (TICKET_FACTS, ROUTING_DECISIONS, MODEL_METRICS):
            for day in ("2025-03-01", "2025-03-02"):
                compact(root, table, day)
        count = duck(
            "SELECT count(*), count(DISTINCT ticket_id), max(version)"
            " FROM read_parquet($files, hive_partitioning = true)",
            parquet_glob(root, TICKET_FACTS),
        )
        assert count == [(30, 30, 130)]
        assert read_table(root, MODEL_METRICS, latest=False).height == 1

    def test_two_workers_give_the_same_result(self, tmp_path: Path) -> None:
        items: list[WarehouseItem] = [
            replace(make_ticket(i, 100 + i), op="c") for i in range(1, 31)
        ]
        cluster_main(_flow(items, tmp_path), [], 0, worker_count_per_proc=2)
        facts = read_table(tmp_path, TICKET_FACTS)
        assert sorted(facts.select("ticket_id", "version").rows()) == _versions()


def test_frames_built_through_arrow_equal_polars_own_constructor() -> None:
    from datetime import timezone

    import polars as pl

    from sinks import warehouse

    berlin = timezone(timedelta(hours=2))
    odd = replace(
        make_ticket(7, 20),
        priority_reasons=(),  # an empty list
        categories=("billing", "refunds"),
        committed_at=datetime(2025, 3, 1, 11, 30, tzinfo=berlin),  # not in UTC
        organization="Ünïcode GmbH",
        sentiment=None,
    )
    records = {
        TICKET_FACTS: [warehouse.ticket_fact_record(t) for t in (*sample_items()[:4], odd)],
        ROUTING_DECISIONS: [warehouse.routing_decision_record(d) for d in sample_items()[4:7]],
        SLA_EVENTS: [warehouse.sla_event_record(e) for e in sample_items()[7:9]],
        MODEL_METRICS: [warehouse.model_metric_record(make_metric(100))],
    }
    for table, rows in records.items():
        rows = [{**row, "written_at": DAY2} for row in rows]
        columns = {name: [row[name] for row in rows] for name in TABLES[table].schema}
        expected = pl.DataFrame(columns, schema=dict(TABLES[table].schema))
        assert warehouse._frame(table, columns).equals(expected), table
    frames = batch_to_frames([*sample_items(), odd], written_at=DAY2)
    facts = frames[TICKET_FACTS].filter(pl.col("ticket_id") == 7).row(0, named=True)
    assert facts["source_committed_at"] == datetime(2025, 3, 1, 9, 30, tzinfo=UTC)
    assert facts["priority_reasons"] == [] and facts["organization"] == "Ünïcode GmbH"
    # Values Arrow refuses take polars' constructor, which decides as it always did.
    bad = {name: [None] for name in TABLES[SLA_EVENTS].schema}
    bad["ticket_id"] = ["not a number"]
    with pytest.raises((TypeError, pl.exceptions.PolarsError)):
        warehouse._frame(SLA_EVENTS, bad)


def test_warm_up_takes_the_first_conversion_costs_before_the_first_item() -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from sinks import warehouse\n"
        "from tests.integration.test_warehouse import sample_items\n"
        "warehouse.warm_up()\n"
        "before = set(sys.modules)\n"
        "warehouse.batch_to_frames(sample_items())\n"
        "print(sorted(m for m in set(sys.modules) - before if m.split('.')[0] != 'tests'))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    # Nothing is imported on the way of the first batch (pyarrow imports pandas at its
    # first conversion, 0.3 s, which warm_up takes at start-up).
    assert done.stdout.strip() == "[]", done.stdout
