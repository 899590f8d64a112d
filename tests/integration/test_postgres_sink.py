"""PostgresSink against a real private PostgreSQL: upserts, replays, dead letters, a flow."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import bytewax.operators as op
import psycopg
import pytest
from bytewax.dataflow import Dataflow, Stream
from bytewax.testing import TestingSource, cluster_main, run_main

from models.events import DeadLetter, SourcePosition
from models.helpdesk import EnrichedTicket, RoutingDecision, Ticket
from sinks.migrations import MigrationError, apply_migrations
from sinks.postgres import AnalyticsItem, PostgresSink, _PostgresPartition

pytestmark = pytest.mark.integration

ANALYTICS_SQL = Path(__file__).resolve().parents[2] / "sql" / "analytics"
T0 = datetime(2025, 3, 1, 9, 30, tzinfo=UTC)


def make_enriched(
    ticket_id: int, version: int, *, status: str = "open", op_code: str = "u"
) -> EnrichedTicket:
    ticket = Ticket(
        id=ticket_id,
        customer_id=7,
        subject=f"Ticket {ticket_id}",
        description="Charged twice",
        channel="email",
        status=status,
        priority=None,
        category=None,
        intent=None,
        assigned_agent_id=3,
        created_at=T0,
        updated_at=T0 + timedelta(seconds=version),
        first_reply_at=None,
        solved_at=None,
        csat=None,
        version=version,
    )
    return EnrichedTicket(
        ticket=ticket,
        op=op_code,
        committed_at=T0 + timedelta(seconds=version),
        customer_tier="premium",
        customer_language="en",
        language="en",
        language_confidence=0.9,
        priority="high",
        priority_reasons=("tier:premium",),
        category="billing",
        queue="billing",
        enriched_at=T0 + timedelta(seconds=version, milliseconds=3),
    )


def make_decision(
    ticket_id: int,
    version: int,
    *,
    agent_id: int | None = 3,
    status: str = "assigned",
) -> RoutingDecision:
    return RoutingDecision(
        ticket_id=ticket_id,
        version=version,
        queue="billing",
        status=status,  # type: ignore[arg-type]
        agent_id=agent_id,
        score=0.8,
        confidence=0.6,
        reasons=("skills:billing", "capacity"),
        priority="high",
        sla_deadline=T0 + timedelta(hours=4),
        model_version="router-1",
        decided_at=T0 + timedelta(seconds=version, milliseconds=5),
        source_committed_at=T0 + timedelta(seconds=version),
        candidates=3,
        extra={"rank": 1},
    )


def make_dead_letter(position: SourcePosition, payload: str = "{bad json") -> DeadLetter:
    return DeadLetter(
        stage="decode_cdc",
        reason="not JSON",
        topic="triage.public.tickets",
        key="1",
        payload=payload,
        position=position,
        failed_at=T0,
    )


@pytest.fixture
def analytics_dsn(pg_dsn: str) -> str:
    apply_migrations(pg_dsn, ANALYTICS_SQL)
    return pg_dsn


@pytest.fixture
def partition(analytics_dsn: str) -> Any:
    part = PostgresSink(analytics_dsn, backoff_initial=0.01, max_retries=5).build("out", 0, 1)
    yield part
    part.close()


def query(dsn: str, text: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(text.encode(), params).fetchall()


def counts(dsn: str) -> dict[str, int]:
    tables = ["ticket_facts", "routing_decisions", "routing_decision_history", "dead_letters"]
    return {t: query(dsn, f"SELECT count(*) FROM analytics.{t}")[0][0] for t in tables}  # noqa: S608


class TestMigrations:
    def test_second_run_applies_nothing_and_records_checksum(self, pg_dsn: str) -> None:
        assert apply_migrations(pg_dsn, ANALYTICS_SQL) == ["001_core"]
        assert apply_migrations(pg_dsn, ANALYTICS_SQL) == []
        rows = query(pg_dsn, "SELECT version, length(checksum) FROM analytics.schema_migrations")
        assert rows == [("001_core", 64)]

    def test_edited_migration_is_refused(self, pg_dsn: str, tmp_path: Path) -> None:
        (tmp_path / "001_t.sql").write_text("CREATE TABLE IF NOT EXISTS public.m (a int);")
        apply_migrations(pg_dsn, tmp_path, schema="public", table="source_migrations")
        (tmp_path / "001_t.sql").write_text("CREATE TABLE IF NOT EXISTS public.m (b int);")
        with pytest.raises(MigrationError, match="changed after it was applied"):
            apply_migrations(pg_dsn, tmp_path, schema="public", table="source_migrations")

    def test_failed_migration_is_rolled_back_and_retried(self, pg_dsn: str, tmp_path: Path) -> None:
        (tmp_path / "001_ok.sql").write_text("CREATE TABLE public.a (x int);")
        (tmp_path / "002_bad.sql").write_text("CREATE TABLE public.b (x int); SELECT 1/0;")
        with pytest.raises(psycopg.errors.DivisionByZero):
            apply_migrations(pg_dsn, tmp_path, schema="public", table="mig")
        assert query(pg_dsn, "SELECT to_regclass('public.b')") == [(None,)]
        (tmp_path / "002_bad.sql").write_text("CREATE TABLE public.b (x int);")
        assert apply_migrations(pg_dsn, tmp_path, schema="public", table="mig") == ["002_bad"]


class TestPartition:
    def test_missing_schema_fails_at_build(self, pg_dsn: str) -> None:
        with pytest.raises(RuntimeError, match="apply the analytics migrations"):
            PostgresSink(pg_dsn).build("out", 0, 1)

    def test_writes_every_table(self, partition: _PostgresPartition, analytics_dsn: str) -> None:
        partition.write_batch(
            [
                make_enriched(1, 10),
                make_decision(1, 10),
                make_dead_letter(SourcePosition(lsn=10)),
            ]
        )
        assert counts(analytics_dsn) == {
            "ticket_facts": 1,
            "routing_decisions": 1,
            "routing_decision_history": 1,
            "dead_letters": 1,
        }
        fact = query(
            analytics_dsn,
            "SELECT priority_reasons, language_confidence, deleted, source_committed_at"
            " FROM analytics.ticket_facts WHERE ticket_id = 1",
        )
        assert fact == [(["tier:premium"], pytest.approx(0.9), False, T0 + timedelta(seconds=10))]
        decision = query(
            analytics_dsn,
            "SELECT agent_id, reasons, extra FROM analytics.routing_decisions WHERE ticket_id = 1",
        )
        assert decision == [(3, ["skills:billing", "capacity"], {"rank": 1})]

    def test_replaying_a_batch_changes_nothing(
        self, partition: _PostgresPartition, analytics_dsn: str
    ) -> None:
        batch: list[AnalyticsItem] = [
            *(make_enriched(i, 100 + i) for i in range(50)),
            *(make_decision(i, 100 + i) for i in range(50)),
            make_dead_letter(SourcePosition(lsn=7)),
            make_dead_letter(SourcePosition(topic="triage.public.tickets", partition=1, offset=3)),
            make_dead_letter(SourcePosition()),
        ]
        partition.write_batch(batch)
        before = counts(analytics_dsn)
        snapshot = query(analytics_dsn, "SELECT * FROM analytics.ticket_facts ORDER BY ticket_id")
        partition.write_batch(batch)
        assert (
            counts(analytics_dsn)
            == before
            == {
                "ticket_facts": 50,
                "routing_decisions": 50,
                "routing_decision_history": 50,
                "dead_letters": 3,
            }
        )
        assert query(analytics_dsn, "SELECT * FROM analytics.ticket_facts ORDER BY ticket_id") == (
            snapshot
        )

    def test_older_version_never_overwrites_newer(
        self, partition: _PostgresPartition, analytics_dsn: str
    ) -> None:
        partition.write_batch([make_enriched(1, 20, status="pending"), make_decision(1, 20)])
        partition.write_batch(
            [make_enriched(1, 10, status="new"), make_decision(1, 10, agent_id=99)]
        )
        assert query(analytics_dsn, "SELECT version, status FROM analytics.ticket_facts") == [
            (20, "pending")
        ]
        assert query(
            analytics_dsn, "SELECT version, agent_id FROM analytics.routing_decisions"
        ) == [(20, 3)]
        # The stale decision is still a decision that was made: history keeps it.
        assert query(
            analytics_dsn,
            "SELECT version FROM analytics.routing_decision_history ORDER BY version",
        ) == [(10,), (20,)]

    def test_newer_version_updates_and_delete_marks_row(
        self, partition: _PostgresPartition, analytics_dsn: str
    ) -> None:
        partition.write_batch([make_enriched(1, 10)])
        partition.write_batch([make_enriched(1, 30, status="solved", op_code="d")])
        assert query(
            analytics_dsn, "SELECT version, status, deleted FROM analytics.ticket_facts"
        ) == [(30, "solved", True)]

    def test_same_key_twice_in_one_batch_keeps_newest(
        self, partition: _PostgresPartition, analytics_dsn: str
    ) -> None:
        partition.write_batch(
            [make_decision(1, 30, agent_id=5), make_decision(1, 10), make_decision(1, 20)]
        )
        assert query(
            analytics_dsn, "SELECT version, agent_id FROM analytics.routing_decisions"
        ) == [(30, 5)]
        assert counts(analytics_dsn)["routing_decision_history"] == 3

    def test_dead_letter_same_position_other_stage_is_kept(
        self, partition: _PostgresPartition, analytics_dsn: str
    ) -> None:
        letter = make_dead_letter(SourcePosition(lsn=5))
        partition.write_batch([letter, letter, replace(letter, stage="enrich_ticket")])
        rows = query(
            analytics_dsn, "SELECT stage, position_key FROM analytics.dead_letters ORDER BY stage"
        )
        assert rows == [("decode_cdc", "lsn:5"), ("enrich_ticket", "lsn:5")]

    def test_dead_letters_without_position_differ_by_payload(
        self, partition: _PostgresPartition, analytics_dsn: str
    ) -> None:
        partition.write_batch(
            [make_dead_letter(SourcePosition(), "a"), make_dead_letter(SourcePosition(), "b")]
        )
        partition.write_batch([make_dead_letter(SourcePosition(), "a")])
        assert counts(analytics_dsn)["dead_letters"] == 2

    def test_connection_loss_is_retried_on_a_new_connection(
        self, partition: _PostgresPartition, analytics_dsn: str
    ) -> None:
        conn = partition._conn
        assert conn is not None
        pid = conn.info.backend_pid
        query(analytics_dsn, "SELECT pg_terminate_backend(%s)", (pid,))
        partition.write_batch([make_enriched(1, 10)])
        assert counts(analytics_dsn)["ticket_facts"] == 1
        assert partition._conn is not None
        assert partition._conn.info.backend_pid != pid


def _flow(items: list[AnalyticsItem], dsn: str) -> Dataflow:
    flow = Dataflow("analytics_sink_test")
    stream: Stream[AnalyticsItem] = op.input("read_items", flow, TestingSource(items, batch_size=7))
    op.output("write_analytics", stream, PostgresSink(dsn))
    return flow


class TestDataflow:
    def test_run_main_writes_and_replay_is_harmless(self, analytics_dsn: str) -> None:
        items: list[AnalyticsItem] = []
        for version in (1, 2, 3):
            for ticket_id in range(1, 21):
                items.append(make_enriched(ticket_id, version * 100 + ticket_id))
                items.append(make_decision(ticket_id, version * 100 + ticket_id))
        items.append(make_dead_letter(SourcePosition(lsn=1)))
        run_main(_flow(items, analytics_dsn))
        expected = {
            "ticket_facts": 20,
            "routing_decisions": 20,
            "routing_decision_history": 60,
            "dead_letters": 1,
        }
        assert counts(analytics_dsn) == expected
        # At-least-once redelivery: running the whole input again changes nothing.
        run_main(_flow(items, analytics_dsn))
        assert counts(analytics_dsn) == expected
        assert query(
            analytics_dsn, "SELECT min(version), max(version) FROM analytics.ticket_facts"
        ) == [(301, 320)]

    def test_two_workers_give_the_same_result(self, analytics_dsn: str) -> None:
        items: list[AnalyticsItem] = [make_enriched(i, 10 + i) for i in range(1, 41)]
        cluster_main(_flow(items, analytics_dsn), [], 0, worker_count_per_proc=2)
        assert counts(analytics_dsn)["ticket_facts"] == 40
