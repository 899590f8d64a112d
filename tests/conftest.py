"""Session fixtures: one private PostgreSQL (wal_level=logical) and one private Redis.

Each test gets its own database (``pg_dsn``) and its own Redis database number is avoided
in favour of a unique key prefix, so nothing leaks between tests or runs.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from triage.services import LocalPostgres, LocalRedis

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
