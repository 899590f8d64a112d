"""Session fixtures: one private PostgreSQL (wal_level=logical) and one private Redis.

Each test gets its own database (``pg_dsn``) and its own Redis database number is avoided
in favour of a unique key prefix, so nothing leaks between tests or runs.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from triage.services import LocalPostgres, LocalRedis

if TYPE_CHECKING:
    from triage.sample_analytics import SeedSummary

_db_counter = itertools.count()


@pytest.fixture(scope="session")
def state_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("services")


@pytest.fixture(scope="session")
def postgres(state_root: Path) -> Iterator[LocalPostgres]:
    pg = LocalPostgres(state_root / "postgres").start()
    try:
        yield pg
    finally:
        pg.stop()


@pytest.fixture(scope="session")
def redis_server(state_root: Path) -> Iterator[LocalRedis]:
    rd = LocalRedis(state_root / "redis").start()
    try:
        yield rd
    finally:
        rd.stop()


@pytest.fixture
def pg_dsn(postgres: LocalPostgres) -> str:
    """A fresh, empty database for this test."""
    return postgres.create_database(f"t{next(_db_counter)}_{uuid.uuid4().hex[:8]}")


@pytest.fixture
def redis_url(redis_server: LocalRedis) -> Iterator[str]:
    """The private Redis, flushed after the test."""
    yield redis_server.url
    import redis

    redis.Redis.from_url(redis_server.url).flushall()


@pytest.fixture
def unique() -> str:
    """A short unique token for names (slots, prefixes, topics)."""
    return uuid.uuid4().hex[:10]


# A fixed Monday midnight, so seeded histories (and what tests expect of them) never move.
SEED_END = datetime(2026, 3, 2, tzinfo=UTC)


@pytest.fixture(scope="session")
def seeded_analytics(postgres: LocalPostgres) -> tuple[str, SeedSummary]:
    """A migrated analytics database with 17 days of synthetic history ending at SEED_END
    (shared by the session: tests must only read it), and what was written."""
    from sinks.migrations import apply_migrations
    from triage.runtime import SQL_DIR
    from triage.sample_analytics import Incident, seed_analytics

    dsn = postgres.create_database(f"seeded_{uuid.uuid4().hex[:8]}")
    apply_migrations(dsn, SQL_DIR / "analytics", schema="analytics")
    summary = seed_analytics(
        dsn,
        days=17,
        end=SEED_END,
        incidents=[Incident("billing", datetime(2026, 2, 27, 10, tzinfo=UTC), hours=3, factor=5)],
    )
    return dsn, summary
