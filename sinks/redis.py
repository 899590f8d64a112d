"""Redis sink for live ticket state: routing decisions, agent queues, SLA clocks, risk.

Each item is applied by one Lua function that compares it with the stored state and applies
everything or nothing, so a replayed or stale item can neither regress state nor add a
second stream entry. A batch travels as a few script calls in one pipeline.

Keys, with prefix ``p`` (default ``triage``):

- ``{p}:ticket:{id}:routing`` hash: the current decision, its ``version`` and the
  ``previous_agent_id``;
- ``{p}:agent:{agent_id}:queue`` sorted set of ticket ids, lowest score first (most urgent,
  then oldest);
- ``{p}:queue:{queue}:holding`` sorted set of tickets waiting with status ``queued``;
- ``{p}:agents`` set of every agent id that was ever assigned a ticket;
- ``{p}:decisions`` stream of applied decisions (capped, approximately);
- ``{p}:stats`` hash of counters: ``decisions``, ``assigned``, ``queued``, ``released``;
- ``{p}:ticket:{id}:sla`` hash: per metric (``first_reply``, ``next_reply``,
  ``resolution``) the fields ``{metric}:state``, ``:kind``, ``:deadline``, ``:breached``
  (``1``/``0``), ``:policy``, ``:elapsed``, ``:paused``, ``:updated_at`` and the replay
  guard ``:at_us`` / ``:kinds_at``; and the newest breach-risk score as ``risk``,
  ``risk_version``, ``risk_scored_at``, ``risk_deadline``, ``risk_metric``,
  ``risk_model_version``, ``risk_queue``;
- ``{p}:sla`` stream of applied SLA events (capped, approximately);
- ``{p}:alerts`` stream of the ``breach`` events among them (capped, approximately).

Kept as one module: the Lua script and the Python that builds its calls must
agree argument by argument.
"""

from __future__ import annotations

import functools
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import redis
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from models.anomaly import AnomalyAlert
from models.codecs import (
    agent_queue_key,
    agents_key,
    alerts_key,
    anomalies_key,
    holding_key,
    queue_score,
    routing_hash,
    sla_key,
    sla_stream_key,
    stats_key,
    stream_key,
    ticket_key,
)
from models.events import DeadLetter
from models.helpdesk import RoutingDecision
from models.signals import BreachRiskScore
from models.sla import SlaEvent
from models.telemetry import (
    report_decisions,
    report_stage,
    report_written,
    telemetry,
)
from sinks.dead_letters import rejected_dead_letter
from sinks.postgres import RefusalStore
from sinks.retry import DEFAULT_RETRY, RetryPolicy, retry_connection_loss

log = logging.getLogger(__name__)

RedisItem = RoutingDecision | SlaEvent | BreachRiskScore | AnomalyAlert
"""What the Redis sink accepts."""

REJECTED_STAGE = "write_live"
"""Stage of the dead letters for items live state cannot hold."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# Decision. KEYS: 1 ticket hash, 2 target sorted set (agent queue or holding; unused when
#       released), 3 stream, 4 stats, 5 agents set.
# ARGV: 1 key templates of an agent's queue and of a queue's holding list, as a list
#       [[head, tail], [head, tail]] (the key is head .. id .. tail; from the codec),
#       2 ticket id, 3 version (decimal), 4 status, 5 agent id ('' if none),
#       6 queue, 7 score, 8 stream max length, 9 released TTL seconds (0 = keep),
#       10 the decision's fields as a list [field, value, field, value, ...].
# SLA event. KEYS: 1 ticket SLA hash, 2 SLA stream, 3 alerts stream.
# ARGV: 1 metric, 2 at (epoch microseconds, decimal), 3 kind, 4 stream max length,
#       5 TTL seconds (0 = keep), 6 hash fields and 7 stream fields, as lists.
# Replay guard: the hash keeps the newest event instant per metric (`:at_us`) and the kinds
# applied at that instant (`:kinds_at`), since a clock can change twice in one instant
# (apply then pause). An event older than the instant, or of a kind already applied at it,
# is skipped: that is the analytics key (ticket_id, metric, kind, at) for the newest instant.
# Risk score. KEYS: 1 ticket SLA hash. ARGV: 1 version (decimal), 2 TTL seconds (0 = keep),
#       3 the hash fields as a list.
# A batch of calls travels as one JSON argument ([[op, keys, args], ...]) to one script
# run, which applies them in order; per-call packing in the client cost more than the
# scripts.
# The fields travel inside that one JSON argument as nested lists (not as JSON strings of
# their own, which were encoded, escaped and decoded twice): packing dozens of separate
# arguments per call costs more client CPU than the script itself.
# Versions are LSNs, which can exceed a Lua double's exact range, so they are compared as
# decimal strings: longer is larger, equal lengths compare lexically.
_APPLY_DECISIONS = """
local function newer(a, b)
  if #a ~= #b then return #a > #b end
  return a > b
end
local function apply_decision(K, A)
  local version = A[3]
  local current = redis.call('HGET', K[1], 'version')
  if current and not newer(version, current) then
    return 0
  end
  local templates = A[1]
  local ticket, status, agent, queue = A[2], A[4], A[5], A[6]
  local prev = redis.call('HMGET', K[1], 'agent_id', 'status', 'queue')
  local prev_agent, prev_status, prev_queue = prev[1], prev[2], prev[3]
  -- Leave the previous placement unless the decision keeps the ticket exactly there.
  if prev_agent and prev_agent ~= '' and prev_status == 'assigned'
      and not (status == 'assigned' and agent == prev_agent) then
    redis.call('ZREM', templates[1][1] .. prev_agent .. templates[1][2], ticket)
  end
  if prev_queue and prev_status == 'queued'
      and not (status == 'queued' and queue == prev_queue) then
    redis.call('ZREM', templates[2][1] .. prev_queue .. templates[2][2], ticket)
  end
  if status == 'assigned' then
    redis.call('ZADD', K[2], A[7], ticket)
    redis.call('SADD', K[5], agent)
  elseif status == 'queued' then
    redis.call('ZADD', K[2], A[7], ticket)
  end
  local fields = A[10]
  local now = redis.call('TIME')
  local applied_at = now[1] .. string.format('%06d', tonumber(now[2]))
  redis.call('DEL', K[1])
  redis.call('HSET', K[1], 'previous_agent_id', prev_agent or '',
    'applied_at_us', applied_at, unpack(fields))
  if status == 'released' and tonumber(A[9]) > 0 then
    redis.call('EXPIRE', K[1], A[9])
  end
  redis.call('XADD', K[3], 'MAXLEN', '~', A[8], '*',
    'applied_at_us', applied_at, unpack(fields))
  redis.call('HINCRBY', K[4], 'decisions', 1)
  redis.call('HINCRBY', K[4], status, 1)
  return 1
end
local function apply_sla(K, A)
  local metric, at, kind = A[1], A[2], A[3]
  local seen = redis.call('HMGET', K[1], metric .. ':at_us', metric .. ':kinds_at')
  local kinds = kind
  if seen[1] then
    if newer(seen[1], at) then
      return 0
    end
    if seen[1] == at then
      for applied_kind in string.gmatch(seen[2] or '', '[^,]+') do
        if applied_kind == kind then
          return 0
        end
      end
      kinds = (seen[2] or '') .. ',' .. kind
    end
  end
  redis.call('HSET', K[1], metric .. ':at_us', at, metric .. ':kinds_at', kinds,
    unpack(A[6]))
  if tonumber(A[5]) > 0 then
    redis.call('EXPIRE', K[1], A[5])
  end
  local entry = A[7]
  redis.call('XADD', K[2], 'MAXLEN', '~', A[4], '*', unpack(entry))
  if kind == 'breach' then
    redis.call('XADD', K[3], 'MAXLEN', '~', A[4], '*', unpack(entry))
  end
  return 1
end
local function apply_risk(K, A)
  local current = redis.call('HGET', K[1], 'risk_version')
  if current and not newer(A[1], current) then
    return 0
  end
  redis.call('HSET', K[1], unpack(A[3]))
  if tonumber(A[2]) > 0 then
    redis.call('EXPIRE', K[1], A[2])
  end
  return 1
end
-- Anomaly alert. KEYS: 1 set of alerts already published, 2 alerts stream.
-- ARGV: 1 alert id (series|bucket start), 2 stream max length, 3 fields (a list).
local function apply_anomaly(K, A)
  if redis.call('SADD', K[1], A[1]) == 0 then
    return 0
  end
  redis.call('XADD', K[2], 'MAXLEN', '~', A[2], '*', unpack(A[3]))
  return 1
end
local handlers = {decision = apply_decision, sla = apply_sla, risk = apply_risk,
                  anomaly = apply_anomaly}
local applied = 0
for _, call in ipairs(cjson.decode(ARGV[1])) do
  applied = applied + handlers[call[1]](call[2], call[3])
end
return applied
"""


_SCRIPT_BATCH = 500


@dataclass(frozen=True)
class RedisScriptCall:
    """One item's call of the apply script: which function, its keys and arguments."""

    op: str
    """``decision``, ``sla``, ``risk`` or ``anomaly``."""
    keys: list[str]
    args: list[Any]
    """Strings, and lists of strings (field lists, key templates)."""


def _flat(fields: dict[str, str]) -> list[str]:
    return [part for pair in fields.items() for part in pair]


def _iso(value: datetime | None) -> str:
    return "" if value is None else value.isoformat()


@functools.lru_cache(maxsize=8)
def _key_templates(prefix: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The codec's agent-queue and holding-list keys as templates the script fills in."""
    marker = "\x00"
    return (
        tuple(agent_queue_key(prefix, marker).split(marker)),
        tuple(holding_key(prefix, marker).split(marker)),
    )


def decision_to_redis_args(
    decision: RoutingDecision,
    prefix: str = "triage",
    *,
    stream_maxlen: int = 100_000,
    released_ttl: int = 0,
) -> RedisScriptCall:
    """Build the script call that applies ``decision`` (pure; no I/O).

    Args:
        decision: The routing decision to apply.
        prefix: Key prefix.
        stream_maxlen: Approximate cap of the decision stream.
        released_ttl: Seconds a released ticket's hash is kept; ``0`` keeps it forever.

    Returns:
        The script's keys and arguments.

    Raises:
        ValueError: For a negative version or an assignment without an agent.
    """
    if decision.version < 0:
        raise ValueError(f"ticket {decision.ticket_id}: negative version {decision.version}")
    if decision.status == "assigned":
        if decision.agent_id is None:
            raise ValueError(f"ticket {decision.ticket_id}: assigned without an agent")
        target = agent_queue_key(prefix, decision.agent_id)
    else:  # queued; a released decision passes it too, but the script leaves it alone
        target = holding_key(prefix, decision.queue)
    fields = routing_hash(decision)
    return RedisScriptCall(
        op="decision",
        keys=[
            ticket_key(prefix, decision.ticket_id),
            target,
            stream_key(prefix),
            stats_key(prefix),
            agents_key(prefix),
        ],
        args=[
            _key_templates(prefix),
            str(decision.ticket_id),
            str(decision.version),
            decision.status,
            fields["agent_id"],
            decision.queue,
            repr(queue_score(decision.priority, decision.decided_at)),
            str(stream_maxlen),
            str(released_ttl),
            _flat(fields),
        ],
    )


def sla_event_fields(event: SlaEvent) -> dict[str, str]:
    """The SLA event as flat string fields, as stored in the SLA and alerts streams."""
    return {
        "ticket_id": str(event.ticket_id),
        "metric": event.metric,
        "kind": event.kind,
        "state": event.clock_state,
        "at": event.at.isoformat(),
        "deadline": _iso(event.deadline),
        "policy": event.policy,
        "business_seconds_elapsed": repr(float(event.business_seconds_elapsed)),
        "paused_seconds": repr(float(event.paused_seconds)),
        "breached": "1" if event.breached else "0",
    }


def sla_event_to_redis_args(
    event: SlaEvent,
    prefix: str = "triage",
    *,
    stream_maxlen: int = 100_000,
    sla_ttl: int = 0,
) -> RedisScriptCall:
    """Build the script call that applies an SLA event (pure; no I/O).

    Args:
        event: The metric clock change.
        prefix: Key prefix.
        stream_maxlen: Approximate cap of the SLA and alerts streams.
        sla_ttl: Seconds the ticket's SLA hash lives after its last change; ``0`` keeps it.

    Returns:
        The script's keys and arguments.

    Raises:
        ValueError: For an event before 1970 (its instant is the replay guard).
    """
    at_us = (event.at - _EPOCH) // timedelta(microseconds=1)
    if at_us < 0:
        raise ValueError(f"ticket {event.ticket_id}: SLA event before 1970: {event.at}")
    fields = sla_event_fields(event)
    m = event.metric
    state = {
        f"{m}:state": fields["state"],
        f"{m}:kind": event.kind,
        f"{m}:deadline": fields["deadline"],
        f"{m}:breached": fields["breached"],
        f"{m}:policy": event.policy,
        f"{m}:elapsed": fields["business_seconds_elapsed"],
        f"{m}:paused": fields["paused_seconds"],
        f"{m}:updated_at": fields["at"],
    }
    return RedisScriptCall(
        op="sla",
        keys=[sla_key(prefix, event.ticket_id), sla_stream_key(prefix), alerts_key(prefix)],
        args=[
            m,
            str(at_us),
            event.kind,
            str(stream_maxlen),
            str(sla_ttl),
            _flat(state),
            _flat(fields),
        ],
    )


def risk_fields(score: BreachRiskScore) -> dict[str, str]:
    """The breach-risk score as the ``risk*`` fields of the ticket's SLA hash."""
    return {
        "risk": repr(float(score.risk)),
        "risk_version": str(score.version),
        "risk_scored_at": score.scored_at.isoformat(),
        "risk_deadline": _iso(score.deadline),
        "risk_metric": score.metric or "",
        "risk_model_version": score.model_version,
        "risk_queue": score.queue,
    }


def risk_to_redis_args(
    score: BreachRiskScore, prefix: str = "triage", *, sla_ttl: int = 0
) -> RedisScriptCall:
    """Build the script call that stores a breach-risk score (pure; no I/O).

    Raises:
        ValueError: For a negative version.
    """
    if score.version < 0:
        raise ValueError(f"ticket {score.ticket_id}: negative risk version {score.version}")
    return RedisScriptCall(
        op="risk",
        keys=[sla_key(prefix, score.ticket_id)],
        args=[str(score.version), str(sla_ttl), _flat(risk_fields(score))],
    )


def anomaly_to_redis_args(
    alert: AnomalyAlert, prefix: str = "triage", *, stream_maxlen: int = 100_000
) -> RedisScriptCall:
    """Publish a volume anomaly on the alerts stream once (pure; no I/O).

    Idempotency key: the series and the bucket start, kept in ``{prefix}:anomalies``.
    """
    alert_id = f"{alert.series}|{alert.start.isoformat()}"
    drivers = [
        {
            "dimension": d.dimension,
            "value": d.value,
            "observed": d.observed,
            "expected": round(d.expected, 3),
            "lift": round(d.lift, 3),
        }
        for d in alert.drivers
    ]
    fields = {
        "type": "anomaly",
        "series": alert.series,
        "start": alert.start.isoformat(),
        "observed": repr(float(alert.observed)),
        "expected": repr(round(float(alert.expected), 3)),
        "score": repr(round(float(alert.score), 3)),
        "drivers": json.dumps(drivers),
    }
    return RedisScriptCall(
        op="anomaly",
        keys=[anomalies_key(prefix), alerts_key(prefix)],
        args=[alert_id, str(stream_maxlen), _flat(fields)],
    )


def item_to_redis_call(
    item: RedisItem,
    prefix: str = "triage",
    *,
    stream_maxlen: int = 100_000,
    released_ttl: int = 0,
    sla_ttl: int = 0,
) -> RedisScriptCall:
    """Build the script call for any item the sink accepts (pure; no I/O).

    Raises:
        TypeError: For an item of another type.
        ValueError: For an item the script could not order (see the per-type builders).
    """
    if isinstance(item, RoutingDecision):
        return decision_to_redis_args(
            item, prefix, stream_maxlen=stream_maxlen, released_ttl=released_ttl
        )
    if isinstance(item, SlaEvent):
        return sla_event_to_redis_args(item, prefix, stream_maxlen=stream_maxlen, sla_ttl=sla_ttl)
    if isinstance(item, BreachRiskScore):
        return risk_to_redis_args(item, prefix, sla_ttl=sla_ttl)
    if isinstance(item, AnomalyAlert):
        return anomaly_to_redis_args(item, prefix, stream_maxlen=stream_maxlen)
    raise TypeError(f"RedisSink cannot write {type(item).__name__}")


class _RedisPartition(StatelessSinkPartition[RedisItem]):
    """One worker's Redis client; applies each batch in one pipeline."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str,
        stream_maxlen: int,
        released_ttl: int,
        sla_ttl: int,
        socket_timeout: float,
        retry: RetryPolicy,
        dead_letter_dsn: str | None = None,
    ) -> None:
        self._prefix = prefix
        self._stream_maxlen = stream_maxlen
        self._released_ttl = released_ttl
        self._sla_ttl = sla_ttl
        self._retry = retry
        self._refusals = RefusalStore(dead_letter_dsn, sink="redis")
        self._client = redis.Redis.from_url(
            url, socket_timeout=socket_timeout, socket_connect_timeout=socket_timeout
        )
        # Fail at start-up, not at the first batch, when Redis is unreachable.
        self._client.ping()
        self._apply = self._client.register_script(_APPLY_DECISIONS)
        self._client.script_load(_APPLY_DECISIONS)
        self.applied = 0
        """Items applied so far (stale or replayed ones are not counted)."""

    def write_batch(self, items: list[RedisItem]) -> None:
        """Apply the batch in order; returns once Redis acknowledged every script.

        Connection loss is retried with exponential backoff; re-running the whole batch
        is safe because the script skips items that are not newer than the stored state.
        """
        calls = []
        refused: list[DeadLetter] = []
        for item in items:
            try:
                calls.append(
                    item_to_redis_call(
                        item,
                        self._prefix,
                        stream_maxlen=self._stream_maxlen,
                        released_ttl=self._released_ttl,
                        sla_ttl=self._sla_ttl,
                    )
                )
            except ValueError as exc:
                # An item live state cannot hold (an assignment without an agent, say):
                # skipped, not fatal. The analytics store has it (or its dead letter).
                log.error("redis live state skips %s: %s", type(item).__name__, exc)
                refused.append(
                    rejected_dead_letter(item, stage=REJECTED_STAGE, reason=f"redis: {exc}")
                )
        self._refusals.write(refused)
        if not calls:
            return
        # Bounded script runs: Redis serves nobody else while a script executes.
        chunks = [
            json.dumps(
                [[c.op, c.keys, c.args] for c in calls[i : i + _SCRIPT_BATCH]],
                separators=(",", ":"),
            )
            for i in range(0, len(calls), _SCRIPT_BATCH)
        ]

        def attempt() -> None:
            # EVALSHA straight into the pipeline: a registered Script would first ask
            # SCRIPT EXISTS, one more round trip per batch. A Redis that lost the script
            # (restart, flush) answers NOSCRIPT to every call, so none ran: load it and
            # send the batch again.
            while True:
                pipe = self._client.pipeline(transaction=False)
                for chunk in chunks:
                    pipe.evalsha(self._apply.sha, 0, chunk)
                try:
                    results = pipe.execute()
                except redis.exceptions.NoScriptError:
                    self._client.script_load(_APPLY_DECISIONS)
                    continue
                self.applied += sum(int(r) for r in results)
                return

        # Every call is idempotent (version-guarded), so a lost batch is sent again whole.
        retry_connection_loss(
            attempt,
            describe=f"redis write of {len(calls)} items",
            policy=self._retry,
            on_retry=lambda: telemetry().sink_retry("redis"),
            errors=(redis.ConnectionError, redis.TimeoutError),
        )
        report_written("redis", items)
        report_decisions(items)
        report_stage("write_live", (i for i in items if isinstance(i, RoutingDecision)))

    def close(self) -> None:
        """Release the client's connections when the dataflow ends."""
        self._client.close()
        self._refusals.close()


class RedisSink(DynamicSink[RedisItem]):
    """Publish routing decisions, SLA events and breach-risk scores to Redis.

    Delivery guarantee: at-least-once from the flow, effectively-once in Redis.
    Idempotency keys, each checked and applied atomically by the script:

    - routing decision: the ticket id with the decision's ``version`` (source LSN); it is
      applied only when greater than the stored one, so replays add no stream entries,
      count nothing twice and never move a ticket back;
    - SLA event: ``(ticket_id, metric, kind, at)``; per ticket and metric the hash keeps
      the newest event instant and the kinds applied at it, and an event that is older, or
      of a kind already applied at that instant, is skipped (no second stream or alert
      entry). An event arriving after a newer one of its metric is skipped too: Redis holds
      the live clock, the analytics store keeps every event;
    - breach-risk score: the ticket id with the score's ``version``; only a greater one
      replaces the stored score.

    An item live state cannot hold (an assignment without an agent, a negative version,
    an SLA event before 1970) is skipped with an error log and becomes a dead letter of
    stage ``write_live`` (stored when ``dead_letter_dsn`` is given); the rest of the batch
    is applied.

    Key layout: see the module docstring. Keys of one decision are computed inside the
    script (the previous agent's queue), so this targets a standalone Redis, not a cluster.

    Args:
        url: Redis URL, e.g. ``redis://localhost:6379/0``.
        prefix: Key prefix.
        stream_maxlen: Approximate cap of each stream (decisions, SLA, alerts).
        released_ttl: Seconds a released ticket's hash is kept (bounds memory); ``0``
            keeps it forever. A replay older than this could re-apply a stale decision.
        sla_ttl: Seconds a ticket's SLA hash is kept after its last change (bounds memory;
            the API then answers from the analytics store); ``0`` keeps it forever. A
            replay older than this could append its SLA events to the streams again.
        socket_timeout: Seconds to wait for Redis on connect and on each reply.
        retry: Delays and limit of the retries after a connection loss; by default
            it retries for as long as it takes (the flow stalls rather than drop data).
        dead_letter_dsn: The analytics database, whose ``dead_letters`` table receives the
            items live state cannot hold, with the reason; ``None``: logged and counted.
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "triage",
        stream_maxlen: int = 100_000,
        released_ttl: int = 7 * 24 * 3600,
        sla_ttl: int = 30 * 24 * 3600,
        socket_timeout: float = 5.0,
        retry: RetryPolicy = DEFAULT_RETRY,
        dead_letter_dsn: str | None = None,
    ) -> None:
        self._url = url
        self._prefix = prefix
        self._stream_maxlen = stream_maxlen
        self._released_ttl = released_ttl
        self._sla_ttl = sla_ttl
        self._socket_timeout = socket_timeout
        self._retry = retry
        self._dead_letter_dsn = dead_letter_dsn

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _RedisPartition:
        """Connect this worker's client and check that Redis answers."""
        return _RedisPartition(
            self._url,
            prefix=self._prefix,
            stream_maxlen=self._stream_maxlen,
            released_ttl=self._released_ttl,
            sla_ttl=self._sla_ttl,
            socket_timeout=self._socket_timeout,
            retry=self._retry,
            dead_letter_dsn=self._dead_letter_dsn,
        )
