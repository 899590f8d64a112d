"""The outcome input: ``POST /v1/outcomes`` stores a finished work item in the helpdesk
database's ``work_outcomes`` table.

The API does not change routing state itself: the row travels through CDC like every other
change, so the router learns it in commit order and relearns it on a replay. The answer is
``202 Accepted`` with the row's id; the released decision follows on the routing reads.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, HTTPException, Request, status

from api.schemas import ErrorPublic, WorkOutcomeAccepted, WorkOutcomeIn

router = APIRouter(prefix="/v1", tags=["routing"])

_INSERT = (
    "INSERT INTO work_outcomes (ticket_id, agent_id, queue, work_type, handling_seconds,"
    " wait_seconds, quality, origin, completed_at)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, 'api', %s) RETURNING id"
)


@router.post(
    "/outcomes",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=WorkOutcomeAccepted,
    responses={
        400: {"model": ErrorPublic, "description": "The body is not JSON."},
        503: {"model": ErrorPublic, "description": "No outcome store is configured."},
    },
    summary="Report a finished work item (handling time) for the router to learn",
)
def post_outcome(outcome: WorkOutcomeIn, request: Request) -> WorkOutcomeAccepted:
    pool: Any = getattr(request.app.state, "outcomes_pool", None)
    if pool is None:
        raise HTTPException(
            status_code=503,
            detail="outcome input not configured (set TRIAGE_API__OUTCOMES_DSN)",
        )
    completed_at = outcome.completed_at or datetime.now(UTC)
    if completed_at.tzinfo is None:
        completed_at = completed_at.replace(tzinfo=UTC)
    work_type = (outcome.work_type or "").strip() or None
    with pool.connection() as conn:
        row = conn.execute(
            _INSERT,
            (
                outcome.ticket_id,
                outcome.agent_id,
                outcome.queue.strip(),
                work_type,
                outcome.handling_seconds,
                outcome.wait_seconds,
                outcome.quality,
                completed_at,
            ),
        ).fetchone()
    return WorkOutcomeAccepted(id=row[0], completed_at=completed_at)
