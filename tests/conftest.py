"""Session fixtures: one private PostgreSQL (wal_level=logical) and one private Redis.

Each test gets its own PostgreSQL database (``pg_dsn``) and its own Redis logical database
(``redis_url``, emptied before the test), so nothing leaks between tests or runs and no
test empties a database another one is using.
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
    from triage.tools.sample_analytics import SeedSummary

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


# Redis logical databases 1..15 go round (0 stays for tools run by hand); tests run one
# at a time, so a number comes back to a test only after fifteen others have finished.
_redis_db = itertools.cycle(range(1, 16))


@pytest.fixture
def redis_url(redis_server: LocalRedis) -> Iterator[str]:
    """A Redis logical database of this test's own, empty when the test starts."""
    import redis

    url = redis_server.url.rsplit("/", 1)[0] + f"/{next(_redis_db)}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    yield url
    client.flushdb()
    client.close()


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
    from triage.tools.sample_analytics import Incident, seed_analytics

    dsn = postgres.create_database(f"seeded_{uuid.uuid4().hex[:8]}")
    apply_migrations(dsn, SQL_DIR / "analytics", schema="analytics")
    summary = seed_analytics(
        dsn,
        days=17,
        end=SEED_END,
        incidents=[Incident("billing", datetime(2026, 2, 27, 10, tzinfo=UTC), hours=3, factor=5)],
    )
    return dsn, summary
