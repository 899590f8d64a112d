"""Benchmark of the embedded path: PostgreSQL commit → CDC → dataflow → Redis.

Two measurements on a fresh local stack, printed as JSON:

* latency: tickets inserted one per transaction at ``rate`` per second for ``seconds``;
  per ticket, source commit time → decision applied in Redis (Redis server clock, same
  host), reported as percentiles;
* throughput: ``events`` tickets committed in bulk while the pipeline runs; sustained
  change events per second from the first commit until the last decision is in Redis.
"""

from __future__ import annotations

import itertools
import shutil
import time
from typing import Any

import psycopg
import redis
from rich.console import Console

from triage.report import routed_summary
from triage.runtime import PipelineProcess, migrate, open_stack
from triage.settings import AppSettings

_SUBJECTS = (
    ("Charged twice for invoice {n}", "My card was charged twice, please refund the duplicate."),
    ("App crashes on start {n}", "Since the update the app crashes with error 500 on login."),
    ("Cannot log in to account {n}", "Password reset mail never arrives, account is locked."),
    ("Parcel {n} not delivered", "Tracking shows delivered but the package never arrived."),
    ("Rechnung {n} doppelt", "Meine Kreditkarte wurde zweimal belastet, bitte erstatten."),
    ("Colis {n} non livré", "Le suivi indique livré mais je n'ai rien reçu."),
)

_INSERT = """
INSERT INTO tickets (customer_id, subject, description, channel)
VALUES (%s, %s, %s, %s) RETURNING id
"""


def _ticket_rows(count: int, customers: list[int], start: int = 0):
    channels = ("email", "web", "chat", "phone")
    for i in range(start, start + count):
        subject, body = _SUBJECTS[i % len(_SUBJECTS)]
        yield (customers[i % len(customers)], subject.format(n=i), body, channels[i % 4])


def _wait_routed(
    client: redis.Redis, prefix: str, ids: list[int], timeout: float
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        summary = routed_summary(client, prefix, ids)
        if summary["tickets_routed"] >= len(ids) or time.monotonic() > deadline:
            return summary
        time.sleep(0.05)


def run_bench(
    settings: AppSettings,
    *,
    events: int,
    rate: float,
    seconds: float,
    console: Console,
) -> dict[str, Any]:
    from connectors.workload import WorkloadConfig, WorkloadWriter

    state_dir = settings.state_dir / "bench"
    if state_dir.exists():
        shutil.rmtree(state_dir)
    prefix = settings.redis.key_prefix
    with open_stack(settings, state_dir / "services") as stack:
        migrate(stack)
        WorkloadWriter(
            stack.source_dsn, WorkloadConfig(seed=1, customers=500, agents=60, tickets=1)
        ).seed_reference_data()
        client = redis.Redis.from_url(stack.redis_url)
        pipeline = PipelineProcess(stack, state_dir / "pipeline").start()
        try:
            with psycopg.connect(stack.source_dsn, autocommit=True) as conn:
                customers = [r[0] for r in conn.execute("SELECT id FROM customers ORDER BY id")]
                # Warm-up: the snapshot of reference data and the first decision.
                warm = conn.execute(_INSERT, next(_ticket_rows(1, customers))).fetchone()
                assert warm is not None
                if _wait_routed(client, prefix, [warm[0]], 120)["tickets_routed"] != 1:
                    raise RuntimeError(f"pipeline did not start:\n{pipeline.log_tail()}")

                console.print(f"latency run: {rate:.0f} tickets/s for {seconds:.0f}s")
                rows = _ticket_rows(int(rate * seconds), customers, start=1)
                ids: list[int] = []
                t0 = time.perf_counter()
                for n, row in enumerate(rows):
                    due = t0 + n / rate
                    pause = due - time.perf_counter()
                    if pause > 0:
                        time.sleep(pause)
                    got = conn.execute(_INSERT, row).fetchone()
                    assert got is not None
                    ids.append(got[0])
                offered_s = time.perf_counter() - t0
                lat = _wait_routed(client, prefix, ids, 120)

                console.print(f"throughput run: {events} tickets in bulk")
                before = client.xlen(f"{prefix}:decisions")
                t1 = time.perf_counter()
                bulk_ids: list[int] = []
                batch = 5000
                rows_iter = _ticket_rows(events, customers, start=10_000_000)
                while chunk := list(itertools.islice(rows_iter, batch)):
                    with conn.transaction(), conn.cursor() as cur:
                        cur.executemany(_INSERT, chunk, returning=True)
                        while True:
                            got = cur.fetchone()
                            if got is not None:
                                bulk_ids.append(got[0])
                            if not cur.nextset():
                                break
                insert_s = time.perf_counter() - t1
                deadline = time.monotonic() + 600
                while client.xlen(f"{prefix}:decisions") - before < events:
                    if time.monotonic() > deadline or not pipeline.alive():
                        break
                    time.sleep(0.05)
                total_s = time.perf_counter() - t1
                thr = routed_summary(client, prefix, bulk_ids)
        finally:
            pipeline.stop()
    return {
        "latency": {
            "offered_rate_per_s": rate,
            "achieved_rate_per_s": round(len(ids) / offered_s, 1),
            "tickets": len(ids),
            "routed": lat["tickets_routed"],
            "commit_to_redis_ms": lat["latency_ms"],
        },
        "throughput": {
            "tickets": events,
            "routed": thr["tickets_routed"],
            "insert_seconds": round(insert_s, 2),
            "end_to_end_seconds": round(total_s, 2),
            "events_per_s": round(thr["tickets_routed"] / total_s, 1),
        },
    }
