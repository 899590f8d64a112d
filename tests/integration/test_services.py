"""Private PostgreSQL and Redis from the machine's binaries, as the main job starts them."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
import redis

from triage.services import LocalPostgres, LocalRedis

pytestmark = pytest.mark.integration


def test_relative_state_dir_works_like_the_default_dot_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The main job's default state dir is relative (.state); the servers change directory.
    monkeypatch.chdir(tmp_path)
    with LocalPostgres(Path("rel") / "postgres") as pg, LocalRedis(Path("rel") / "redis") as rd:
        with psycopg.connect(pg.dsn) as conn:
            assert conn.execute("SHOW wal_level").fetchone() == ("logical",)
        assert redis.Redis.from_url(rd.url).ping()
    assert (tmp_path / "rel" / "postgres" / "pgdata" / "PG_VERSION").exists()


def test_restart_keeps_data_in_the_state_dir(tmp_path: Path) -> None:
    state = tmp_path / "pg"
    with LocalPostgres(state) as pg, psycopg.connect(pg.dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE kept (x int)")
        conn.execute("INSERT INTO kept VALUES (42)")
    with LocalPostgres(state) as pg, psycopg.connect(pg.dsn) as conn:
        assert conn.execute("SELECT x FROM kept").fetchone() == (42,)


def test_api_server_on_a_busy_port_fails_at_once_naming_the_setting() -> None:
    import socket

    from triage.runtime import ApiServer, Stack
    from triage.services import ServiceError
    from triage.settings import AppSettings

    stack = Stack(
        source_dsn="postgresql://unused",
        analytics_dsn="postgresql://unused",
        redis_url="redis://127.0.0.1:1",
    )
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        server = ApiServer(AppSettings(), stack, port=port)
        with pytest.raises(ServiceError, match="TRIAGE_API__PORT"):
            server.start()
        assert not server.thread.is_alive()
