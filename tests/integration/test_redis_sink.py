"""RedisSink against a real private Redis: state, queues, stream, replays, a flow."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import bytewax.operators as op
import pytest
import redis
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSource, run_main

from models.helpdesk import RoutingDecision
from models.signals import BreachRiskScore
from models.sla import SlaEvent
from sinks.redis import RedisItem, RedisSink, _RedisPartition
from sinks.retry import RetryPolicy
from tests.factories import breach_risk, routing_decision, sla_event

pytestmark = pytest.mark.integration

T0 = datetime(2025, 3, 1, 9, 30, tzinfo=UTC)


def make_decision(
    ticket_id: int,
    version: int,
    *,
    agent_id: int | None = 3,
    status: str = "assigned",
    queue: str = "billing",
    priority: str = "high",
    decided_offset_s: float = 0.0,
) -> RoutingDecision:
    return routing_decision(
        ticket_id,
        version,
        at=T0 - timedelta(milliseconds=40),
        agent_id=agent_id,
        status=status,
        queue=queue,
        priority=priority,
        sla_deadline=T0 + timedelta(hours=4),
        decided_at=T0 + timedelta(seconds=decided_offset_s),
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


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    rd = redis.Redis.from_url(redis_url, decode_responses=True)
    yield rd
    rd.close()


@pytest.fixture
def prefix(unique: str) -> str:
    return f"t{unique}"


@pytest.fixture
def partition(redis_url: str, prefix: str) -> Iterator[_RedisPartition]:
    part = RedisSink(
        redis_url, prefix=prefix, retry=RetryPolicy(initial_delay=0.01, max_retries=3)
    ).build("out", 0, 1)
    yield part
    part.close()


def queue_of(client: redis.Redis, prefix: str, agent_id: int) -> list[str]:
    return client.zrange(f"{prefix}:agent:{agent_id}:queue", 0, -1)  # type: ignore[return-value]


def test_unreachable_redis_fails_at_build() -> None:
    sink = RedisSink("redis://127.0.0.1:1/0", socket_timeout=0.5)
    with pytest.raises(redis.ConnectionError):
        sink.build("out", 0, 1)


def test_assignment_writes_hash_queue_stream_and_stats(
    partition: _RedisPartition, client: redis.Redis, prefix: str
) -> None:
    partition.write_batch([make_decision(1, 10)])
    fields: dict[str, str] = client.hgetall(f"{prefix}:ticket:1:routing")  # type: ignore[assignment]
    assert fields["version"] == "10"
    assert fields["agent_id"] == "3"
    assert fields["status"] == "assigned"
    assert json.loads(fields["reasons"]) == ["skills:billing", "capacity"]
    assert datetime.fromisoformat(fields["source_committed_at"]) < datetime.fromisoformat(
        fields["decided_at"]
    )
    assert int(fields["applied_at_us"]) > 0
    assert fields["previous_agent_id"] == ""
    assert queue_of(client, prefix, 3) == ["1"]
    assert client.sismember(f"{prefix}:agents", "3")
    entries: list[tuple[str, dict[str, str]]] = client.xrange(f"{prefix}:decisions")  # type: ignore[assignment]
    assert len(entries) == 1
    assert entries[0][1]["ticket_id"] == "1"
    assert entries[0][1]["source_committed_at"] == fields["source_committed_at"]
    assert client.hgetall(f"{prefix}:stats") == {"decisions": "1", "assigned": "1"}


def test_replay_changes_nothing(
    partition: _RedisPartition, client: redis.Redis, prefix: str
) -> None:
    batch: list[RedisItem] = [make_decision(i, 100 + i, agent_id=i % 3 + 1) for i in range(30)]
    partition.write_batch(batch)
    state = {k: client.dump(k) for k in client.keys(f"{prefix}:*") if ":ticket:" not in k}
    partition.write_batch(batch)
    partition.write_batch(batch[:10])
    assert client.xlen(f"{prefix}:decisions") == 30
    assert client.hget(f"{prefix}:stats", "decisions") == "30"
    assert partition.applied == 30
    assert {k: client.dump(k) for k in state} == state


def test_a_redis_that_lost_its_scripts_gets_them_again(
    partition: _RedisPartition, client: redis.Redis, prefix: str
) -> None:
    partition.write_batch([make_decision(1, 10)])
    client.script_flush()  # what a Redis restart without persistence does to scripts
    partition.write_batch([make_decision(2, 11), make_decision(1, 12, agent_id=4)])
    assert partition.applied == 3
    assert client.hget(f"{prefix}:ticket:2:routing", "version") == "11"
    assert client.hget(f"{prefix}:ticket:1:routing", "agent_id") == "4"
    assert client.xlen(f"{prefix}:decisions") == 3


def test_older_version_does_not_regress(
    partition: _RedisPartition, client: redis.Redis, prefix: str
) -> None:
    partition.write_batch([make_decision(1, 20, agent_id=5)])
    partition.write_batch([make_decision(1, 10, agent_id=6)])
    assert client.hget(f"{prefix}:ticket:1:routing", "agent_id") == "5"
    assert queue_of(client, prefix, 5) == ["1"]
    assert queue_of(client, prefix, 6) == []
    assert client.xlen(f"{prefix}:decisions") == 1


def test_versions_beyond_double_precision_compare_exactly(
    partition: _RedisPartition, client: redis.Redis, prefix: str
) -> None:
    big = 2**60
    partition.write_batch([make_decision(1, big + 1, agent_id=5)])
    partition.write_batch([make_decision(1, big, agent_id=6)])
    assert client.hget(f"{prefix}:ticket:1:routing", "agent_id") == "5"
    partition.write_batch([make_decision(1, big + 2, agent_id=6)])
    assert client.hget(f"{prefix}:ticket:1:routing", "agent_id") == "6"


def test_reassignment_moves_ticket_between_agent_queues(
    partition: _RedisPartition, client: redis.Redis, prefix: str
) -> None:
    partition.write_batch([make_decision(1, 10, agent_id=5), make_decision(2, 11, agent_id=5)])
    partition.write_batch([make_decision(1, 20, agent_id=6)])
    assert queue_of(client, prefix, 5) == ["2"]
    assert queue_of(client, prefix, 6) == ["1"]
    assert client.hget(f"{prefix}:ticket:1:routing", "previous_agent_id") == "5"


def test_queued_then_assigned_then_released(
    partition: _RedisPartition, client: redis.Redis, prefix: str
) -> None:
    holding = f"{prefix}:queue:billing:holding"
    partition.write_batch([make_decision(1, 10, agent_id=None, status="queued")])
    assert client.zrange(holding, 0, -1) == ["1"]
    partition.write_batch([make_decision(1, 20, agent_id=7)])
    assert client.zrange(holding, 0, -1) == []
    assert queue_of(client, prefix, 7) == ["1"]
    partition.write_batch([make_decision(1, 30, agent_id=None, status="released")])
    assert queue_of(client, prefix, 7) == []
    assert client.hget(f"{prefix}:ticket:1:routing", "status") == "released"
    assert client.ttl(f"{prefix}:ticket:1:routing") > 0
    assert client.hgetall(f"{prefix}:stats") == {
        "decisions": "3",
        "queued": "1",
        "assigned": "1",
        "released": "1",
    }


def test_requeue_to_another_queue_leaves_the_old_holding_list(
    partition: _RedisPartition, client: redis.Redis, prefix: str
) -> None:
    partition.write_batch([make_decision(1, 10, agent_id=None, status="queued")])
    partition.write_batch([make_decision(1, 20, agent_id=None, status="queued", queue="technical")])
    assert client.zrange(f"{prefix}:queue:billing:holding", 0, -1) == []
    assert client.zrange(f"{prefix}:queue:technical:holding", 0, -1) == ["1"]


def test_agent_queue_is_ordered_urgent_first_then_oldest(
    partition: _RedisPartition, client: redis.Redis, prefix: str
) -> None:
    partition.write_batch(
        [
            make_decision(1, 10, priority="low", decided_offset_s=0),
            make_decision(2, 11, priority="urgent", decided_offset_s=50),
            make_decision(3, 12, priority="high", decided_offset_s=20),
            make_decision(4, 13, priority="urgent", decided_offset_s=10),
        ]
    )
    assert queue_of(client, prefix, 3) == ["4", "2", "3", "1"]


def test_stream_is_capped(redis_url: str, client: redis.Redis, prefix: str) -> None:
    part = RedisSink(redis_url, prefix=prefix, stream_maxlen=100).build("out", 0, 1)
    part.write_batch([make_decision(i, 10 + i) for i in range(1000)])
    part.close()
    # MAXLEN ~ trims whole radix-tree nodes, so the length is near the cap, not exact.
    assert client.xlen(f"{prefix}:decisions") < 300


def test_lost_connection_is_retried(
    partition: _RedisPartition, client: redis.Redis, prefix: str
) -> None:
    partition.write_batch([make_decision(1, 10)])
    client.client_kill_filter(_type="normal", skipme=True)
    partition.write_batch([make_decision(2, 11)])
    assert queue_of(client, prefix, 3) == ["1", "2"]


def test_dataflow_run_and_replay(redis_url: str, client: redis.Redis, prefix: str) -> None:
    items = [make_decision(t, v * 100 + t, agent_id=v) for v in (1, 2, 3) for t in range(1, 11)]

    def run() -> None:
        flow = Dataflow("redis_sink_test")
        stream = op.input("read_decisions", flow, TestingSource(items, batch_size=4))
        op.output("publish_routing", stream, RedisSink(redis_url, prefix=prefix))
        run_main(flow)

    run()
    run()
    assert client.xlen(f"{prefix}:decisions") == 30
    assert queue_of(client, prefix, 1) == []
    assert len(queue_of(client, prefix, 3)) == 10
    assert client.smembers(f"{prefix}:agents") == {"1", "2", "3"}


def stream_kinds(client: redis.Redis, key: str) -> list[tuple[str, str, str]]:
    entries: list[tuple[str, dict[str, str]]] = client.xrange(key)  # type: ignore[assignment]
    return [(f["ticket_id"], f["metric"], f["kind"]) for _, f in entries]


class TestSla:
    def test_event_updates_hash_and_stream(
        self, partition: _RedisPartition, client: redis.Redis, prefix: str
    ) -> None:
        partition.write_batch([make_sla_event(1, "apply", 0)])
        fields: dict[str, str] = client.hgetall(f"{prefix}:ticket:1:sla")  # type: ignore[assignment]
        assert fields["first_reply:state"] == "running"
        assert fields["first_reply:kind"] == "apply"
        assert datetime.fromisoformat(fields["first_reply:deadline"]) == T0 + timedelta(hours=1)
        assert fields["first_reply:breached"] == "0"
        assert fields["first_reply:policy"] == "premium-high"
        assert stream_kinds(client, f"{prefix}:sla") == [("1", "first_reply", "apply")]
        assert client.xlen(f"{prefix}:alerts") == 0
        assert client.ttl(f"{prefix}:ticket:1:sla") > 0

    def test_replay_is_not_appended_again(
        self, partition: _RedisPartition, client: redis.Redis, prefix: str
    ) -> None:
        batch: list[RedisItem] = [
            make_sla_event(1, "apply", 0),
            make_sla_event(1, "pause", 0, deadline_s=None),
            make_sla_event(1, "apply", 0, metric="resolution"),
            make_sla_event(2, "apply", 5),
        ]
        partition.write_batch(batch)
        snapshot = client.hgetall(f"{prefix}:ticket:1:sla")
        partition.write_batch(batch)
        partition.write_batch(batch[:1])
        assert partition.applied == 4
        assert client.xlen(f"{prefix}:sla") == 4
        assert client.hgetall(f"{prefix}:ticket:1:sla") == snapshot
        # Two changes of one instant both count; the replayed first one does not undo the second.
        assert snapshot["first_reply:state"] == "paused"

    def test_older_event_does_not_regress_the_clock(
        self, partition: _RedisPartition, client: redis.Redis, prefix: str
    ) -> None:
        partition.write_batch([make_sla_event(1, "fulfill", 600, deadline_s=None)])
        partition.write_batch([make_sla_event(1, "apply", 0)])
        assert client.hget(f"{prefix}:ticket:1:sla", "first_reply:state") == "fulfilled"
        assert client.xlen(f"{prefix}:sla") == 1

    def test_alerts_get_breaches_only(
        self, partition: _RedisPartition, client: redis.Redis, prefix: str
    ) -> None:
        events: list[RedisItem] = [
            make_sla_event(1, "apply", 0),
            make_sla_event(1, "breach", 3600, breached=True),
            make_sla_event(1, "fulfill", 4000, deadline_s=None, breached=True),
            make_sla_event(2, "apply", 0),
        ]
        partition.write_batch(events)
        partition.write_batch(events)
        assert stream_kinds(client, f"{prefix}:alerts") == [("1", "first_reply", "breach")]
        assert client.xlen(f"{prefix}:sla") == 4
        fields: dict[str, str] = client.hgetall(f"{prefix}:ticket:1:sla")  # type: ignore[assignment]
        assert (fields["first_reply:state"], fields["first_reply:breached"]) == ("fulfilled", "1")

    def test_risk_version_guard(
        self, partition: _RedisPartition, client: redis.Redis, prefix: str
    ) -> None:
        key = f"{prefix}:ticket:1:sla"
        partition.write_batch([make_risk(1, 5, 0.7)])
        partition.write_batch([make_risk(1, 4, 0.1), make_risk(1, 5, 0.2)])
        assert client.hmget(key, "risk", "risk_version") == ["0.7", "5"]
        partition.write_batch([make_risk(1, 6, 0.3)])
        assert client.hmget(key, "risk", "risk_version", "risk_queue") == ["0.3", "6", "billing"]

    def test_mixed_batch_keeps_decisions_and_sla_apart(
        self, partition: _RedisPartition, client: redis.Redis, prefix: str
    ) -> None:
        partition.write_batch(
            [make_decision(1, 10), make_sla_event(1, "apply", 0), make_risk(1, 1, 0.5)]
        )
        assert client.hget(f"{prefix}:ticket:1:routing", "version") == "10"
        assert client.hmget(f"{prefix}:ticket:1:sla", "first_reply:kind", "risk") == [
            "apply",
            "0.5",
        ]
        assert client.xlen(f"{prefix}:decisions") == 1
        assert client.xlen(f"{prefix}:sla") == 1
        assert partition.applied == 3

    def test_other_items_are_refused(self, partition: _RedisPartition) -> None:
        with pytest.raises(TypeError, match="str"):
            partition.write_batch(["not an item"])  # type: ignore[list-item]
