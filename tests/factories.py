"""Shared test records: one factory per record type, overridden per test by keyword.

Each factory fills every field with a plausible value around ``T0`` (or ``at``); a test
passes only what it is about. Keeping the field lists here means a new field on a record
is added to the tests in one place.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from models.helpdesk import RoutingDecision
from models.signals import BreachRiskScore
from models.sla import SlaEvent

T0 = datetime(2025, 3, 1, 9, 30, tzinfo=UTC)


def routing_decision(
    ticket_id: int = 1, version: int = 100, *, at: datetime = T0, **changes: Any
) -> RoutingDecision:
    """An assignment in the billing queue committed at ``at`` and decided 5 ms later."""
    decision = RoutingDecision(
        ticket_id=ticket_id,
        version=version,
        queue="billing",
        status="assigned",
        agent_id=3,
        score=0.8,
        confidence=0.6,
        reasons=("skills:billing", "capacity"),
        priority="high",
        sla_deadline=at + timedelta(hours=4),
        model_version="router-1",
        decided_at=at + timedelta(milliseconds=5),
        source_committed_at=at,
        candidates=3,
    )
    return replace(decision, **changes)


def sla_event(
    ticket_id: int = 1, kind: str = "apply", *, at: datetime = T0, **changes: Any
) -> SlaEvent:
    """A first-reply event of the premium-high policy with a deadline an hour after ``at``."""
    event = SlaEvent(
        ticket_id=ticket_id,
        metric="first_reply",
        kind=kind,  # type: ignore[arg-type]
        at=at,
        deadline=at + timedelta(hours=1),
        policy="premium-high",
        business_seconds_elapsed=0.0,
        paused_seconds=0.0,
        breached=False,
    )
    return replace(event, **changes)


def breach_risk(
    ticket_id: int = 1, version: int = 1, risk: float = 0.4, *, at: datetime = T0, **changes: Any
) -> BreachRiskScore:
    """A breach-risk score of a billing ticket scored at ``at``."""
    score = BreachRiskScore(
        ticket_id=ticket_id,
        queue="billing",
        risk=risk,
        scored_at=at,
        deadline=T0 + timedelta(hours=1),
        metric="first_reply",
        model_version="risk-1",
        version=version,
    )
    return replace(score, **changes)
