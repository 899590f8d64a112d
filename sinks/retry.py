"""Retry delays shared by the sinks: a store that is down slows the flow, never drops data."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator

log = logging.getLogger(__name__)


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


def retry_connection_loss(
    attempt_write: Callable[[], None],
    *,
    on_loss: Callable[[], None] = lambda: None,
    describe: str,
    initial: float,
    maximum: float,
    max_retries: int | None,
    on_retry: Callable[[], None] | None = None,
    errors: tuple[type[BaseException], ...] | None = None,
) -> None:
    """Run ``attempt_write`` until it succeeds, retrying only lost connections.

    A lost connection (``errors``; default ``psycopg.OperationalError``: the server went
    away, a connection broke) calls ``on_loss`` (drop the connection so the next attempt
    opens a fresh one), waits with :func:`backoff` and tries again, at most
    ``max_retries`` times (``None``: forever, so a store that is down slows the flow
    instead of dropping data). Other errors propagate at once: retrying a constraint
    violation or a bug would only repeat it.

    Args:
        attempt_write: One complete write attempt (transactional or idempotent).
        on_loss: Called after each lost attempt, before waiting.
        describe: What is written, for the warning (e.g. ``"analytics write of 12 items"``).
        initial: First delay in seconds.
        maximum: Longest delay in seconds.
        max_retries: Retries before the error is raised.
        on_retry: Called once per retry (metrics).
        errors: The exception types that mean a lost connection.
    """
    if errors is None:
        import psycopg

        errors = (psycopg.OperationalError,)
    delays = backoff(initial, maximum)
    attempt = 0
    while True:
        try:
            attempt_write()
            return
        except errors as exc:
            attempt += 1
            if max_retries is not None and attempt > max_retries:
                raise
            if on_retry is not None:
                on_retry()
            delay = next(delays)
            log.warning(
                "%s failed (attempt %d): %s; retrying in %.1fs", describe, attempt, exc, delay
            )
            on_loss()
            time.sleep(delay)
