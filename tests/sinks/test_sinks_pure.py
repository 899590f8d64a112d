"""The pure batch → rows / commands functions of the sinks, with nothing running."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from models.anomaly import AnomalyAlert, Driver
from models.burnout import WorkloadScore
from models.codecs import priority_from_score, queue_score, routing_hash
from models.events import DeadLetter, SourcePosition
from models.helpdesk import EnrichedTicket, RoutingDecision, Ticket
from models.intelligence import ModelMetric
from models.signals import BreachRiskScore
from models.sla import SlaEvent
from models.windows import WindowResult
from sinks.migrations import MigrationError, discover_migrations
from sinks.postgres import (
    COLUMNS,
    DEAD_LETTERS,
    MODEL_METRICS,
    ROUTING_DECISION_HISTORY,
    ROUTING_DECISIONS,
    SLA_EVENTS,
    TICKET_FACTS,
    TICKET_RISK,
    TICKET_SLA,
    batch_to_rows,
)
from sinks.redis import (
    decision_to_redis_args,
    item_to_redis_call,
    risk_to_redis_args,
    sla_event_fields,
    sla_event_to_redis_args,
)
from tests.factories import breach_risk, routing_decision, sla_event

T0 = datetime(2025, 3, 1, 9, 30, tzinfo=UTC)


def make_enriched(ticket_id: int = 1, version: int = 100, op: str = "u") -> EnrichedTicket:
    ticket = Ticket(
        id=ticket_id,
        customer_id=7,
        subject="Invoice is wrong",
        description="I was charged twice",
        channel="email",
        status="open",
        priority=None,
        category=None,
        intent=None,
        assigned_agent_id=3,
        created_at=T0,
        updated_at=T0,
        first_reply_at=None,
        solved_at=None,
        csat=None,
        version=version,
    )
    return EnrichedTicket(
        ticket=ticket,
        op=op,
        committed_at=T0,
        customer_tier="premium",
        customer_language="en",
        language="en",
        language_confidence=0.97,
        priority="high",
        priority_reasons=("tier:premium", "keyword:charged"),
        category="billing",
        queue="billing",
        enriched_at=T0 + timedelta(milliseconds=5),
    )


def make_decision(
    ticket_id: int = 1,
    version: int = 100,
    *,
    status: str = "assigned",
    agent_id: int | None = 3,
    priority: str = "high",
) -> RoutingDecision:
    return routing_decision(
        ticket_id,
        version,
        status=status,
        agent_id=agent_id,
        priority=priority,
        score=0.82,
        confidence=0.64,
        decided_at=T0 + timedelta(milliseconds=8),
        candidates=4,
    )


def make_sla_event(
    ticket_id: int = 1,
    metric: str = "first_reply",
    kind: str = "apply",
    at: datetime = T0,
    *,
    deadline: datetime | None = T0 + timedelta(hours=1),
    breached: bool = False,
) -> SlaEvent:
    return sla_event(ticket_id, kind, at=at, metric=metric, deadline=deadline, breached=breached)


def make_risk(ticket_id: int = 1, version: int = 1, risk: float = 0.4) -> BreachRiskScore:
    return breach_risk(ticket_id, version, risk)


def make_metric(model: str = "category", n_seen: int = 100) -> ModelMetric:
    return ModelMetric(
        model=model,
        version="arow-1",
        at=T0,
        n_seen=n_seen,
        accuracy=0.8,
        weighted_f1=0.78,
        drift_detected=0,
    )


def make_dead_letter(lsn: int | None = 42, stage: str = "decode_cdc") -> DeadLetter:
    return DeadLetter(
        stage=stage,
        reason="missing column 'id'",
        topic="triage.public.tickets",
        key='{"id": 1}',
        payload="{}",
        position=SourcePosition(lsn=lsn),
        failed_at=T0,
    )


def make_window() -> WindowResult:
    at = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    counts = {"created": 2, "solved": 0, "reopened": 0, "first_reply": 0, "breach": 0}
    return WindowResult(
        start=at,
        end=at.replace(minute=1),
        dimension="all",
        counts=counts,
        first_reply_p50=None,
        first_reply_p90=None,
        resolution_p50=None,
        resolution_p90=None,
        backlog=2,
        late_merged=0,
        too_late=0,
    )


def make_anomaly() -> AnomalyAlert:
    at = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    return AnomalyAlert(
        series="volume:all",
        start=at,
        observed=30.0,
        expected=5.0,
        score=8.0,
        drivers=(Driver("channel", "chat", 25.0, 1.0, 25.0),),
    )


class TestBatchToRows:
    def test_every_table_present_and_rows_match_columns(self) -> None:
        rows = batch_to_rows(
            [
                make_enriched(),
                make_decision(),
                make_dead_letter(),
                make_sla_event(),
                make_risk(),
                make_metric(),
                make_window(),
                make_anomaly(),
                WorkloadScore(
                    3, "billing", datetime(2026, 3, 2, 9, 0, tzinfo=UTC), 2, 5, 12.5, ("load 40%",)
                ),
            ]
        )
        assert set(rows) == set(COLUMNS)
        for table, table_rows in rows.items():
            assert len(table_rows) == 1
            assert len(table_rows[0]) == len(COLUMNS[table])

    def test_ticket_fact_fields(self) -> None:
        row = dict(
            zip(
                COLUMNS[TICKET_FACTS],
                batch_to_rows([make_enriched()])[TICKET_FACTS][0],
                strict=True,
            )
        )
        assert row["ticket_id"] == 1
        assert row["version"] == 100
        assert row["priority_reasons"] == ["tier:premium", "keyword:charged"]
        assert row["source_committed_at"] == T0
        assert row["deleted"] is False

    def test_intelligence_fields_become_columns_and_json(self) -> None:
        item = replace(
            make_enriched(),
            sentiment=-0.6,
            sentiment_label="negative",
            intent="refund",
            intent_source="model",
            duplicates=((9, 0.93),),
            kb_suggestions=((4, "Refunds", 0.7),),
            first_reply_due=T0 + timedelta(hours=1),
            sla_breached=True,
            model_versions=(("intent", "arow-3"), ("category", "arow-2")),
        )
        row = dict(zip(COLUMNS[TICKET_FACTS], batch_to_rows([item])[TICKET_FACTS][0], strict=True))
        assert (row["sentiment"], row["sentiment_label"]) == (-0.6, "negative")
        assert (row["intent"], row["intent_source"], row["sla_breached"]) == (
            "refund",
            "model",
            True,
        )
        assert row["first_reply_due"] == T0 + timedelta(hours=1)
        assert json.loads(row["duplicates"]) == [{"ticket_id": 9, "similarity": 0.93}]
        assert json.loads(row["kb_suggestions"]) == [
            {"article_id": 4, "title": "Refunds", "score": 0.7}
        ]
        assert json.loads(row["model_versions"]) == {"category": "arow-2", "intent": "arow-3"}

    def test_defaults_give_empty_json(self) -> None:
        row = dict(
            zip(
                COLUMNS[TICKET_FACTS],
                batch_to_rows([make_enriched()])[TICKET_FACTS][0],
                strict=True,
            )
        )
        assert (row["duplicates"], row["kb_suggestions"], row["model_versions"]) == (
            "[]",
            "[]",
            "{}",
        )

    def test_sla_events_dedup_and_latest_clock_per_metric(self) -> None:
        apply = make_sla_event(1, "first_reply", "apply", T0)
        pause = make_sla_event(1, "first_reply", "pause", T0, deadline=None)
        resolution = make_sla_event(1, "resolution", "apply", T0)
        older = make_sla_event(2, "first_reply", "apply", T0 + timedelta(minutes=1))
        rows = batch_to_rows([apply, pause, apply, resolution, older])
        assert [r[:3] for r in rows[SLA_EVENTS]] == [
            (1, "first_reply", "apply"),
            (1, "first_reply", "pause"),
            (1, "resolution", "apply"),
            (2, "first_reply", "apply"),
        ]
        cols = COLUMNS[TICKET_SLA]
        current = [dict(zip(cols, r, strict=True)) for r in rows[TICKET_SLA]]
        # Same instant: the later event wins (apply then pause leaves the clock paused).
        assert [(c["ticket_id"], c["metric"], c["kind"], c["state"]) for c in current] == [
            (1, "first_reply", "pause", "paused"),
            (1, "resolution", "apply", "running"),
            (2, "first_reply", "apply", "running"),
        ]

    def test_ticket_sla_keeps_latest_instant_whatever_the_order(self) -> None:
        later = make_sla_event(1, "first_reply", "fulfill", T0 + timedelta(minutes=5))
        rows = batch_to_rows([later, make_sla_event(1, "first_reply", "apply", T0)])[TICKET_SLA]
        row = dict(zip(COLUMNS[TICKET_SLA], rows[0], strict=True))
        assert (row["kind"], row["state"], row["updated_at"]) == (
            "fulfill",
            "fulfilled",
            T0 + timedelta(minutes=5),
        )

    @pytest.mark.parametrize(
        ("kind", "deadline", "state"),
        [
            ("apply", T0, "running"),
            ("resume", T0, "running"),
            ("breach", T0, "running"),
            ("pause", None, "paused"),
            ("fulfill", None, "fulfilled"),
            ("update", T0, "running"),
            ("update", None, "paused"),
        ],
    )
    def test_clock_state_after_event(
        self, kind: str, deadline: datetime | None, state: str
    ) -> None:
        row = batch_to_rows([make_sla_event(kind=kind, deadline=deadline)])[TICKET_SLA][0]
        assert row[COLUMNS[TICKET_SLA].index("state")] == state

    def test_risk_keeps_greatest_version_and_metrics_one_per_checkpoint(self) -> None:
        rows = batch_to_rows(
            [make_risk(1, 5, 0.9), make_risk(1, 3, 0.1), make_metric(), make_metric()]
        )
        assert [(r[0], r[1], r[3]) for r in rows[TICKET_RISK]] == [(1, 5, 0.9)]
        assert [(r[0], r[3]) for r in rows[MODEL_METRICS]] == [("category", 100)]

    def test_delete_marks_row_deleted(self) -> None:
        row = batch_to_rows([make_enriched(op="d")])[TICKET_FACTS][0]
        assert row[COLUMNS[TICKET_FACTS].index("deleted")] is True

    def test_newest_version_per_ticket_wins_whatever_the_order(self) -> None:
        rows = batch_to_rows(
            [
                make_enriched(1, 300),
                make_enriched(1, 100),
                make_enriched(2, 50),
                make_enriched(1, 200),
            ]
        )[TICKET_FACTS]
        assert [(r[0], r[1]) for r in rows] == [(1, 300), (2, 50)]

    def test_decisions_keep_newest_current_and_every_version_in_history(self) -> None:
        rows = batch_to_rows(
            [make_decision(5, 20), make_decision(5, 10), make_decision(5, 20), make_decision(4, 1)]
        )
        assert [(r[0], r[1]) for r in rows[ROUTING_DECISIONS]] == [(4, 1), (5, 20)]
        assert [(r[0], r[1]) for r in rows[ROUTING_DECISION_HISTORY]] == [(4, 1), (5, 10), (5, 20)]

    def test_extra_is_json_even_for_non_json_values(self) -> None:
        decision = replace(make_decision(), extra={"at": T0, "n": 1})
        row = batch_to_rows([decision])[ROUTING_DECISIONS][0]
        extra = json.loads(row[COLUMNS[ROUTING_DECISIONS].index("extra")])
        assert extra == {"at": str(T0), "n": 1}

    def test_dead_letter_position_columns(self) -> None:
        kafka = replace(
            make_dead_letter(lsn=None),
            position=SourcePosition(topic="triage.public.tickets", partition=2, offset=99),
        )
        rows = batch_to_rows([make_dead_letter(), kafka])[DEAD_LETTERS]
        cols = COLUMNS[DEAD_LETTERS]
        first, second = (dict(zip(cols, r, strict=True)) for r in rows)
        assert first["lsn"] == 42
        assert first["kafka_topic"] is None
        assert (second["kafka_topic"], second["kafka_partition"], second["kafka_offset"]) == (
            "triage.public.tickets",
            2,
            99,
        )

    def test_empty_batch(self) -> None:
        assert all(not rows for rows in batch_to_rows([]).values())

    def test_rejects_other_types(self) -> None:
        with pytest.raises(TypeError, match="str"):
            batch_to_rows(["not an item"])  # type: ignore[list-item]


class TestRedisArgs:
    def test_assigned_targets_agent_queue(self) -> None:
        call = decision_to_redis_args(make_decision(9, 77, agent_id=3), "p")
        assert call.keys == [
            "p:ticket:9:routing",
            "p:agent:3:queue",
            "p:decisions",
            "p:stats",
            "p:agents",
        ]
        templates, ticket, version, status, agent, queue = call.args[:6]
        # The script rebuilds the previous agent's queue and holding keys from the codec's
        # templates: head .. id .. tail.
        (agent_head, agent_tail), (holding_head, holding_tail) = templates
        assert agent_head + "3" + agent_tail == "p:agent:3:queue"
        assert holding_head + "billing" + holding_tail == "p:queue:billing:holding"
        assert (ticket, version, status, agent, queue) == (
            "9",
            "77",
            "assigned",
            "3",
            "billing",
        )

    def test_queued_targets_holding_list(self) -> None:
        call = decision_to_redis_args(make_decision(status="queued", agent_id=None), "p")
        assert call.keys[1] == "p:queue:billing:holding"
        assert call.args[4] == ""

    def test_fields_travel_as_ordered_pairs(self) -> None:
        decision = make_decision()
        call = decision_to_redis_args(decision, "p", stream_maxlen=500, released_ttl=60)
        assert call.args[7:9] == ["500", "60"]
        flat = call.args[9]
        assert dict(zip(flat[::2], flat[1::2], strict=True)) == routing_hash(decision)

    def test_fields_are_strings_with_latency_timestamps(self) -> None:
        fields = routing_hash(make_decision(agent_id=None, status="queued"))
        assert all(isinstance(v, str) for v in fields.values())
        assert fields["agent_id"] == ""
        assert json.loads(fields["reasons"]) == ["skills:billing", "capacity"]
        assert datetime.fromisoformat(fields["source_committed_at"]) == T0
        assert datetime.fromisoformat(fields["decided_at"]) > T0

    def test_assigned_without_agent_is_rejected(self) -> None:
        with pytest.raises(ValueError, match="without an agent"):
            decision_to_redis_args(make_decision(agent_id=None), "p")

    def test_urgent_sorts_before_older_normal(self) -> None:
        older_normal = queue_score("normal", T0)
        newer_urgent = queue_score("urgent", T0 + timedelta(days=300))
        assert newer_urgent < older_normal
        assert queue_score("high", T0) < queue_score("high", T0 + timedelta(seconds=1))

    @pytest.mark.parametrize("priority", ["urgent", "high", "normal", "low"])
    def test_priority_round_trips_through_score(self, priority: str) -> None:
        assert priority_from_score(queue_score(priority, T0)) == priority

    def test_unknown_priority_ranks_as_normal(self) -> None:
        assert queue_score("weird", T0) == queue_score("normal", T0)

    def test_sla_event_call(self) -> None:
        event = make_sla_event(9, "resolution", "breach", T0, breached=True)
        call = sla_event_to_redis_args(event, "p", stream_maxlen=50, sla_ttl=60)
        assert call.op == "sla"
        assert call.keys == ["p:ticket:9:sla", "p:sla", "p:alerts"]
        metric, at_us, kind, maxlen, ttl = call.args[:5]
        assert (metric, kind, maxlen, ttl) == ("resolution", "breach", "50", "60")
        assert int(at_us) == int(T0.timestamp()) * 1_000_000
        state = call.args[5]
        state_fields = dict(zip(state[::2], state[1::2], strict=True))
        assert state_fields["resolution:breached"] == "1"
        assert state_fields["resolution:state"] == "running"
        entry = call.args[6]
        assert dict(zip(entry[::2], entry[1::2], strict=True)) == sla_event_fields(event)

    def test_sla_event_before_1970_is_rejected(self) -> None:
        with pytest.raises(ValueError, match="before 1970"):
            sla_event_to_redis_args(make_sla_event(at=datetime(1969, 12, 31, tzinfo=UTC)))

    def test_risk_call(self) -> None:
        call = risk_to_redis_args(make_risk(4, 12, 0.25), "p")
        assert (call.op, call.keys, call.args[0]) == ("risk", ["p:ticket:4:sla"], "12")
        flat = call.args[2]
        fields = dict(zip(flat[::2], flat[1::2], strict=True))
        assert fields["risk"] == "0.25"
        assert fields["risk_version"] == "12"
        with pytest.raises(ValueError, match="negative risk version"):
            risk_to_redis_args(make_risk(version=-1))

    def test_items_are_routed_by_type(self) -> None:
        assert item_to_redis_call(make_decision()).op == "decision"
        assert item_to_redis_call(make_sla_event()).op == "sla"
        assert item_to_redis_call(make_risk()).op == "risk"
        with pytest.raises(TypeError, match="ModelMetric"):
            item_to_redis_call(make_metric())  # type: ignore[arg-type]


class TestDiscoverMigrations:
    def test_orders_numerically_and_skips_other_files(self, tmp_path: Path) -> None:
        (tmp_path / "010_later.sql").write_text("SELECT 1;")
        (tmp_path / "002_first.sql").write_text("SELECT 2;")
        (tmp_path / "notes.sql").write_text("-- not numbered")
        found = discover_migrations(tmp_path)
        assert [m.version for m in found] == ["002_first", "010_later"]
        assert len(found[0].checksum) == 64

    def test_duplicate_numbers_are_refused(self, tmp_path: Path) -> None:
        (tmp_path / "001_a.sql").write_text("")
        (tmp_path / "001_b.sql").write_text("")
        with pytest.raises(MigrationError, match="share number"):
            discover_migrations(tmp_path)

    def test_missing_directory(self, tmp_path: Path) -> None:
        with pytest.raises(MigrationError, match="does not exist"):
            discover_migrations(tmp_path / "nope")


def test_rollup_hours_are_kept_per_rollup() -> None:
    from datetime import UTC, datetime

    from sinks.postgres import AGENT_LOAD, METRICS_MINUTE, rollup_hours

    at = datetime(2026, 3, 2, 9, 59, 30, tzinfo=UTC)
    later = datetime(2026, 3, 2, 11, 5, tzinfo=UTC)
    sla = lambda kind, when: (1, "first_reply", kind, when, None, "p", 0.0, 0.0, False)  # noqa: E731
    rows = {
        METRICS_MINUTE: [(at,), (at,)],
        AGENT_LOAD: [],
        # Only outcomes change sla_hourly; an apply event does not.
        SLA_EVENTS: [sla("fulfill", later), sla("apply", at)],
    }
    metric_hours, load_hours, sla_hours = rollup_hours(rows)
    assert metric_hours == [datetime(2026, 3, 2, 9, tzinfo=UTC)]
    assert load_hours == []
    assert sla_hours == [datetime(2026, 3, 2, 11, tzinfo=UTC)]
