"""``triage rebuild redis``: Redis lost, live state re-created from the analytics store
(real PostgreSQL and Redis)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import redis

from sinks.migrations import apply_migrations
from sinks.postgres import PostgresSink
from sinks.redis import RedisSink
from sinks.retry import RetryPolicy
from tests.integration.test_postgres_sink import make_decision, make_risk, make_sla_event
from tests.sinks.test_search_es import FakeElasticsearch, fake_es  # noqa: F401 (fixture)
from triage.jobs.rebuild import rebuild_redis

pytestmark = pytest.mark.integration

ANALYTICS_SQL = Path(__file__).resolve().parents[2] / "sql" / "analytics"

# History streams and counters are not live state: a rebuild re-creates them only from
# the re-applied items. Nor is when Redis applied a decision (a wall-clock field).
HISTORY = ("decisions", "sla", "alerts", "stats")
WALL_CLOCK = b"applied_at_us"


def history() -> list[Any]:
    """A day of routing, SLA clocks and risk for five tickets, in flow order."""
    return [
        make_decision(1, 10, agent_id=3),
        make_decision(2, 11, agent_id=3),
        make_decision(3, 12, agent_id=None, status="queued"),
        make_decision(4, 13, agent_id=5),
        make_sla_event(1, "apply", 0),
        make_sla_event(2, "apply", 1),
        make_sla_event(4, "apply", 3, metric="resolution", deadline_s=7200),
        make_risk(1, 1, 0.2),
        make_risk(2, 1, 0.4),
        # Later: ticket 1 is solved (agent 3 freed), ticket 3 finds an agent, 2 is reassigned.
        make_decision(1, 20, agent_id=3, status="released"),
        make_decision(3, 21, agent_id=5),
        make_decision(2, 22, agent_id=5),
        make_sla_event(1, "fulfill", 600),
        make_sla_event(2, "breach", 3600, breached=True),
        make_risk(2, 2, 0.9),
    ]


def snapshot(client: redis.Redis, prefix: str) -> dict[str, Any]:
    state: dict[str, Any] = {}
    for raw in client.scan_iter(f"{prefix}:*"):
        key = raw.decode()
        if key in {f"{prefix}:{name}" for name in HISTORY}:
            continue
        found = client.type(key)
        kind = found.decode() if isinstance(found, bytes) else found
        if kind == "hash":
            state[key] = {f: v for f, v in client.hgetall(key).items() if f != WALL_CLOCK}
        elif kind == "zset":
            state[key] = client.zrange(key, 0, -1, withscores=True)
        elif kind == "set":
            state[key] = client.smembers(key)
        else:
            state[key] = (kind, client.dump(key))
    return state


def test_rebuild_recreates_live_state_and_is_idempotent(
    pg_dsn: str, redis_url: str, unique: str
) -> None:
    apply_migrations(pg_dsn, ANALYTICS_SQL)
    prefix = f"rb{unique}"
    items = history()
    analytics = PostgresSink(pg_dsn, retry=RetryPolicy(max_retries=2)).build(
        "write_analytics", 0, 1
    )
    live = RedisSink(redis_url, prefix=prefix, retry=RetryPolicy(max_retries=2)).build(
        "write_live", 0, 1
    )
    try:
        # Two epochs, as the flow would write them.
        for batch in (items[:9], items[9:]):
            analytics.write_batch(batch)
            live.write_batch(batch)
    finally:
        analytics.close()
        live.close()
    client = redis.Redis.from_url(redis_url)
    before = snapshot(client, prefix)
    assert f"{prefix}:agent:5:queue" in before and f"{prefix}:ticket:2:sla" in before

    # Redis is lost.
    for key in client.scan_iter(f"{prefix}:*"):
        client.delete(key)
    assert snapshot(client, prefix) == {}

    read = rebuild_redis(pg_dsn, redis_url, prefix=prefix, page=2)
    assert read == {"routing_decision_history": 7, "ticket_sla": 3, "ticket_risk": 2}
    assert snapshot(client, prefix) == before
    # Again (or while the pipeline writes): nothing changes.
    rebuild_redis(pg_dsn, redis_url, prefix=prefix, page=3)
    assert snapshot(client, prefix) == before


def test_the_rebuild_command(
    pg_dsn: str, redis_url: str, unique: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from triage.cli import app

    apply_migrations(pg_dsn, ANALYTICS_SQL)
    analytics = PostgresSink(pg_dsn, retry=RetryPolicy(max_retries=2)).build(
        "write_analytics", 0, 1
    )
    try:
        analytics.write_batch(history())
    finally:
        analytics.close()
    prefix = f"cli{unique}"
    for name, value in {
        "TRIAGE_SOURCE__DSN": pg_dsn,
        "TRIAGE_ANALYTICS__DSN": pg_dsn,
        "TRIAGE_REDIS__URL": redis_url,
        "TRIAGE_REDIS__KEY_PREFIX": prefix,
    }.items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(app, ["rebuild", "redis", "--state-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "routing_decision_history 7" in result.output
    status = redis.Redis.from_url(redis_url).hget(f"{prefix}:ticket:3:routing", "status")
    assert status == b"assigned"


TICKET_INDEX = (
    "SELECT ticket_id, version, deleted, subject, description, status, priority, category,"
    " intent, queue, channel, language, search_config::text, customer_id, customer_tier,"
    " organization, assigned_agent_id, created_at, updated_at, solved_at, document::text"
    " FROM analytics.ticket_search ORDER BY 1"
)
# KB articles are re-indexed with version 1 (any later change replaces them).
KB_INDEX = (
    "SELECT article_id, deleted, title, body, category, language, document::text"
    " FROM analytics.kb_search ORDER BY 1"
)


def _helpdesk_and_analytics(dsn: str) -> list[Any]:
    """One database holding the helpdesk tables and the analytics schema (the embedded
    layout), with three tickets and two KB articles; returns the flow's items for them."""
    from dataclasses import replace

    import psycopg

    from models.kb import KbArticle
    from tests.integration.test_postgres_sink import T0, make_enriched

    apply_migrations(dsn, ANALYTICS_SQL.parent / "source", schema="public")
    apply_migrations(dsn, ANALYTICS_SQL)
    descriptions = {1: "Charged twice", 2: "Call me on +44 20 7946 0958 or a@b.co", 3: "gone"}
    with psycopg.connect(dsn) as conn:
        conn.execute("INSERT INTO customers (id, name, email) VALUES (7, 'Ada', 'ada@x.io')")
        for ticket_id, description in descriptions.items():
            conn.execute(
                "INSERT INTO tickets (id, customer_id, subject, description)"
                " VALUES (%s, 7, %s, %s)",
                (ticket_id, f"Ticket {ticket_id}", description),
            )
        conn.execute(
            "INSERT INTO kb_articles (id, title, body, category, updated_at) VALUES"
            " (1, 'Refunds', 'Write to refunds@shop.io', 'billing', %s),"
            " (2, 'Passwords', 'Reset it', 'account', %s)",
            (T0, T0),
        )
    tickets = [
        make_enriched(1, 10),
        make_enriched(2, 20),
        make_enriched(3, 30, op_code="d"),
    ]
    tickets = [
        replace(t, ticket=replace(t.ticket, description=descriptions[t.ticket_id])) for t in tickets
    ]
    articles = [
        KbArticle(1, 101, "Refunds", "Write to refunds@shop.io", "billing", "en", True, T0),
        KbArticle(2, 102, "Passwords", "Reset it", "account", "en", True, T0),
    ]
    return [*tickets, *articles]


def test_rebuild_search_recreates_the_postgres_index(pg_dsn: str) -> None:
    import psycopg

    from sinks.search_pg import PostgresSearchSink
    from triage.jobs.rebuild import rebuild_search

    items = _helpdesk_and_analytics(pg_dsn)
    analytics = PostgresSink(pg_dsn, retry=RetryPolicy(max_retries=2)).build(
        "write_analytics", 0, 1
    )
    live = PostgresSearchSink(pg_dsn, retry=RetryPolicy(max_retries=2)).build("write_search", 0, 1)
    try:
        analytics.write_batch([i for i in items if hasattr(i, "ticket")])
        live.write_batch(items)
    finally:
        analytics.close()
        live.close()

    def index() -> tuple[list[Any], list[Any]]:
        with psycopg.connect(pg_dsn) as conn:
            return (
                conn.execute(TICKET_INDEX).fetchall(),
                conn.execute(KB_INDEX).fetchall(),
            )

    before = index()
    assert "[phone]" in before[0][1][4] and "[email]" in before[1][0][3]  # PII masked
    with psycopg.connect(pg_dsn) as conn:
        conn.execute("TRUNCATE analytics.ticket_search, analytics.kb_search")
    assert index() == ([], [])

    sink = PostgresSearchSink(pg_dsn, retry=RetryPolicy(max_retries=2))
    assert rebuild_search(pg_dsn, pg_dsn, sink, page=2) == {"ticket_facts": 3, "kb_articles": 2}
    assert index() == before
    rebuild_search(pg_dsn, pg_dsn, sink, page=2)  # again: nothing changes
    assert index() == before


def test_rebuild_search_fills_a_wiped_elasticsearch(
    pg_dsn: str,
    fake_es: tuple[FakeElasticsearch, str],  # noqa: F811
) -> None:
    from sinks.search_es import ElasticsearchSearchSink
    from triage.jobs.rebuild import rebuild_search

    items = _helpdesk_and_analytics(pg_dsn)
    analytics = PostgresSink(pg_dsn, retry=RetryPolicy(max_retries=2)).build(
        "write_analytics", 0, 1
    )
    try:
        analytics.write_batch([i for i in items if hasattr(i, "ticket")])
    finally:
        analytics.close()
    fake, url = fake_es
    counts = rebuild_search(pg_dsn, pg_dsn, ElasticsearchSearchSink(url), page=2)
    assert counts == {"ticket_facts": 3, "kb_articles": 2}
    assert sorted(fake.docs) == [
        ("triage-kb", "1"),
        ("triage-kb", "2"),
        ("triage-tickets", "1"),
        ("triage-tickets", "2"),
        ("triage-tickets", "3"),
    ]
    version, ticket = fake.docs[("triage-tickets", "2")]
    assert version == 20
    assert ticket["description"] == "Call me on [phone] or [email]"
    assert ticket["category"] == "billing" and ticket["queue"] == "billing"
    assert fake.docs[("triage-tickets", "3")][1]["deleted"] is True
    assert fake.docs[("triage-kb", "1")][1]["body"] == "Write to [email]"
