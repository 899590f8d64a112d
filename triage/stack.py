"""Where the stores of a run live: the configured ones, or private local ones started here.

Kept apart from :mod:`triage.runtime` so that the jobs (:mod:`triage.jobs.scheduler`) and the
runtime can both name a :class:`Stack` without importing each other.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from triage.services import LocalPostgres, LocalRedis
from triage.settings import AppSettings


@dataclass(frozen=True)
class Stack:
    """Where each store lives for this run."""

    source_dsn: str
    analytics_dsn: str
    redis_url: str

    def env(self) -> dict[str, str]:
        """Environment that points a child process at the same stores."""
        return {
            "TRIAGE_SOURCE__DSN": self.source_dsn,
            "TRIAGE_ANALYTICS__DSN": self.analytics_dsn,
            "TRIAGE_REDIS__URL": self.redis_url,
        }


@contextlib.contextmanager
def open_stack(settings: AppSettings, state_dir: Path | None = None) -> Iterator[Stack]:
    """Use the configured stores, starting private local ones for those left unset."""
    state_dir = state_dir or settings.state_dir
    with contextlib.ExitStack() as stack:
        source_dsn = settings.source.dsn
        if source_dsn is None:
            pg = stack.enter_context(LocalPostgres(state_dir / "postgres"))
            source_dsn = pg.dsn
        redis_url = settings.redis.url
        if redis_url is None:
            rd = stack.enter_context(LocalRedis(state_dir / "redis"))
            redis_url = rd.url
        yield Stack(
            source_dsn=source_dsn,
            analytics_dsn=settings.analytics.dsn or source_dsn,
            redis_url=redis_url,
        )
