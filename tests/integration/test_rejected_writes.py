"""Rows the analytics store rejects become dead letters; the flow and the rest of the batch
go on (real private PostgreSQL).

The poison rows are the kinds a store really refuses: a value a CHECK constraint forbids
(a routing status outside the allowed list) and text PostgreSQL cannot hold (a NUL
character, in a ticket subject and in a dead letter's own payload).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from bytewax.testing import TestingSource, run_main

from models.events import DeadLetter, SourcePosition
from models.helpdesk import EnrichedTicket
from sinks.migrations import apply_migrations
from sinks.postgres import DeadLetterWriter, PostgresSink
from sinks.retry import RetryPolicy
from sinks.search_es import refused_dead_letters
from sinks.search_pg import PostgresSearchSink
from tests.integration.test_postgres_sink import T0, make_decision, make_enriched

pytestmark = pytest.mark.integration

ANALYTICS_SQL = Path(__file__).resolve().parents[2] / "sql" / "analytics"


@pytest.fixture
def analytics_dsn(pg_dsn: str) -> str:
    apply_migrations(pg_dsn, ANALYTICS_SQL)
    return pg_dsn


def rows(dsn: str, query: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(query.encode()).fetchall()


def dead_letters(dsn: str) -> list[tuple[Any, ...]]:
    return rows(
        dsn,
        "SELECT stage, topic, key, reason, payload FROM analytics.dead_letters ORDER BY id",
    )


def with_subject(item: EnrichedTicket, subject: str) -> EnrichedTicket:
    return replace(item, ticket=replace(item.ticket, subject=subject))


def poisoned_batch() -> list[Any]:
    bad_status = replace(make_decision(2, 20), status="lost")  # type: ignore[arg-type]  # CHECK violation
    nul_subject = with_subject(make_enriched(5, 50), "Refund\x00please")
    nul_letter = DeadLetter(
        stage="decode_cdc",
        reason="not JSON",
        topic="triage.public.tickets",
        key="9",
        payload="{\x00",
        position=SourcePosition(lsn=900),
        failed_at=T0,
    )
    return [
        make_decision(1, 10),
        bad_status,
        make_decision(3, 30),
        make_enriched(4, 40),
        nul_subject,
        nul_letter,
        make_enriched(6, 60),
    ]


def test_rejected_rows_are_dead_lettered_and_the_rest_is_written(analytics_dsn: str) -> None:
    part = PostgresSink(analytics_dsn, retry=RetryPolicy(max_retries=2)).build(
        "write_analytics", 0, 1
    )
    try:
        part.write_batch(poisoned_batch())
        assert rows(analytics_dsn, "SELECT ticket_id FROM analytics.routing_decisions") == [
            (1,),
            (3,),
        ]
        assert rows(analytics_dsn, "SELECT ticket_id FROM analytics.ticket_facts ORDER BY 1") == [
            (4,),
            (6,),
        ]
        letters = {
            (stage, topic): (key, reason, payload)
            for stage, topic, key, reason, payload in dead_letters(analytics_dsn)
        }
        assert set(letters) == {
            ("write_analytics", "RoutingDecision"),
            ("write_analytics", "EnrichedTicket"),
            ("decode_cdc", "triage.public.tickets"),
        }
        key, reason, payload = letters[("write_analytics", "RoutingDecision")]
        assert key == "ticket_id=2 version=20"
        assert reason.startswith("23514 CheckViolation: new row for relation")
        assert "constraint: routing_decisions_status_check" in reason
        assert "status='lost'" in payload
        key, reason, payload = letters[("write_analytics", "EnrichedTicket")]
        assert key == "ticket_id=5 version=50"
        assert "NUL" in reason or "0x00" in reason
        assert "Refund\\x00please" in payload
        # The step's own dead letter keeps its stage and origin, its text escaped.
        key, reason, payload = letters[("decode_cdc", "triage.public.tickets")]
        assert (key, payload) == ("9", "{\\x00")
        assert reason.startswith("not JSON [stored escaped: ")

        # A replay of the same batch stores nothing twice; the next batch is written.
        part.write_batch(poisoned_batch())
        assert len(dead_letters(analytics_dsn)) == 3
        part.write_batch([make_decision(7, 70)])
        assert (7,) in rows(analytics_dsn, "SELECT ticket_id FROM analytics.routing_decisions")
    finally:
        part.close()


def test_errors_that_are_not_about_the_rows_still_fail_the_batch(analytics_dsn: str) -> None:
    part = PostgresSink(analytics_dsn, retry=RetryPolicy(max_retries=0)).build(
        "write_analytics", 0, 1
    )
    try:
        with psycopg.connect(analytics_dsn, autocommit=True) as conn:
            conn.execute("ALTER TABLE analytics.routing_decisions RENAME TO gone")
        with pytest.raises(psycopg.errors.UndefinedTable):
            part.write_batch([make_decision(1, 10)])
        assert dead_letters(analytics_dsn) == []
    finally:
        part.close()


def test_a_flow_with_poison_rows_runs_to_the_end(analytics_dsn: str) -> None:
    import bytewax.operators as op
    from bytewax.dataflow import Dataflow

    batch = poisoned_batch()
    later = [make_decision(8, 80 + i) for i in range(3)]
    flow = Dataflow("poison")
    items = op.input("inp", flow, TestingSource([*batch, *later]))
    op.output(
        "write_analytics", items, PostgresSink(analytics_dsn, retry=RetryPolicy(max_retries=2))
    )
    run_main(flow)
    assert rows(
        analytics_dsn, "SELECT ticket_id, version FROM analytics.routing_decisions ORDER BY 1"
    ) == [(1, 10), (3, 30), (8, 82)]
    assert len(dead_letters(analytics_dsn)) == 3


def test_search_documents_postgres_rejects_become_dead_letters(analytics_dsn: str) -> None:
    part = PostgresSearchSink(analytics_dsn, retry=RetryPolicy(max_retries=2)).build(
        "write_search", 0, 1
    )
    try:
        bad = with_subject(make_enriched(2, 20), "bad\x00subject")
        part.write_batch([make_enriched(1, 10), bad, make_enriched(3, 30)])
        part.write_batch([make_enriched(4, 40)])
    finally:
        part.close()
    assert rows(analytics_dsn, "SELECT ticket_id FROM analytics.ticket_search ORDER BY 1") == [
        (1,),
        (3,),
        (4,),
    ]
    ((stage, topic, key, reason, _payload),) = dead_letters(analytics_dsn)
    assert (stage, topic, key) == ("write_search", "EnrichedTicket", "ticket_id=2 version=20")
    assert "0x00" in reason or "NUL" in reason


def test_elasticsearch_refusals_are_stored_once(analytics_dsn: str) -> None:
    action = {
        "_index": "triage-tickets",
        "_id": "42",
        "version": 4200,
        "_source": {"ticket_id": 42, "subject": "x\x00y", "created_at": "not a date"},
    }
    refused = {
        "index": {
            "_index": "triage-tickets",
            "_id": "42",
            "status": 400,
            "error": {"type": "document_parsing_exception", "reason": "failed to parse"},
        }
    }
    writer = DeadLetterWriter(analytics_dsn, sink="elasticsearch", retry=RetryPolicy(max_retries=2))
    try:
        letters = refused_dead_letters([refused], [action], now=T0 + timedelta(minutes=1))
        writer.write(letters)
        writer.write(letters)  # a replayed refusal
    finally:
        writer.close()
    ((stage, topic, key, reason, payload),) = dead_letters(analytics_dsn)
    assert (stage, topic, key) == ("write_search", "triage-tickets", "42")
    assert reason == "elasticsearch 400 document_parsing_exception: failed to parse"
    assert '"subject": "x\\u0000y"' in payload


def test_redis_dead_letters_items_live_state_cannot_hold(
    redis_url: str, analytics_dsn: str, unique: str
) -> None:
    import redis

    from sinks.redis import RedisSink

    prefix = f"rj{unique}"
    sink = RedisSink(
        redis_url, prefix=prefix, retry=RetryPolicy(max_retries=2), dead_letter_dsn=analytics_dsn
    )
    part = sink.build("write_live", 0, 1)
    try:
        nobody = replace(make_decision(2, 20), agent_id=None)  # "assigned" without an agent
        part.write_batch([make_decision(1, 10), nobody, make_decision(3, 30)])
        part.write_batch([make_decision(4, 40)])
        part.write_batch([nobody])  # the same refusal again (a replay): stored once
    finally:
        part.close()
    client = redis.Redis.from_url(redis_url)
    routed = sorted(k.decode() for k in client.scan_iter(f"{prefix}:ticket:*:routing"))
    assert routed == [f"{prefix}:ticket:{t}:routing" for t in (1, 3, 4)]
    ((stage, topic, key, reason, payload),) = dead_letters(analytics_dsn)
    assert (stage, topic) == ("write_live", "RoutingDecision")
    assert key is not None and "2" in key
    assert reason.startswith("redis: ") and "agent" in reason
    assert "ticket_id=2" in payload


def test_dead_letters_are_listed_newest_first_with_counts(
    analytics_dsn: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import json

    from typer.testing import CliRunner

    from triage.cli import app
    from triage.jobs.dead_letters import count_by_stage, list_dead_letters

    part = PostgresSink(analytics_dsn, retry=RetryPolicy(max_retries=2)).build(
        "write_analytics", 0, 1
    )
    try:
        part.write_batch(poisoned_batch())
    finally:
        part.close()
    assert count_by_stage(analytics_dsn) == {"write_analytics": 2, "decode_cdc": 1}
    rejected = list_dead_letters(analytics_dsn, stage="write_analytics")
    assert {d["topic"] for d in rejected} == {"RoutingDecision", "EnrichedTicket"}
    assert list_dead_letters(analytics_dsn, limit=1)[0]["failed_at"] >= rejected[-1]["failed_at"]

    monkeypatch.setenv("TRIAGE_SOURCE__DSN", analytics_dsn)
    monkeypatch.setenv("TRIAGE_REDIS__URL", "redis://127.0.0.1:1/0")  # not used
    result = CliRunner().invoke(
        app,
        ["dead-letters", "list", "--stage", "decode_cdc", "--json", "--state-dir", str(tmp_path)],
    )
    assert result.exit_code == 0, result.output
    (line,) = [json.loads(x) for x in result.stdout.splitlines() if x.startswith("{")]
    assert (line["stage"], line["key"], line["payload"]) == ("decode_cdc", "9", "{\\x00")
