"""Per-key rate limits: one Redis counter per key and fixed one-minute window.

A request over its key's limit is refused with 429 by :mod:`api.security`; when Redis is
unavailable the limit is not applied (the request is served and a warning logged).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis
from redis import asyncio as aioredis
from starlette.concurrency import run_in_threadpool

from api.keys import RATE_WINDOW_S

log = logging.getLogger(__name__)


def fixed_window(now: float, width_s: int = RATE_WINDOW_S) -> tuple[int, int]:
    """The window ``now`` (Unix seconds) falls in, and whole seconds until it ends (≥ 1).

    Example:
        >>> fixed_window(120.2)
        (2, 60)
        >>> fixed_window(179.5)
        (2, 1)
    """
    index = int(now // width_s)
    return index, max(1, math.ceil((index + 1) * width_s - now))


@dataclass(frozen=True)
class RateLimit:
    """A key's use of its current window.

    Attributes:
        limit: Requests allowed per window.
        used: Requests counted in the window, this one included.
        reset_s: Whole seconds until the window ends and the count starts again.
    """

    limit: int
    used: int
    reset_s: int

    @property
    def exceeded(self) -> bool:
        return self.used > self.limit

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.used)

    def headers(self) -> dict[str, str]:
        """``X-RateLimit-*`` headers; Reset is in seconds from now (not a timestamp).

        Example:
            >>> RateLimit(limit=3, used=5, reset_s=42).headers()["X-RateLimit-Remaining"]
            '0'
        """
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset_s),
        }


class RateLimiter:
    """Fixed one-minute windows per key, counted in Redis.

    The counter ``<prefix>:ratelimit:<key_id>:<window>`` is incremented and given an
    expiry in one MULTI/EXEC, so concurrent API processes share the count and no counter
    outlives its window by more than a minute. Windows follow the API host's clock (keep
    it synchronised). A fixed window lets a client make up to twice its limit across a
    window boundary; that is accepted for its single round trip per request.
    """

    def __init__(
        self,
        client: redis.Redis,
        *,
        prefix: str,
        clock: Callable[[], float] = time.time,
        aclient: aioredis.Redis | None = None,
    ) -> None:
        self._client = client
        self._aclient = aclient
        self._prefix = prefix
        self.clock = clock

    def hit(self, key_id: str, limit: int) -> RateLimit | None:
        """Count one request of ``key_id``; ``None`` when Redis is unavailable.

        Redis down means no limit rather than no API: the read routes themselves fall
        back to PostgreSQL when Redis is down, and the limiter must not undo that.
        """
        window, reset_s = fixed_window(self.clock())
        counter = f"{self._prefix}:ratelimit:{key_id}:{window}"
        try:
            pipe = self._client.pipeline(transaction=True)
            pipe.incr(counter)
            pipe.expire(counter, RATE_WINDOW_S + reset_s)
            used, _ = pipe.execute()
        except redis.RedisError as exc:
            log.warning("rate limit not applied to %s, redis unavailable: %s", key_id, exc)
            return None
        return RateLimit(limit=limit, used=int(used), reset_s=reset_s)

    async def hit_async(self, key_id: str, limit: int) -> RateLimit | None:
        """:meth:`hit` on the event loop (the asyncio client); same counter, same rules."""
        if self._aclient is None:
            return await run_in_threadpool(self.hit, key_id, limit)
        window, reset_s = fixed_window(self.clock())
        counter = f"{self._prefix}:ratelimit:{key_id}:{window}"
        try:
            async with self._aclient.pipeline(transaction=True) as pipe:
                pipe.incr(counter)
                pipe.expire(counter, RATE_WINDOW_S + reset_s)
                used, _ = await pipe.execute()
        except redis.RedisError as exc:
            log.warning("rate limit not applied to %s, redis unavailable: %s", key_id, exc)
            return None
        return RateLimit(limit=limit, used=int(used), reset_s=reset_s)
