"""Rule-based ticket priority with recorded reasons.

A first, transparent model: customer tier, channel and urgency keywords (outage, data
loss, security) raise the priority; each rule that fired is kept as a reason so agents
and analysts can see why. A priority set by a human on the ticket always wins.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from models.helpdesk import PRIORITIES

_RANK = {p: i for i, p in enumerate(PRIORITIES)}  # urgent=0 ... low=3

# Keyword groups in the languages the workload and most helpdesks see. Each group lifts
# the priority to at least the given level.
_KEYWORDS: tuple[tuple[str, str, re.Pattern[str]], ...] = (
    (
        "urgent",
        "outage",
        re.compile(
            r"\b(outage|down for everyone|site is down|service down|ausfall|panne|caída|caido)\b",
            re.IGNORECASE,
        ),
    ),
    (
        "urgent",
        "data loss",
        re.compile(
            r"\b(data loss|lost (all )?(my )?data|datenverlust"
            r"|perte de données|pérdida de datos)\b",
            re.IGNORECASE,
        ),
    ),
    (
        "urgent",
        "security",
        re.compile(
            r"\b(security breach|hacked|compromised|unauthori[sz]ed (access|charge))\b",
            re.IGNORECASE,
        ),
    ),
    (
        "high",
        "urgency words",
        re.compile(
            r"\b(urgent|asap|immediately|dringend|sofort|urgente|inmediatamente"
            r"|de toute urgence)\b",
            re.IGNORECASE,
        ),
    ),
    (
        "high",
        "cannot work",
        re.compile(
            r"\b(can ?not|can't|unable to) (log ?in|access|pay|work)\b|\bblocked\b",
            re.IGNORECASE,
        ),
    ),
)

_TIER_FLOOR = {"enterprise": "high", "premium": "normal"}


@dataclass(frozen=True)
class PriorityResult:
    priority: str
    reasons: tuple[str, ...]


def _raise_to(current: str, floor: str) -> str:
    return floor if _RANK[floor] < _RANK[current] else current


def score_priority(
    *,
    subject: str,
    description: str,
    tier: str,
    channel: str,
    explicit: str | None = None,
) -> PriorityResult:
    """Priority from text, tier and channel; ``explicit`` (set by a human) wins.

    Example:
        >>> score_priority(subject="Site is down", description="", tier="free", channel="web")
        PriorityResult(priority='urgent', reasons=('keyword: outage',))
    """
    if explicit in _RANK:
        return PriorityResult(str(explicit), ("set on ticket",))
    priority = "low" if tier == "free" else "normal"
    reasons: list[str] = []
    text = f"{subject}\n{description}"
    for level, label, pattern in _KEYWORDS:
        if pattern.search(text):
            raised = _raise_to(priority, level)
            if raised != priority or level == "urgent":
                reasons.append(f"keyword: {label}")
            priority = raised
    floor = _TIER_FLOOR.get(tier)
    if floor is not None and _raise_to(priority, floor) != priority:
        priority = _raise_to(priority, floor)
        reasons.append(f"tier: {tier}")
    if channel in {"phone", "chat"} and _RANK[priority] > _RANK["normal"]:
        priority = "normal"
        reasons.append(f"channel: {channel}")
    if not reasons:
        reasons.append(f"default for tier {tier}")
    return PriorityResult(priority, tuple(dict.fromkeys(reasons)))


def priority_rank(priority: str) -> int:
    """0 for urgent ... 3 for low; unknown priorities sort as normal."""
    return _RANK.get(priority, _RANK["normal"])
