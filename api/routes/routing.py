"""Routing reads: a ticket's decision, an agent's queue, a queue's holding list.

Live state comes from Redis (written by the Redis sink); when Redis has nothing for the
request, or is unreachable, the analytics database (written by the PostgreSQL sink)
answers instead. Keys, fields and priority ranks come from the routing decision's codec
(:mod:`models.codecs`), which the sinks write with.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

import redis
from fastapi import APIRouter, HTTPException, Path, Query
from psycopg import sql
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from api.deps import AsyncRedisDep, PgPoolDep, RedisDep, SettingsDep
from api.schemas import (
    AgentQueuePublic,
    ErrorPublic,
    HoldingQueuePublic,
    QueuedTicketPublic,
    RoutingDecisionPublic,
)
from models.codecs import (
    DECISION_FIELDS,
    PRIORITIES,
    agent_queue_key,
    agents_key,
    holding_key,
    priority_from_score,
    queued_at_from_score,
    routing_from_hash,
    ticket_key,
)
from models.helpdesk import RoutingDecision

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1", tags=["routing"])

_BIGINT_MAX = 2**63 - 1

TicketId = Annotated[
    int, Path(gt=0, le=_BIGINT_MAX, description="Helpdesk ticket id", examples=[123])
]
AgentId = Annotated[int, Path(gt=0, le=_BIGINT_MAX, description="Helpdesk agent id")]
QueueName = Annotated[
    str,
    Path(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="Queue name, e.g. billing",
    ),
]
Limit = Annotated[int, Query(ge=1, le=1000, description="Most tickets to return")]


def _public(decision: RoutingDecision, source: str) -> RoutingDecisionPublic:
    fields = {name: getattr(decision, name) for name in DECISION_FIELDS}
    return RoutingDecisionPublic(**fields | {"reasons": list(decision.reasons)}, source=source)


def _decision_from_hash(fields: dict[str, str]) -> RoutingDecisionPublic:
    return _public(routing_from_hash(fields), "redis")


def _queued_from_score(member: str, score: float) -> QueuedTicketPublic:
    return QueuedTicketPublic(
        ticket_id=int(member),
        priority=priority_from_score(score),
        queued_at=queued_at_from_score(score),
    )


def get_decision(
    *, client: redis.Redis, pool: ConnectionPool[Any], prefix: str, schema: str, ticket_id: int
) -> RoutingDecisionPublic | None:
    """The ticket's current decision from Redis, else from the analytics database."""
    try:
        fields: dict[str, str] = client.hgetall(ticket_key(prefix, ticket_id))  # type: ignore[assignment]
        if fields:
            return _decision_from_hash(fields)
    except redis.RedisError as exc:
        log.warning("redis unavailable for ticket %d, reading analytics: %s", ticket_id, exc)
    except (KeyError, ValueError, ValidationError):
        log.exception("malformed routing hash for ticket %d, reading analytics", ticket_id)
    return _analytics_decision(pool=pool, schema=schema, ticket_id=ticket_id)


def _analytics_decision(
    *, pool: ConnectionPool[Any], schema: str, ticket_id: int
) -> RoutingDecisionPublic | None:
    query = sql.SQL("SELECT {cols} FROM {table} WHERE ticket_id = %s").format(
        cols=sql.SQL(", ").join(map(sql.Identifier, DECISION_FIELDS)),
        table=sql.Identifier(schema, "routing_decisions"),
    )
    with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(query, (ticket_id,)).fetchone()
    if row is None:
        return None
    return RoutingDecisionPublic(**row, source="analytics")


def _analytics_queue(
    *,
    pool: ConnectionPool[Any],
    schema: str,
    status: str,
    column: str,
    value: int | str,
    limit: int,
) -> tuple[int, list[QueuedTicketPublic]]:
    table = sql.Identifier(schema, "routing_decisions")
    where = sql.SQL("status = %s AND {col} = %s").format(col=sql.Identifier(column))
    page = sql.SQL(
        "SELECT ticket_id, priority, decided_at FROM {table} WHERE {where} "
        "ORDER BY coalesce(array_position(%s::text[], priority), 3), decided_at, ticket_id "
        "LIMIT %s"
    ).format(table=table, where=where)
    total = sql.SQL("SELECT count(*) FROM {table} WHERE {where}").format(table=table, where=where)
    with pool.connection() as conn:
        rows = conn.execute(page, (status, value, list(PRIORITIES), limit)).fetchall()
        count_row = conn.execute(total, (status, value)).fetchone()
    tickets = [QueuedTicketPublic(ticket_id=r[0], priority=r[1], queued_at=r[2]) for r in rows]
    return (count_row[0] if count_row else 0), tickets


def _analytics_knows_agent(*, pool: ConnectionPool[Any], schema: str, agent_id: int) -> bool:
    query = sql.SQL(
        "SELECT EXISTS (SELECT 1 FROM {history} WHERE agent_id = %s)"
        " OR EXISTS (SELECT 1 FROM {facts} WHERE assigned_agent_id = %s)"
    ).format(
        history=sql.Identifier(schema, "routing_decision_history"),
        facts=sql.Identifier(schema, "ticket_facts"),
    )
    with pool.connection() as conn:
        row = conn.execute(query, (agent_id, agent_id)).fetchone()
    return bool(row and row[0])


def _redis_page(
    client: redis.Redis, key: str, limit: int, member_of: tuple[str, str] | None = None
) -> tuple[int, list[QueuedTicketPublic], bool]:
    pipe = client.pipeline(transaction=False)
    pipe.zrange(key, 0, limit - 1, withscores=True)
    pipe.zcard(key)
    if member_of is not None:
        pipe.sismember(*member_of)
    results = pipe.execute()
    tickets = [_queued_from_score(str(m), float(s)) for m, s in results[0]]
    known = bool(results[2]) if member_of is not None else results[1] > 0
    return int(results[1]), tickets, known


@router.get(
    "/tickets/{ticket_id}/routing",
    response_model=RoutingDecisionPublic,
    summary="Current routing decision of a ticket",
    description=(
        "Where the ticket was routed (agent or holding queue), why, and its SLA deadline. "
        "Served from Redis; falls back to the analytics database."
    ),
    responses={404: {"model": ErrorPublic, "description": "No decision for this ticket"}},
)
async def read_ticket_routing(
    ticket_id: TicketId, aclient: AsyncRedisDep, pool: PgPoolDep, settings: SettingsDep
) -> RoutingDecisionPublic:
    # The hottest read: Redis on the event loop; only the fallback takes a thread.
    decision: RoutingDecisionPublic | None = None
    try:
        fields: dict[str, str] = await aclient.hgetall(  # type: ignore[assignment]
            ticket_key(settings.key_prefix, ticket_id)
        )
        if fields:
            decision = _decision_from_hash(fields)
    except redis.RedisError as exc:
        log.warning("redis unavailable for ticket %d, reading analytics: %s", ticket_id, exc)
    except (KeyError, ValueError, ValidationError):
        log.exception("malformed routing hash for ticket %d, reading analytics", ticket_id)
    if decision is None:
        decision = await run_in_threadpool(
            _analytics_decision, pool=pool, schema=settings.analytics_schema, ticket_id=ticket_id
        )
    if decision is None:
        raise HTTPException(status_code=404, detail=f"no routing decision for ticket {ticket_id}")
    return decision


@router.get(
    "/agents/{agent_id}/queue",
    response_model=AgentQueuePublic,
    summary="An agent's queue",
    description="Tickets assigned to the agent, most urgent first, then oldest first.",
    responses={404: {"model": ErrorPublic, "description": "The agent was never routed to"}},
)
def read_agent_queue(
    agent_id: AgentId,
    client: RedisDep,
    pool: PgPoolDep,
    settings: SettingsDep,
    limit: Limit = 100,
) -> AgentQueuePublic:
    prefix = settings.key_prefix
    try:
        count, tickets, known = _redis_page(
            client,
            agent_queue_key(prefix, agent_id),
            limit,
            member_of=(agents_key(prefix), str(agent_id)),
        )
        if known or count:
            return AgentQueuePublic(agent_id=agent_id, count=count, tickets=tickets, source="redis")
    except redis.RedisError as exc:
        log.warning("redis unavailable for agent %d, reading analytics: %s", agent_id, exc)
    count, tickets = _analytics_queue(
        pool=pool,
        schema=settings.analytics_schema,
        status="assigned",
        column="agent_id",
        value=agent_id,
        limit=limit,
    )
    if not count and not _analytics_knows_agent(
        pool=pool, schema=settings.analytics_schema, agent_id=agent_id
    ):
        raise HTTPException(status_code=404, detail=f"unknown agent {agent_id}")
    return AgentQueuePublic(agent_id=agent_id, count=count, tickets=tickets, source="analytics")


@router.get(
    "/queues/{queue}/holding",
    response_model=HoldingQueuePublic,
    summary="A queue's holding list",
    description=(
        "Tickets of the queue that wait for an eligible agent, most urgent first. "
        "An unknown or empty queue returns an empty list."
    ),
)
def read_holding_queue(
    queue: QueueName,
    client: RedisDep,
    pool: PgPoolDep,
    settings: SettingsDep,
    limit: Limit = 100,
) -> HoldingQueuePublic:
    try:
        count, tickets, known = _redis_page(client, holding_key(settings.key_prefix, queue), limit)
        if known:
            return HoldingQueuePublic(queue=queue, count=count, tickets=tickets, source="redis")
    except redis.RedisError as exc:
        log.warning("redis unavailable for queue %s, reading analytics: %s", queue, exc)
    count, tickets = _analytics_queue(
        pool=pool,
        schema=settings.analytics_schema,
        status="queued",
        column="queue",
        value=queue,
        limit=limit,
    )
    return HoldingQueuePublic(queue=queue, count=count, tickets=tickets, source="analytics")
