"""Benchmark of the embedded path: PostgreSQL commit → CDC → dataflow → Redis.

Two measurements on a fresh local stack, printed as JSON:

* latency: tickets inserted one per transaction at ``rate`` per second for ``seconds``;
  per ticket, source commit time → decision applied in Redis (Redis server clock, same
  host), reported as percentiles;
* throughput: ``events`` tickets committed in bulk while the pipeline runs; sustained
  change events per second from the first commit until the last decision is in Redis
  (every event is a new ticket: the most expensive kind, enriched and routed);
* mixed throughput: a helpdesk-shaped change stream of ``events`` changes, per ticket one
  insert, two comments (``ticket_events``) and two status updates, measured until the
  analytics store holds every ticket's final status.
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
        # Batch jobs (forecast, compaction) would compete for the CPU being measured.
        pipeline = PipelineProcess(
            stack, state_dir / "pipeline", extra_env={"TRIAGE_JOBS__ENABLED": "false"}
        ).start()
        try:
            pipeline.wait_ready(settings.source.slot_name, flow_id=settings.pipeline.flow_id)
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
                routed = _wait_decided(stack.analytics_dsn, bulk_ids, pipeline, timeout=900)
                total_s = time.perf_counter() - t1

                console.print(f"mixed run: {events} change events")
                mixed = _mixed_run(conn, stack.analytics_dsn, customers, events, pipeline)
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
            "routed": routed,
            "insert_seconds": round(insert_s, 2),
            "end_to_end_seconds": round(total_s, 2),
            "events_per_s": round(routed / total_s, 1),
        },
        "mixed_throughput": mixed,
    }


def _wait_decided(
    analytics_dsn: str, ids: list[int], pipeline: PipelineProcess, *, timeout: float
) -> int:
    """Wait until every ticket in ``ids`` has a routing decision in the analytics store."""
    deadline = time.monotonic() + timeout
    done = 0
    with psycopg.connect(analytics_dsn, autocommit=True) as conn:
        while time.monotonic() < deadline and pipeline.alive():
            got = conn.execute(
                "SELECT count(*) FROM analytics.routing_decisions WHERE ticket_id = ANY(%s)",
                (ids,),
            ).fetchone()
            done = int(got[0]) if got else 0
            if done >= len(ids):
                break
            time.sleep(0.1)
    return done


_MIXED_SQL = """
WITH t AS (
    INSERT INTO tickets (customer_id, subject, description, channel)
    SELECT c.id, 'Order ' || g || ' question', 'Where is my parcel? tracking stuck', 'web'
      FROM generate_series(1, %(n)s) AS g
      JOIN LATERAL (SELECT id FROM customers ORDER BY id OFFSET (g %% %(customers)s) LIMIT 1) c
        ON true
    RETURNING id
)
SELECT array_agg(id) FROM t
"""


def _mixed_run(
    conn: psycopg.Connection[Any],
    analytics_dsn: str,
    customers: list[int],
    events: int,
    pipeline: PipelineProcess,
) -> dict[str, Any]:
    """Insert, comment on and update tickets in bulk; five change events per ticket."""
    tickets = max(1, events // 5)
    t0 = time.perf_counter()
    chunk = 2000
    for start in range(0, tickets, chunk):
        n = min(chunk, tickets - start)
        with conn.transaction():
            row = conn.execute(_MIXED_SQL, {"n": n, "customers": len(customers)}).fetchone()
            ids = list(row[0]) if row and row[0] else []
            conn.execute(
                "INSERT INTO ticket_events (ticket_id, kind, author_type, body) "
                "SELECT id, 'comment', k, 'Any update on this?' FROM unnest(%s::bigint[]) id, "
                "unnest(ARRAY['customer', 'agent']) k",
                (ids,),
            )
            conn.execute("UPDATE tickets SET status = 'open' WHERE id = ANY(%s)", (ids,))
            conn.execute("UPDATE tickets SET status = 'pending' WHERE id = ANY(%s)", (ids,))
    insert_s = time.perf_counter() - t0
    deadline = time.monotonic() + 600
    done = 0
    with psycopg.connect(analytics_dsn, autocommit=True) as analytics:
        while time.monotonic() < deadline and pipeline.alive():
            got = analytics.execute(
                "SELECT count(*) FROM analytics.ticket_facts WHERE status = 'pending'"
            ).fetchone()
            done = int(got[0]) if got else 0
            if done >= tickets:
                break
            time.sleep(0.05)
    total_s = time.perf_counter() - t0
    return {
        "change_events": tickets * 5,
        "tickets_complete": done,
        "insert_seconds": round(insert_s, 2),
        "end_to_end_seconds": round(total_s, 2),
        "events_per_s": round(tickets * 5 / total_s, 1) if done >= tickets else None,
    }
