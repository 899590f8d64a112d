"""Private PostgreSQL and Redis instances started from the machine's own binaries.

The main job and the test fixtures share this module, so the embedded default and the
tests run against the same kind of server: PostgreSQL with ``wal_level=logical`` (for the
CDC reader) and a Redis that keeps nothing on disk. Each instance lives in its own state
directory on a free loopback port and is stopped by :meth:`stop` (or the context manager).

PostgreSQL refuses to run as root, so when the current user is root the server processes
run as the ``postgres`` system user (as packaged PostgreSQL does).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)


class ServiceError(RuntimeError):
    """A local service could not be started; the message says what to install or set."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(check: Callable[[], bool], *, timeout: float, what: str) -> None:
    """Poll ``check`` with exponential backoff until it is true or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        if check():
            return
        if time.monotonic() > deadline:
            raise ServiceError(f"{what} was not ready after {timeout:.0f}s")
        time.sleep(delay)
        delay = min(delay * 2, 0.25)


def find_pg_bin(name: str) -> Path:
    """Locate a PostgreSQL server binary (``initdb``, ``pg_ctl``, ``postgres``)."""
    found = shutil.which(name)
    if found:
        return Path(found)
    candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True)
    if candidates:
        return candidates[0]
    raise ServiceError(
        f"PostgreSQL server binary {name!r} not found. Install PostgreSQL 14+ "
        "(Debian: `apt-get install postgresql`) or point TRIAGE_SOURCE__DSN and "
        "TRIAGE_ANALYTICS__DSN at an existing server with wal_level=logical."
    )


def _demote_to(user: str) -> tuple[Callable[[], None] | None, pwd.struct_passwd | None]:
    if os.geteuid() != 0:
        return None, None
    try:
        entry = pwd.getpwnam(user)
    except KeyError as exc:
        raise ServiceError(
            f"running as root but there is no {user!r} system user to run PostgreSQL as; "
            "create it (`useradd --system postgres`) or run as a normal user"
        ) from exc

    def demote() -> None:
        os.setgid(entry.pw_gid)
        os.setuid(entry.pw_uid)

    return demote, entry


@dataclass
class LocalPostgres:
    """A private PostgreSQL cluster in ``state_dir`` configured for logical decoding."""

    state_dir: Path
    port: int = 0
    user: str = "triage"
    database: str = "triage"
    max_replication_slots: int = 32
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def data_dir(self) -> Path:
        return self.state_dir / "pgdata"

    @property
    def socket_dir(self) -> Path:
        # A Unix socket path holds at most 107 bytes; a deep state directory gets a short
        # one under /tmp instead, named after the state directory so restarts reuse it.
        # (Clients connect over TCP; the socket only has to exist for the server.)
        preferred = self.state_dir / "pgsock"
        if len(str(preferred)) + len("/.s.PGSQL.65535") <= 107:
            return preferred
        digest = hashlib.sha256(str(self.state_dir).encode()).hexdigest()[:16]
        return Path(tempfile.gettempdir()) / f"triage-pgsock-{digest}"

    @property
    def dsn(self) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{self.database}"

    def admin_dsn(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def start(self, *, timeout: float = 60.0) -> LocalPostgres:
        """Initialise (first time only) and start the cluster, then wait for readiness."""
        # The server changes into its data directory, so every path it gets is absolute.
        self.state_dir = self.state_dir.resolve()
        demote, entry = _demote_to("postgres")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        if entry is not None:
            for path in (self.state_dir, self.socket_dir):
                os.chown(path, entry.pw_uid, entry.pw_gid)
            # The state dir's parents must be traversable by the postgres user.
            for parent in self.state_dir.resolve().parents:
                mode = parent.stat().st_mode
                if not mode & 0o001:
                    os.chmod(parent, mode | 0o001)
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb(demote)
        if self.port == 0:
            self.port = free_port()
        cmd = [
            str(find_pg_bin("postgres")),
            "-D",
            str(self.data_dir),
            "-p",
            str(self.port),
            "-k",
            str(self.socket_dir),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "wal_level=logical",
            "-c",
            f"max_replication_slots={self.max_replication_slots}",
            "-c",
            f"max_wal_senders={self.max_replication_slots}",
            "-c",
            "max_connections=200",
            "-c",
            "fsync=on",
            "-c",
            "shared_buffers=128MB",
            "-c",
            "logging_collector=off",
        ]
        logfile = open(self.state_dir / "postgres.log", "ab")  # noqa: SIM115
        self._proc = subprocess.Popen(
            cmd,
            stdout=logfile,
            stderr=subprocess.STDOUT,
            preexec_fn=demote,
            start_new_session=True,
        )
        logfile.close()
        wait_until(self._ready, timeout=timeout, what=f"PostgreSQL on port {self.port}")
        self._ensure_database()
        log.info("PostgreSQL ready at %s", self.dsn)
        return self

    def _initdb(self, demote: Callable[[], None] | None) -> None:
        cmd = [
            str(find_pg_bin("initdb")),
            "-D",
            str(self.data_dir),
            "-U",
            self.user,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C.UTF-8",
            "--no-sync",
        ]
        result = subprocess.run(cmd, capture_output=True, preexec_fn=demote, check=False)
        if result.returncode != 0:
            raise ServiceError(f"initdb failed: {result.stderr.decode(errors='replace')}")

    def _ready(self) -> bool:
        if self._proc is not None and self._proc.poll() is not None:
            log_tail = (self.state_dir / "postgres.log").read_text(errors="replace")[-2000:]
            raise ServiceError(f"PostgreSQL exited during start-up:\n{log_tail}")
        import psycopg

        try:
            with psycopg.connect(self.admin_dsn(), connect_timeout=2):
                return True
        except psycopg.OperationalError:
            return False

    def _ensure_database(self) -> None:
        import psycopg

        with psycopg.connect(self.admin_dsn(), autocommit=True) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (self.database,)
            ).fetchone()
            if not exists:
                from psycopg import sql

                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.database)))

    def create_database(self, name: str) -> str:
        """Create an extra database (tests use one per test) and return its DSN."""
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.admin_dsn(), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.admin_dsn(name)

    def stop(self, *, timeout: float = 30.0) -> None:
        """Fast shutdown (SIGINT), falling back to SIGKILL."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def __enter__(self) -> LocalPostgres:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class LocalRedis:
    """A private Redis server that keeps nothing on disk."""

    state_dir: Path
    port: int = 0
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, *, timeout: float = 30.0) -> LocalRedis:
        binary = shutil.which("redis-server")
        if binary is None:
            raise ServiceError(
                "redis-server not found. Install Redis (Debian: `apt-get install redis-server`) "
                "or set TRIAGE_REDIS__URL to an existing Redis."
            )
        self.state_dir = self.state_dir.resolve()  # Redis changes into --dir
        self.state_dir.mkdir(parents=True, exist_ok=True)
        if self.port == 0:
            self.port = free_port()
        cmd = [
            binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.state_dir),
            "--daemonize",
            "no",
            "--logfile",
            str(self.state_dir / "redis.log"),
        ]
        self._proc = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        wait_until(self._ready, timeout=timeout, what=f"Redis on port {self.port}")
        log.info("Redis ready at %s", self.url)
        return self

    def _ready(self) -> bool:
        if self._proc is not None and self._proc.poll() is not None:
            raise ServiceError(f"redis-server exited during start-up; see {self.state_dir}")
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self, *, timeout: float = 10.0) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def __enter__(self) -> LocalRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def local_stack(state_dir: Path) -> Iterator[tuple[LocalPostgres, LocalRedis]]:
    """Start PostgreSQL and Redis under ``state_dir``; stop both on exit."""
    with LocalPostgres(state_dir / "postgres") as pg, LocalRedis(state_dir / "redis") as rd:
        yield pg, rd
