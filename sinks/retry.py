"""Retry delays shared by the sinks: a store that is down slows the flow, never drops data."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

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


@dataclass(frozen=True)
class RetryPolicy:
    """How a sink retries a lost connection: exponential delays and a limit.

    Args:
        initial_delay: First retry delay after a connection loss, in seconds.
        max_delay: Longest retry delay, in seconds.
        max_retries: Give up after this many failed attempts of one batch; ``None``
            retries for as long as it takes (the flow stalls rather than drop data).

    Example:
        >>> from itertools import islice
        >>> policy = RetryPolicy(initial_delay=0.5, max_delay=3.0, max_retries=2)
        >>> list(islice(policy.delays(), 5))
        [0.5, 1.0, 2.0, 3.0, 3.0]
        >>> [policy.gives_up(attempt) for attempt in (1, 2, 3)]
        [False, False, True]
        >>> RetryPolicy().gives_up(1_000_000)
        False
    """

    initial_delay: float = 0.2
    max_delay: float = 30.0
    max_retries: int | None = None

    def delays(self) -> Iterator[float]:
        """The delays before each retry (:func:`backoff`)."""
        return backoff(self.initial_delay, self.max_delay)

    def gives_up(self, attempt: int) -> bool:
        """Whether ``attempt`` failed attempts in a row are more than may be retried."""
        return self.max_retries is not None and attempt > self.max_retries


DEFAULT_RETRY = RetryPolicy()
"""The sinks' default: 0.2 s doubling up to 30 s, retried for as long as it takes."""


def retry_connection_loss(
    attempt_write: Callable[[], None],
    *,
    on_loss: Callable[[], None] = lambda: None,
    describe: str,
    policy: RetryPolicy,
    on_retry: Callable[[], None] | None = None,
    errors: tuple[type[BaseException], ...] | None = None,
) -> None:
    """Run ``attempt_write`` until it succeeds, retrying only lost connections.

    A lost connection (``errors``; default ``psycopg.OperationalError``: the server went
    away, a connection broke) calls ``on_loss`` (drop the connection so the next attempt
    opens a fresh one), waits the ``policy``'s next delay and tries again, at most its
    ``max_retries`` times (``None``: forever, so a store that is down slows the flow
    instead of dropping data). Other errors propagate at once: retrying a constraint
    violation or a bug would only repeat it.

    Args:
        attempt_write: One complete write attempt (transactional or idempotent).
        on_loss: Called after each lost attempt, before waiting.
        describe: What is written, for the warning (e.g. ``"analytics write of 12 items"``).
        policy: The delays, and the retries before the error is raised.
        on_retry: Called once per retry (metrics).
        errors: The exception types that mean a lost connection.
    """
    if errors is None:
        import psycopg

        errors = (psycopg.OperationalError,)
    delays = policy.delays()
    attempt = 0
    while True:
        try:
            attempt_write()
            return
        except errors as exc:
            attempt += 1
            if policy.gives_up(attempt):
                raise
            if on_retry is not None:
                on_retry()
            delay = next(delays)
            log.warning(
                "%s failed (attempt %d): %s; retrying in %.1fs", describe, attempt, exc, delay
            )
            on_loss()
            time.sleep(delay)
