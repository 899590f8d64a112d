"""Settings of the triage dataflow itself (what it computes, not where data lives)."""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, Field

from models.language import DEFAULT_LANGUAGES
from models.routing import DEFAULT_CATEGORY_QUEUES, RoutingPolicy


class PipelineSettings(BaseModel):
    """How tickets are enriched and routed."""

    flow_id: str = "triage"
    languages: tuple[str, ...] = DEFAULT_LANGUAGES
    category_queues: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_CATEGORY_QUEUES))
    default_queue: str = "general"
    min_skill: float = Field(default=0.3, ge=0.0, le=1.0)
    respect_shifts: bool = True
    epoch_interval: timedelta = timedelta(seconds=2)

    def routing_policy(self) -> RoutingPolicy:
        return RoutingPolicy(
            category_queues=dict(self.category_queues),
            default_queue=self.default_queue,
            min_skill=self.min_skill,
            respect_shifts=self.respect_shifts,
        )
