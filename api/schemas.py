"""Response schemas of the read API."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Source = Literal["redis", "analytics"]

JSON_SAFE_MAX = 2**53 - 1
"""Largest id a JSON body carries exactly in every client (IEEE doubles, as in JavaScript)."""


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


class WorkOutcomeIn(BaseModel):
    """A finished work item: who handled it and how long it took.

    The router frees the agent, releases the item and learns the handling time per agent
    and work type. Without ``ticket_id`` the outcome is history to learn from (it then
    needs ``work_type``).
    """

    # The rule of the validator below, stated in the schema so that clients see it.
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "anyOf": [
                {"required": ["ticket_id"], "properties": {"ticket_id": {"type": "integer"}}},
                {
                    "required": ["work_type"],
                    "properties": {"work_type": {"type": "string", "pattern": "\\S"}},
                },
            ]
        },
    )

    ticket_id: int | None = Field(
        default=None, ge=1, le=JSON_SAFE_MAX, description="The routed item; null: history only"
    )
    agent_id: int = Field(ge=1, le=JSON_SAFE_MAX, description="The agent who handled it")
    queue: str = Field(
        min_length=1,
        max_length=200,
        pattern=r"^[^\x00-\x1f\x7f]*\S[^\x00-\x1f\x7f]*$",
        description="Queue of the routing decision",
    )
    work_type: str | None = Field(
        default=None,
        max_length=200,
        pattern=r"^[^\x00-\x1f\x7f]*$",
        description="Work type (category); null: the category the item was routed with",
    )
    handling_seconds: float = Field(ge=0, le=1e9, allow_inf_nan=False)
    wait_seconds: float | None = Field(default=None, ge=0, le=1e9, allow_inf_nan=False)
    quality: float | None = Field(
        default=None, ge=0, le=1, allow_inf_nan=False, description="e.g. a survey score in 0..1"
    )
    completed_at: datetime | None = Field(default=None, description="Default: when received")

    @model_validator(mode="after")
    def _item_or_type(self) -> WorkOutcomeIn:
        if self.ticket_id is None and not (self.work_type or "").strip():
            raise ValueError("an outcome without ticket_id needs a work_type")
        return self


class WorkOutcomeAccepted(BaseModel):
    """The stored outcome; the pipeline applies it when CDC delivers the row."""

    id: int
    completed_at: datetime
