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
from tests.integration.test_postgres_sink import make_decision, make_risk, make_sla_event
from triage.rebuild import rebuild_redis

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
        kind = client.type(key).decode()
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
    analytics = PostgresSink(pg_dsn, max_retries=2).build("write_analytics", 0, 1)
    live = RedisSink(redis_url, prefix=prefix, max_retries=2).build("write_live", 0, 1)
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
    analytics = PostgresSink(pg_dsn, max_retries=2).build("write_analytics", 0, 1)
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
