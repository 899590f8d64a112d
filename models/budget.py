"""A per-event time budget: optional work is skipped, and said so, once it is spent.

Every text routine is linear in its input and inputs are bounded at the edge, so one
event cannot stall the pipeline; but a burst of long texts on a loaded machine can still
make single events slow. A step gives each event a :class:`TimeBudget`; before each
optional, expensive part (sentiment, the multi-label and learned-priority models, KB
suggestions and the draft reply) it asks whether the budget is spent and, if so, skips
the part and records why. What decides the route (language, keyword category, priority
rules, intent, queue) always runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class TimeBudget:
    """Wall-clock allowance of one event in one step.

    Args:
        limit_s: Seconds the event may take in the step; ``None`` or 0: no limit.
        clock: Monotonic clock in seconds (tests pass a fake one).

    Example:
        >>> ticks = iter([0.0, 0.01, 0.2])
        >>> budget = TimeBudget(0.05, clock=lambda: next(ticks))
        >>> budget.allows("sentiment")
        True
        >>> budget.allows("kb_suggestions")
        False
        >>> budget.skipped
        ['kb_suggestions: skipped, 50 ms time budget spent']
    """

    __slots__ = ("_clock", "_start", "limit_s", "skipped")

    def __init__(
        self, limit_s: float | None, *, clock: Callable[[], float] = time.perf_counter
    ) -> None:
        self.limit_s = limit_s or None
        self._clock = clock
        self._start = clock()
        self.skipped: list[str] = []

    def allows(self, part: str) -> bool:
        """Whether ``part`` may run; when not, it is recorded in :attr:`skipped`."""
        if self.limit_s is None or self._clock() - self._start <= self.limit_s:
            return True
        self.skipped.append(f"{part}: skipped, {self.limit_s * 1000:g} ms time budget spent")
        return False
