"""PostgresSink against a real private PostgreSQL: upserts, replays, dead letters, a flow."""

from __future__ import annotations

import shutil
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import bytewax.operators as op
import psycopg
import pytest
from bytewax.dataflow import Dataflow, Stream
from bytewax.testing import TestingSource, cluster_main, run_main
from psycopg import sql

from models.events import DeadLetter, SourcePosition
from models.helpdesk import EnrichedTicket, RoutingDecision, Ticket
from models.intelligence import ModelMetric
from models.signals import BreachRiskScore
from models.sla import SlaEvent
from sinks.migrations import MigrationError, apply_migrations
from sinks.postgres import AnalyticsItem, PostgresSink, _PostgresPartition
from sinks.retry import RetryPolicy
from tests.factories import breach_risk, routing_decision, sla_event

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
    return routing_decision(
        ticket_id,
        version,
        at=T0 + timedelta(seconds=version),
        agent_id=agent_id,
        status=status,
        sla_deadline=T0 + timedelta(hours=4),
        extra={"rank": 1},
    )


def make_sla_event(
    ticket_id: int,
    kind: str,
    at_s: float,
    *,
    metric: str = "first_reply",
    deadline_s: float | None = 3600,
    breached: bool = False,
) -> SlaEvent:
    return sla_event(
        ticket_id,
        kind,
        at=T0 + timedelta(seconds=at_s),
        metric=metric,
        breached=breached,
        deadline=None if deadline_s is None else T0 + timedelta(seconds=deadline_s),
        business_seconds_elapsed=at_s,
    )


def make_risk(ticket_id: int, version: int, risk: float) -> BreachRiskScore:
    return breach_risk(ticket_id, version, risk, at=T0 + timedelta(seconds=version))


def make_metric(n_seen: int, accuracy: float = 0.8) -> ModelMetric:
    return ModelMetric(
        model="category",
        version="arow-1",
        at=T0 + timedelta(seconds=n_seen),
        n_seen=n_seen,
        accuracy=accuracy,
        weighted_f1=0.75,
        drift_detected=1,
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
    part = PostgresSink(analytics_dsn, retry=RetryPolicy(initial_delay=0.01, max_retries=5)).build(
        "out", 0, 1
    )
    yield part
    part.close()


def query(dsn: str, text: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(text.encode(), params).fetchall()


def counts(dsn: str, tables: tuple[str, ...] = ()) -> dict[str, int]:
    names = tables or (
        "ticket_facts",
        "routing_decisions",
        "routing_decision_history",
        "dead_letters",
    )
    with psycopg.connect(dsn) as conn:
        return {
            t: conn.execute(
                sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier("analytics", t))
            ).fetchone()[0]  # type: ignore[index]
            for t in names
        }


def clocks(dsn: str) -> list[tuple[Any, ...]]:
    return query(
        dsn,
        "SELECT ticket_id, metric, kind, state, updated_at FROM analytics.ticket_sla"
        " ORDER BY ticket_id, metric",
    )


class TestMigrations:
    def test_second_run_applies_nothing_and_records_checksum(self, pg_dsn: str) -> None:
        expected = sorted(p.stem for p in ANALYTICS_SQL.glob("*.sql"))
        assert expected[:2] == ["001_core", "002_intelligence"]
        assert apply_migrations(pg_dsn, ANALYTICS_SQL) == expected
        assert apply_migrations(pg_dsn, ANALYTICS_SQL) == []
        rows = query(
            pg_dsn,
            "SELECT version, length(checksum) FROM analytics.schema_migrations ORDER BY version",
        )
        assert rows == [(v, 64) for v in expected]

    def test_intelligence_migration_upgrades_existing_facts(
        self, pg_dsn: str, tmp_path: Path
    ) -> None:
        shutil.copy(ANALYTICS_SQL / "001_core.sql", tmp_path / "001_core.sql")
        apply_migrations(pg_dsn, tmp_path)
        query(
            pg_dsn,
            "INSERT INTO analytics.ticket_facts (ticket_id, version, customer_id, customer_tier,"
            " channel, status, priority, category, queue, language, language_confidence,"
            " subject, created_at, source_committed_at, enriched_at) VALUES (1, 1, 1,"
            " 'standard', 'email', 'new', 'normal', 'general', 'general', 'en', 1, 's',"
            " now(), now(), now()) RETURNING ticket_id",
        )
        later = sorted(p.stem for p in ANALYTICS_SQL.glob("*.sql") if p.stem != "001_core")
        assert apply_migrations(pg_dsn, ANALYTICS_SQL) == later
        assert query(
            pg_dsn,
            "SELECT region, sentiment, duplicates, model_versions, sla_breached"
            " FROM analytics.ticket_facts",
        ) == [("us", None, [], {}, False)]

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
        pid = partition._writer.backend_pid
        assert pid is not None
        query(analytics_dsn, "SELECT pg_terminate_backend(%s)", (pid,))
        partition.write_batch([make_enriched(1, 10)])
        assert counts(analytics_dsn)["ticket_facts"] == 1
        assert partition._writer.backend_pid not in (None, pid)


class TestIntelligence:
    def test_enrichment_fields_land_in_ticket_facts(
        self, partition: _PostgresPartition, analytics_dsn: str
    ) -> None:
        item = replace(
            make_enriched(1, 10),
            organization="Acme",
            region="eu",
            sentiment=-0.5,
            sentiment_label="negative",
            sentiment_confidence=0.8,
            intent="refund",
            intent_confidence=0.7,
            intent_source="model",
            category_confidence=0.9,
            category_source="model",
            category_suggestion="billing",
            duplicates=((7, 0.92), (3, 0.81)),
            kb_suggestions=((4, "How refunds work", 0.66),),
            response_suggestion="Sorry about the double charge.",
            first_reply_due=T0 + timedelta(hours=1),
            resolution_due=T0 + timedelta(hours=8),
            sla_policy="premium-high",
            sla_breached=True,
            model_versions=(("category", "arow-2"), ("intent", "arow-3")),
        )
        partition.write_batch([item])
        row = query(
            analytics_dsn,
            "SELECT organization, region, sentiment, sentiment_label, intent, intent_source,"
            " category_source, category_suggestion, duplicates, kb_suggestions,"
            " response_suggestion, first_reply_due, resolution_due, sla_policy, sla_breached,"
            " model_versions FROM analytics.ticket_facts WHERE ticket_id = 1",
        )
        assert row == [
            (
                "Acme",
                "eu",
                pytest.approx(-0.5),
                "negative",
                "refund",
                "model",
                "model",
                "billing",
                [{"ticket_id": 7, "similarity": 0.92}, {"ticket_id": 3, "similarity": 0.81}],
                [{"article_id": 4, "title": "How refunds work", "score": 0.66}],
                "Sorry about the double charge.",
                T0 + timedelta(hours=1),
                T0 + timedelta(hours=8),
                "premium-high",
                True,
                {"category": "arow-2", "intent": "arow-3"},
            )
        ]

    def test_sla_events_are_idempotent_on_replay(
        self, partition: _PostgresPartition, analytics_dsn: str
    ) -> None:
        batch: list[AnalyticsItem] = [
            make_sla_event(1, "apply", 0),
            make_sla_event(1, "apply", 0, metric="resolution", deadline_s=28800),
            make_sla_event(1, "breach", 3600, breached=True),
            make_sla_event(1, "fulfill", 4000, deadline_s=None, breached=True),
        ]
        partition.write_batch(batch)
        tables = ("sla_events", "ticket_sla")
        before = query(analytics_dsn, "SELECT * FROM analytics.ticket_sla ORDER BY metric")
        partition.write_batch(batch)
        partition.write_batch(batch[:2])
        assert counts(analytics_dsn, tables) == {"sla_events": 4, "ticket_sla": 2}
        assert query(analytics_dsn, "SELECT * FROM analytics.ticket_sla ORDER BY metric") == before
        assert clocks(analytics_dsn) == [
            (1, "first_reply", "fulfill", "fulfilled", T0 + timedelta(seconds=4000)),
            (1, "resolution", "apply", "running", T0),
        ]

    def test_ticket_sla_keeps_the_latest_event(
        self, partition: _PostgresPartition, analytics_dsn: str
    ) -> None:
        partition.write_batch([make_sla_event(1, "pause", 600, deadline_s=None)])
        # Older: logged, but the clock stays as it is.
        partition.write_batch([make_sla_event(1, "apply", 0)])
        assert clocks(analytics_dsn) == [
            (1, "first_reply", "pause", "paused", T0 + timedelta(seconds=600))
        ]
        assert counts(analytics_dsn, ("sla_events",)) == {"sla_events": 2}
        partition.write_batch([make_sla_event(1, "resume", 900, deadline_s=4000)])
        assert clocks(analytics_dsn)[0][2:4] == ("resume", "running")

    def test_same_instant_later_event_wins_and_its_replay_does_not_undo(
        self, partition: _PostgresPartition, analytics_dsn: str
    ) -> None:
        apply, pause = make_sla_event(1, "apply", 0), make_sla_event(1, "pause", 0, deadline_s=None)
        partition.write_batch([apply])
        partition.write_batch([pause])
        assert clocks(analytics_dsn)[0][2:4] == ("pause", "paused")
        partition.write_batch([apply])
        assert clocks(analytics_dsn)[0][2:4] == ("pause", "paused")
        partition.write_batch([apply, pause, apply])
        assert clocks(analytics_dsn)[0][2:4] == ("pause", "paused")

    def test_risk_keeps_the_greatest_version(
        self, partition: _PostgresPartition, analytics_dsn: str
    ) -> None:
        partition.write_batch([make_risk(1, 5, 0.7), make_risk(2, 1, 0.1)])
        partition.write_batch([make_risk(1, 3, 0.2), make_risk(1, 5, 0.3)])
        partition.write_batch([make_risk(2, 2, 0.4)])
        assert query(
            analytics_dsn, "SELECT ticket_id, version, risk FROM analytics.ticket_risk ORDER BY 1"
        ) == [(1, 5, pytest.approx(0.7)), (2, 2, pytest.approx(0.4))]

    def test_model_metrics_insert_once_per_checkpoint(
        self, partition: _PostgresPartition, analytics_dsn: str
    ) -> None:
        partition.write_batch([make_metric(100), make_metric(200, 0.85)])
        partition.write_batch([make_metric(200, 0.1), make_metric(300, 0.9)])
        assert query(
            analytics_dsn,
            "SELECT n_seen, accuracy, drift_detected FROM analytics.model_metrics ORDER BY n_seen",
        ) == [
            (100, pytest.approx(0.8), 1),
            (200, pytest.approx(0.85), 1),
            (300, pytest.approx(0.9), 1),
        ]

    def test_compliance_view(self, partition: _PostgresPartition, analytics_dsn: str) -> None:
        partition.write_batch(
            [
                make_sla_event(1, "fulfill", 100, deadline_s=None),
                make_sla_event(2, "fulfill", 200, deadline_s=None, breached=True),
                make_sla_event(3, "fulfill", 300, deadline_s=None),
                make_sla_event(4, "fulfill", 300, metric="resolution", deadline_s=None),
                make_sla_event(5, "breach", 300, breached=True),
            ]
        )
        rows = query(
            analytics_dsn,
            "SELECT date, metric, fulfilled, breached, compliance"
            " FROM analytics.sla_compliance_daily ORDER BY metric",
        )
        assert [(r[1], r[2], r[3], float(r[4])) for r in rows] == [
            ("first_reply", 2, 1, 0.6667),
            ("resolution", 1, 0, 1.0),
        ]
        assert rows[0][0] == T0.date()


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
