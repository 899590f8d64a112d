"""Retry delays shared by the sinks: a store that is down slows the flow, never drops data."""

from __future__ import annotations

from collections.abc import Iterator


def backoff(initial: float, maximum: float) -> Iterator[float]:
    """Exponential delays ``initial, 2*initial, ...`` capped at ``maximum`` seconds.

    Example:
        >>> from itertools import islice
        >>> list(islice(backoff(0.5, 3.0), 5))
        [0.5, 1.0, 2.0, 3.0, 3.0]
    """
    delay = initial
    while True:
        yield delay
        delay = min(delay * 2, maximum)
