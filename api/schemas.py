"""Response schemas of the read API."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

Source = Literal["redis", "analytics"]


class ErrorPublic(BaseModel):
    """An error response."""

    detail: str = Field(examples=["no routing decision for ticket 123"])


class RoutingDecisionPublic(BaseModel):
    """The current routing decision of a ticket."""

    ticket_id: int
    version: int = Field(description="Source position (LSN) of the change that was routed")
    status: Literal["assigned", "queued", "released"]
    queue: str
    agent_id: int | None = Field(description="Assigned agent; null unless status is assigned")
    score: float
    confidence: float
    reasons: list[str] = Field(description="Top reasons for the decision, strongest first")
    priority: str
    sla_deadline: datetime | None
    model_version: str
    decided_at: datetime
    source_committed_at: datetime = Field(description="Commit time of the routed change")
    candidates: int = Field(description="Number of agents that were considered")
    source: Source = Field(description="Store that answered: live Redis or the analytics DB")


class QueuedTicketPublic(BaseModel):
    """A ticket waiting in an agent's queue or a holding list."""

    ticket_id: int
    priority: str
    queued_at: datetime = Field(description="When the ticket was routed there")


class AgentQueuePublic(BaseModel):
    """An agent's assigned tickets, most urgent first, then oldest first."""

    agent_id: int
    count: int = Field(description="Total tickets in the queue (may exceed the page)")
    tickets: list[QueuedTicketPublic]
    source: Source


class HoldingQueuePublic(BaseModel):
    """Tickets of a queue that wait for an eligible agent, most urgent first."""

    queue: str
    count: int = Field(description="Total tickets waiting (may exceed the page)")
    tickets: list[QueuedTicketPublic]
    source: Source


class SlaMetricPublic(BaseModel):
    """The current clock of one SLA metric of a ticket."""

    metric: Literal["first_reply", "next_reply", "resolution"]
    state: Literal["running", "paused", "fulfilled"]
    last_event: Literal["apply", "pause", "resume", "fulfill", "breach", "update"] = Field(
        description="Kind of the latest change of the clock"
    )
    deadline: datetime | None = Field(
        description="When the target is due (or the deadline it missed); null while paused"
    )
    breached: bool = Field(description="Whether the target has been missed")
    policy: str = Field(description="SLA policy that sets the target")
    business_seconds_elapsed: float = Field(description="Target time used so far")
    paused_seconds: float = Field(description="Wall-clock time the clock spent paused")
    updated_at: datetime = Field(description="Time of the latest change of the clock")


class BreachRiskPublic(BaseModel):
    """The newest estimate that an open ticket will miss an SLA target."""

    risk: float = Field(ge=0, le=1, description="Probability of a breach")
    version: int = Field(description="Orders the scores of a ticket; the greatest is kept")
    scored_at: datetime
    deadline: datetime | None = Field(description="Nearest running deadline, if any")
    metric: str | None = Field(description="Metric of that deadline")
    model_version: str
    queue: str


class TicketSlaPublic(BaseModel):
    """A ticket's SLA clocks (first reply, next reply, resolution) and its breach risk."""

    ticket_id: int
    metrics: list[SlaMetricPublic] = Field(description="Known metrics, in lifecycle order")
    risk: BreachRiskPublic | None = Field(description="Null when the ticket was never scored")
    source: Source = Field(description="Store that answered: live Redis or the analytics DB")


class CheckPublic(BaseModel):
    """The outcome of one store's health check."""

    status: Literal["ok", "error"]
    latency_ms: float
    error: str | None = None


class HealthPublic(BaseModel):
    """Overall health: ``ok`` only when every store answered."""

    status: Literal["ok", "unavailable"]
    checks: dict[str, CheckPublic]
