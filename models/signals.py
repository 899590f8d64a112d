"""Per-ticket signals emitted by the queue step besides routing decisions."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class BreachRiskScore:
    """Probability that an open ticket will breach an SLA target, as of ``scored_at``.

    ``version`` orders scores of one ticket (a counter per queue state): a sink keeps the
    newest. ``deadline`` is the nearest running SLA deadline, if any.
    """

    ticket_id: int
    queue: str
    risk: float
    scored_at: datetime
    deadline: datetime | None
    metric: str | None
    model_version: str
    version: int
