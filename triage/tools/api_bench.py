"""``triage bench api``: how many routing reads the API serves, and how fast, under load.

The server is the production one (``triage.api_server``: uvicorn with ``workers``
processes, authentication on, the audit log written) over private or configured stores
holding ``tickets`` routing decisions. The load is *open-loop*: request *i* is due at
``start + i / rate`` whatever happened before, and its latency is measured from that due
time, so a slow server cannot hide its queueing by slowing the client down (no
coordinated omission). ``connections`` keep-alive HTTP/1.1 connections carry the
requests; when all are busy, due requests wait and that wait counts. With ``rate`` 0 the
connections send back to back instead (closed loop: the most the server gives).

The client is a small asyncio HTTP/1.1 reader, cheap enough to offer thousands of
requests per second from one core; it shares the machine with the server, as a load
tool run on the same host would.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from rich.console import Console

from triage.settings import AppSettings
from triage.tools.report import percentile

PATH = "/v1/tickets/{id}/routing"


@dataclass
class LoadReport:
    """What one load run saw."""

    requests: int = 0
    seconds: float = 0.0
    status: Counter[str] = field(default_factory=Counter)
    connection_errors: int = 0
    latencies_ms: list[float] = field(default_factory=list)

    @property
    def errors(self) -> int:
        """Requests without a 2xx answer (status codes other than 2xx, lost connections)."""
        ok = sum(n for code, n in self.status.items() if code.startswith("2"))
        return self.requests - ok

    def summary(self) -> dict[str, Any]:
        lat = self.latencies_ms

        def pct(q: float) -> float | None:
            value = percentile(lat, q)
            return None if value is None else round(value, 2)

        return {
            "requests": self.requests,
            "achieved_rate_per_s": round(self.requests / self.seconds, 1) if self.seconds else 0,
            "status": dict(sorted(self.status.items())),
            "errors": self.errors,
            "connection_errors": self.connection_errors,
            "latency_ms": {
                "p50": pct(50),
                "p90": pct(90),
                "p99": pct(99),
                "max": round(max(lat), 2) if lat else None,
            },
        }


class _Conn:
    """One keep-alive HTTP/1.1 connection; reconnects after a close."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, raw: bytes) -> str:
        """Send one request; returns the status code as text."""
        if self.writer is None or self.reader is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = head[9:12].decode("ascii")
        lower = head.lower()
        at = lower.find(b"\r\ncontent-length:")
        if at >= 0:
            end = lower.index(b"\r\n", at + 2)
            await self.reader.readexactly(int(lower[at + 17 : end]))
        elif b"transfer-encoding: chunked" in lower:
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).strip(), 16)
                await self.reader.readexactly(size + 2)
                if size == 0:
                    break
        if b"\r\nconnection: close" in lower:
            self.close()
        return status

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def _load(
    host: str,
    port: int,
    requests: list[bytes],
    *,
    rate: float,
    seconds: float,
    connections: int,
) -> LoadReport:
    report = LoadReport()
    total = int(rate * seconds) if rate > 0 else None
    next_index = 0
    start = time.perf_counter()
    stop_at = start + seconds

    async def worker() -> None:
        nonlocal next_index
        conn = _Conn(host, port)
        try:
            while True:
                i = next_index
                if total is not None:
                    if i >= total:
                        return
                    due = start + i / rate
                    delay = due - time.perf_counter()
                    next_index += 1
                    if delay > 0:
                        await asyncio.sleep(delay)
                else:
                    due = time.perf_counter()
                    if due >= stop_at:
                        return
                    next_index += 1
                try:
                    status = await conn.request(requests[i % len(requests)])
                except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                    conn.close()
                    report.connection_errors += 1
                    status = "conn"
                report.requests += 1
                report.status[status] += 1
                report.latencies_ms.append((time.perf_counter() - due) * 1000)
        finally:
            conn.close()

    await asyncio.gather(*(worker() for _ in range(connections)))
    report.seconds = time.perf_counter() - start
    return report


def run_load(
    host: str,
    port: int,
    paths: list[str],
    *,
    api_key: str | None,
    rate: float,
    seconds: float,
    connections: int,
) -> LoadReport:
    """Offer ``rate`` requests/s (0: as many as the connections take) for ``seconds``."""
    auth = f"X-API-Key: {api_key}\r\n" if api_key else ""
    requests = [
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n{auth}\r\n".encode("ascii")
        for path in paths
    ]
    return asyncio.run(
        _load(host, port, requests, rate=rate, seconds=seconds, connections=connections)
    )


def seed_decisions(redis_url: str, prefix: str, tickets: int) -> list[int]:
    """Write ``tickets`` routing decisions to Redis through the production sink."""
    from models.helpdesk import RoutingDecision
    from sinks.redis import RedisSink

    now = datetime.now(UTC)
    decisions = [
        RoutingDecision(
            ticket_id=tid,
            version=1,
            queue=("billing", "technical", "account", "logistics")[tid % 4],
            status="assigned",
            agent_id=1 + tid % 20,
            score=0.8,
            confidence=0.6,
            reasons=("skills:billing", "capacity"),
            priority=("low", "normal", "high", "urgent")[tid % 4],
            sla_deadline=now + timedelta(hours=4),
            model_version="bench",
            decided_at=now,
            source_committed_at=now,
            candidates=5,
        )
        for tid in range(1, tickets + 1)
    ]
    part = RedisSink(redis_url, prefix=prefix).build("bench_api", 0, 1)
    try:
        for i in range(0, len(decisions), 1000):
            part.write_batch(decisions[i : i + 1000])  # type: ignore[arg-type]
    finally:
        part.close()
    return [d.ticket_id for d in decisions]


def run_api_bench(
    settings: AppSettings,
    *,
    rate: float,
    seconds: float,
    connections: int,
    workers: int,
    tickets: int,
    console: Console,
) -> dict[str, Any]:
    """Start the API (``workers`` processes, auth on) over seeded stores and load it."""
    import psycopg

    from api.keys import create_api_key
    from triage.runtime import migrate, open_stack
    from triage.services import free_port, wait_until

    state_dir = settings.state_dir / "bench-api"
    prefix = f"{settings.redis.key_prefix}bench"
    with open_stack(settings, state_dir / "services") as stack:
        migrate(stack)
        console.print(f"seeding {tickets} routing decisions")
        ids = seed_decisions(stack.redis_url, prefix, tickets)
        with psycopg.connect(stack.analytics_dsn, autocommit=True) as conn:
            _, key = create_api_key(
                conn, name="bench-api", scopes=["read:routing"], rate_limit_per_minute=10**9
            )
        port = free_port()
        env = {
            **os.environ,
            **stack.env(),
            "TRIAGE_REDIS__KEY_PREFIX": prefix,
            "TRIAGE_API__AUTH_REQUIRED": "true",
            "TRIAGE_STATE_DIR": str(state_dir),
        }
        state_dir.mkdir(parents=True, exist_ok=True)
        log = (state_dir / "api.log").open("ab")
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "triage.api_server:app_from_env",
                "--factory",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                str(workers),
                "--log-level",
                "warning",
                "--no-access-log",
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            paths = [PATH.format(id=tid) for tid in ids]

            def answering() -> bool:
                if server.poll() is not None:
                    raise RuntimeError(f"the API exited; log {state_dir / 'api.log'}")
                try:
                    probe = run_load(
                        "127.0.0.1",
                        port,
                        paths[:1],
                        api_key=key,
                        rate=10,
                        seconds=0.1,
                        connections=1,
                    )
                except OSError:
                    return False
                return probe.errors == 0 and probe.requests > 0

            wait_until(answering, timeout=60, what="API workers")
            console.print(
                f"warm-up, then {seconds:.0f}s at {rate:.0f} requests/s"
                if rate
                else f"warm-up, then {seconds:.0f}s closed loop"
            )
            run_load(
                "127.0.0.1",
                port,
                paths,
                api_key=key,
                rate=rate or 200,
                seconds=2.0,
                connections=connections,
            )
            report = run_load(
                "127.0.0.1",
                port,
                paths,
                api_key=key,
                rate=rate,
                seconds=seconds,
                connections=connections,
            )
        finally:
            os.killpg(server.pid, 15)
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, 9)
                server.wait()
            log.close()
    return {
        "api": {
            "path": PATH,
            "workers": workers,
            "connections": connections,
            "offered_rate_per_s": rate,
            "seconds": seconds,
            "auth": True,
            **report.summary(),
        }
    }
