"""SLA reads: a ticket's metric clocks and its newest breach-risk score.

Live state comes from the ticket's SLA hash in Redis (written by the Redis sink); when
Redis has nothing for the ticket, or is unreachable, the analytics tables ``ticket_sla``
and ``ticket_risk`` (written by the PostgreSQL sink) answer instead.
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from fastapi import APIRouter, HTTPException
from psycopg import sql
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool
from pydantic import ValidationError

from api.deps import PgPoolDep, RedisDep, SettingsDep
from api.routes.routing import TicketId
from api.schemas import BreachRiskPublic, ErrorPublic, SlaMetricPublic, TicketSlaPublic
from models.codecs import sla_key

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1", tags=["sla"])

METRICS = ("first_reply", "next_reply", "resolution")
"""SLA metrics in lifecycle order, the order of the response's list."""


def _sla_from_hash(ticket_id: int, fields: dict[str, str]) -> TicketSlaPublic:
    metrics = [
        SlaMetricPublic(
            metric=m,
            state=fields[f"{m}:state"],
            last_event=fields[f"{m}:kind"],
            deadline=fields.get(f"{m}:deadline") or None,
            breached=fields.get(f"{m}:breached") == "1",
            policy=fields[f"{m}:policy"],
            business_seconds_elapsed=float(fields[f"{m}:elapsed"]),
            paused_seconds=float(fields[f"{m}:paused"]),
            updated_at=fields[f"{m}:updated_at"],
        )
        for m in METRICS
        if f"{m}:state" in fields
    ]
    risk = None
    if "risk" in fields:
        risk = BreachRiskPublic(
            risk=float(fields["risk"]),
            version=int(fields["risk_version"]),
            scored_at=fields["risk_scored_at"],
            deadline=fields.get("risk_deadline") or None,
            metric=fields.get("risk_metric") or None,
            model_version=fields["risk_model_version"],
            queue=fields["risk_queue"],
        )
    return TicketSlaPublic(ticket_id=ticket_id, metrics=metrics, risk=risk, source="redis")


def _sla_from_analytics(
    *, pool: ConnectionPool[Any], schema: str, ticket_id: int
) -> TicketSlaPublic | None:
    clocks = sql.SQL(
        "SELECT metric, state, kind AS last_event, deadline, breached, policy,"
        " business_seconds_elapsed, paused_seconds, updated_at FROM {table}"
        " WHERE ticket_id = %s ORDER BY array_position(%s::text[], metric)"
    ).format(table=sql.Identifier(schema, "ticket_sla"))
    risk = sql.SQL(
        "SELECT risk, version, scored_at, deadline, metric, model_version, queue"
        " FROM {table} WHERE ticket_id = %s"
    ).format(table=sql.Identifier(schema, "ticket_risk"))
    with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        metric_rows = cur.execute(clocks, (ticket_id, list(METRICS))).fetchall()
        risk_row = cur.execute(risk, (ticket_id,)).fetchone()
    if not metric_rows and risk_row is None:
        return None
    return TicketSlaPublic(
        ticket_id=ticket_id,
        metrics=[SlaMetricPublic(**row) for row in metric_rows],
        risk=None if risk_row is None else BreachRiskPublic(**risk_row),
        source="analytics",
    )


def get_ticket_sla(
    *, client: redis.Redis, pool: ConnectionPool[Any], prefix: str, schema: str, ticket_id: int
) -> TicketSlaPublic | None:
    """The ticket's SLA clocks and risk from Redis, else from the analytics database."""
    try:
        fields: dict[str, str] = client.hgetall(sla_key(prefix, ticket_id))  # type: ignore[assignment]
        if fields:
            return _sla_from_hash(ticket_id, fields)
    except redis.RedisError as exc:
        log.warning("redis unavailable for ticket %d SLA, reading analytics: %s", ticket_id, exc)
    except (KeyError, ValueError, ValidationError):
        log.exception("malformed SLA hash for ticket %d, reading analytics", ticket_id)
    return _sla_from_analytics(pool=pool, schema=schema, ticket_id=ticket_id)


@router.get(
    "/tickets/{ticket_id}/sla",
    response_model=TicketSlaPublic,
    summary="SLA clocks and breach risk of a ticket",
    description=(
        "State, deadline and breach of each SLA metric (first reply, next reply, resolution) "
        "and the newest breach-risk score. Served from Redis; falls back to the analytics "
        "database."
    ),
    responses={404: {"model": ErrorPublic, "description": "No SLA data for this ticket"}},
)
def read_ticket_sla(
    ticket_id: TicketId, client: RedisDep, pool: PgPoolDep, settings: SettingsDep
) -> TicketSlaPublic:
    found = get_ticket_sla(
        client=client,
        pool=pool,
        prefix=settings.key_prefix,
        schema=settings.analytics_schema,
        ticket_id=ticket_id,
    )
    if found is None:
        raise HTTPException(status_code=404, detail=f"no SLA data for ticket {ticket_id}")
    return found
