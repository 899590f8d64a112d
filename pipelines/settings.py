"""Settings of the triage dataflow itself (what it computes, not where data lives)."""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

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
    require_language: bool = True
    prefer_longest_idle: bool = False
    # At the end of every epoch each key changed in it is snapshotted into the recovery
    # store while decisions wait (queues hand over their journaled state; the text models
    # only in epochs with a lesson). The pause grows with the epoch, and at 200 tickets/s
    # it set the latency's p99 (README, Benchmark): 1 s epochs gave a p99 of 165-183 ms
    # where Bytewax's default of 10 s gave 305-452 ms, with the same new-ticket
    # throughput, and a crash replays less. They cost about 20% of the mixed stream's
    # throughput (a ticket's changes fall in more epochs, each snapshots what it touched)
    # and write more to the recovery store (each touched queue hands over its whole base
    # every epoch): back-fills may prefer 2 s or 10 s.
    epoch_interval: timedelta = timedelta(seconds=1)
    warehouse_flush: timedelta = timedelta(seconds=10)
    warehouse_batch: int = Field(default=5_000, gt=0)
    ranker: Literal["learned", "expected_time", "least_loaded", "round_robin"] = "learned"
    # Queue -> routing pool. Queues of one pool share one routing state (agents, load,
    # holding list, SLA clocks), so an agent who also serves another queue of the pool
    # (agents.queues) is booked once across them. Unlisted queues are their own pool.
    routing_pools: dict[str, str] = Field(default_factory=dict)
    apply_threshold: float = Field(default=0.7, ge=0.0, le=1.0)
    min_examples: int = Field(default=30, ge=0)
    text_features: int = Field(default=2**16, ge=2**10)
    seed: int = 0
    # A ticket that arrives before its customer (Kafka reads tables independently) waits
    # this long for the customer's row, then goes to the dead letters; 0: never wait.
    customer_wait: timedelta = Field(default=timedelta(seconds=30), ge=timedelta(0))
    # Comments take a shorter path than ticket changes; one newer than every change seen
    # for its ticket waits this long for earlier changes, so SLA clocks see commit order.
    # Kafka delivers a ticket's changes and comments on two topics read independently:
    # they wait this long at the per-ticket step and leave in commit order. Unset: 1 s in
    # Kafka mode, none for the embedded reader (one ordered stream).
    reorder_window: timedelta | None = Field(default=None, ge=timedelta(0))
    comment_hold: timedelta = Field(default=timedelta(seconds=1), ge=timedelta(0))
    # Per ticket change and step (enrich, classify): once this is spent, optional parts
    # (sentiment, multi-label categories, learned priority, KB suggestions) are skipped
    # and the ticket's ``degraded`` says so; what decides the route always runs. 0: none.
    event_budget: timedelta = Field(default=timedelta(milliseconds=250), ge=timedelta(0))
    warehouse_shards: int = Field(
        default=16, gt=0, description="warehouse buffers (and files per flush) per ticket shard"
    )
    # Text models: one learning copy publishes versions, every worker predicts with the
    # newest it has. Only a cluster of processes needs these (one process shares by
    # reference): how often the learner publishes, and how often predictors look.
    model_publish_interval: timedelta = Field(default=timedelta(seconds=2), gt=timedelta(0))
    model_refresh: float = Field(default=0.5, ge=0.0, description="seconds")
    # A KB change is published this long after it arrives (articles of one import go
    # together), not on the lessons' interval: a ticket gets suggestions only from
    # articles its process holds.
    kb_publish_delay: timedelta = Field(default=timedelta(milliseconds=250), ge=timedelta(0))

    # Live metrics on one key (default), or on a key per dimension family (all,
    # category, priority, channel), which spreads them over up to four workers of a
    # cluster. Each family's key reads every event, so one process did 3 to 7% fewer
    # events/s (README, Runtime and scale-out). Switching from one key to families keeps
    # the whole-helpdesk baselines; switching back is a state layout change (README,
    # Upgrading).
    metrics_by_family: bool = False

    def pool_of(self, queue: str) -> str:
        """The routing pool (the routing state's key) of a queue."""
        return self.routing_pools.get(queue, queue)

    def routing_policy(self) -> RoutingPolicy:
        return RoutingPolicy(
            category_queues=dict(self.category_queues),
            default_queue=self.default_queue,
            min_skill=self.min_skill,
            respect_shifts=self.respect_shifts,
            require_language=self.require_language,
            prefer_longest_idle=self.prefer_longest_idle,
        )
