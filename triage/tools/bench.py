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
  analytics store holds every ticket's final status;
* stages: for the latency run, source commit → the moment a ticket's change left each
  stage (decode, enrich, classify, route, write_analytics, write_live), read back from
  the pipeline's own Prometheus histograms (upper bucket bounds, so ``≤`` values);
* scale (``processes`` with more than one count): the throughput run again on a fresh
  database per process count, the same rows each time; ``same_results`` compares what
  the runs must share (:mod:`triage.tools.compare`).

``run_kafka_bench`` is the latency run on the production inbound path instead (Debezium
in Kafka Connect and a local KRaft broker in front of the pipeline in Kafka mode).

Kept as one module: the latency, throughput, mixed, recovery and scale runs
share one private stack and one report.
"""

from __future__ import annotations

import itertools
import re
import shutil
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import psycopg
import redis
from rich.console import Console

from triage.runtime import PipelineProcess, Stack, migrate, open_stack
from triage.services import free_port
from triage.settings import AppSettings
from triage.tools.compare import differing_parts, store_snapshot
from triage.tools.cpu import CpuMeter, postgres_server_pid, redis_server_pid
from triage.tools.report import routed_summary

STAGES = ("decode", "enrich", "classify", "route", "write_analytics", "write_live")
_BUCKET = re.compile(r'^triage_stage_latency_seconds_bucket\{le="([^"]+)",stage="([^"]+)"\} (\S+)$')

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


def _warm_up(
    conn: psycopg.Connection[Any],
    client: redis.Redis,
    prefix: str,
    pipeline: PipelineProcess,
    *,
    timeout: float,
) -> list[int]:
    """The customers' ids, once a first ticket was routed (the snapshot of reference data
    and the first decision are out of the way)."""
    customers = [r[0] for r in conn.execute("SELECT id FROM customers ORDER BY id")]
    warm = conn.execute(_INSERT, next(_ticket_rows(1, customers))).fetchone()
    assert warm is not None
    if _wait_routed(client, prefix, [warm[0]], timeout)["tickets_routed"] != 1:
        raise RuntimeError(f"pipeline did not start:\n{pipeline.log_tail()}")
    return customers


def _pipeline_env(processes: int, metrics_port: int | None = None) -> dict[str, str]:
    # Batch jobs (forecast, compaction) would compete for the CPU being measured.
    env = {"TRIAGE_JOBS__ENABLED": "false", "TRIAGE_CLUSTER__PROCESSES": str(processes)}
    if metrics_port is not None:
        env["TRIAGE_METRICS__PORT"] = str(metrics_port)
    return env


def _seed(dsn: str) -> None:
    from evaluation.workload import WorkloadConfig, WorkloadWriter

    WorkloadWriter(
        dsn, WorkloadConfig(seed=1, customers=500, agents=60, tickets=1)
    ).seed_reference_data()


def _metric_lines(ports: list[int]) -> Iterator[str]:
    """The lines of every pipeline process's ``/metrics`` (a process that does not answer
    is skipped)."""
    for port in ports:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
                text = resp.read().decode()
        except OSError:
            continue
        yield from text.splitlines()


def scrape_stages(ports: list[int]) -> dict[str, dict[float, float]]:
    """Cumulative bucket counts of ``triage_stage_latency_seconds`` summed over processes."""
    out: dict[str, dict[float, float]] = {}
    for line in _metric_lines(ports):
        m = _BUCKET.match(line)
        if m:
            le = float("inf") if m.group(1) == "+Inf" else float(m.group(1))
            stage = out.setdefault(m.group(2), {})
            stage[le] = stage.get(le, 0.0) + float(m.group(3))
    return out


_SNAPSHOT = re.compile(r'^triage_snapshot(s|_bytes|_seconds)_total\{state="([^"]+)"\} (\S+)$')
_SNAPSHOT_FIELDS = {"s": 0, "_bytes": 1, "_seconds": 2}


def scrape_snapshots(ports: list[int]) -> dict[str, list[float]]:
    """``{state: [snapshots, bytes, seconds]}`` of ``triage_snapshot*_total`` summed over
    processes."""
    out: dict[str, list[float]] = {}
    for line in _metric_lines(ports):
        m = _SNAPSHOT.match(line)
        if m:
            totals = out.setdefault(m.group(2), [0.0, 0.0, 0.0])
            totals[_SNAPSHOT_FIELDS[m.group(1)]] += float(m.group(3))
    return out


def snapshot_summary(
    before: dict[str, list[float]], after: dict[str, list[float]], epochs: float
) -> dict[str, Any]:
    """Bytes and worker milliseconds of recovery snapshots per epoch, in all and per state
    (largest first), between two scrapes spanning ``epochs`` epochs.

    Example:
        >>> a = {"QueueState (journaled)": [10, 5e6, 0.2]}
        >>> b = {"QueueState (journaled)": [20, 9e6, 0.5], "buffer": [4, 2e5, 0.01]}
        >>> snapshot_summary(a, b, 2)["per_epoch"]
        {'snapshots': 7.0, 'kib': 2050.8, 'ms': 155.0}
    """
    epochs = max(epochs, 1.0)
    rows: dict[str, dict[str, float]] = {}
    for state, (count, size, seconds) in after.items():
        old = before.get(state, [0.0, 0.0, 0.0])
        rows[state] = {
            "snapshots": round((count - old[0]) / epochs, 1),
            "kib": round((size - old[1]) / 1024 / epochs, 1),
            "ms": round((seconds - old[2]) * 1000 / epochs, 1),
        }
    total = {
        field: round(sum(r[field] for r in rows.values()), 1)
        for field in ("snapshots", "kib", "ms")
    }
    ranked = dict(sorted(rows.items(), key=lambda kv: -kv[1]["kib"]))
    return {"epochs": round(epochs, 1), "per_epoch": total, "by_state": ranked}


def stage_percentiles(
    before: dict[str, dict[float, float]], after: dict[str, dict[float, float]]
) -> dict[str, dict[str, float | int | None]]:
    """p50/p90/p99 (bucket upper bounds, ms) of what each stage observed between scrapes.

    Example:
        >>> a = {"route": {0.01: 0.0, 0.05: 0.0, float("inf"): 0.0}}
        >>> b = {"route": {0.01: 60.0, 0.05: 99.0, float("inf"): 100.0}}
        >>> stage_percentiles(a, b)["route"]
        {'count': 100, 'p50_ms_at_most': 10.0, 'p90_ms_at_most': 50.0, 'p99_ms_at_most': 50.0}
    """
    result: dict[str, dict[str, float | int | None]] = {}
    for stage in STAGES:
        hist = after.get(stage)
        if not hist:
            continue
        old = before.get(stage, {})
        bounds = sorted(hist)
        counts = [hist[b] - old.get(b, 0.0) for b in bounds]
        total = counts[-1] if counts else 0
        row: dict[str, float | int | None] = {"count": int(total)}
        for q in (50, 90, 99):
            bound = next(
                (b for b, c in zip(bounds, counts, strict=True) if c >= total * q / 100), None
            )
            row[f"p{q}_ms_at_most"] = (
                None
                if bound is None or total == 0 or bound == float("inf")
                else round(bound * 1000, 1)
            )
        result[stage] = row
    return result


def run_bench(
    settings: AppSettings,
    *,
    events: int,
    rate: float,
    seconds: float,
    console: Console,
    processes: list[int] | None = None,
    scale_events: int | None = None,
) -> dict[str, Any]:
    counts = processes or [1]
    state_dir = settings.state_dir / "bench"
    if state_dir.exists():
        shutil.rmtree(state_dir)
    prefix = settings.redis.key_prefix
    with open_stack(settings, state_dir / "services") as stack:
        migrate(stack)
        _seed(stack.source_dsn)
        client = redis.Redis.from_url(stack.redis_url)
        metrics_port = free_port()
        ports = [metrics_port + i for i in range(counts[0])]
        pipeline = PipelineProcess(
            stack, state_dir / "pipeline", extra_env=_pipeline_env(counts[0], metrics_port)
        ).start()
        try:
            pipeline.wait_ready(settings.source.slot_name, flow_id=settings.pipeline.flow_id)
            with psycopg.connect(stack.source_dsn, autocommit=True) as conn:
                customers = _warm_up(conn, client, prefix, pipeline, timeout=120)

                latency = _latency_run(
                    conn, client, settings, customers, rate, seconds, ports, console
                )

                console.print(f"throughput run: {events} tickets in bulk")
                services = {
                    "postgres": postgres_server_pid(conn),
                    "redis": redis_server_pid(client),
                }
                meter = CpuMeter({"pipeline": pipeline.pid, **services}, threads_of="pipeline")
                t1 = time.perf_counter()
                bulk_ids = _insert_bulk(conn, _ticket_rows(events, customers, start=10_000_000))
                insert_s = time.perf_counter() - t1
                routed = _wait_decided(stack.analytics_dsn, bulk_ids, pipeline, timeout=900)
                total_s = time.perf_counter() - t1
                cpu = meter.read()

                console.print(f"mixed run: {events} change events")
                mixed = _mixed_run(conn, stack.analytics_dsn, customers, events, pipeline)

                console.print("recovery run: kill -9, restart, first new decision")
                recovery = _recovery_run(conn, client, prefix, customers, pipeline)
        finally:
            pipeline.stop()
        scale = None
        if len(counts) > 1:
            scale = _scale_runs(settings, stack, counts, scale_events or events, state_dir, console)
    result: dict[str, Any] = {
        "processes": counts[0],
        "latency": latency,
        "throughput": {
            "tickets": events,
            "routed": routed,
            "insert_seconds": round(insert_s, 2),
            "end_to_end_seconds": round(total_s, 2),
            "events_per_s": round(routed / total_s, 1),
            "cpu": cpu,
            "pipeline_cpu_ms_per_ticket": _per_ticket_ms(cpu, routed),
        },
        "mixed_throughput": mixed,
        "recovery": recovery,
    }
    if scale is not None:
        result["scale"], result["same_results"] = scale
    return result


def _latency_run(
    conn: psycopg.Connection[Any],
    client: redis.Redis,
    settings: AppSettings,
    customers: list[int],
    rate: float,
    seconds: float,
    ports: list[int],
    console: Console,
) -> dict[str, Any]:
    """One ticket per transaction at ``rate``/s for ``seconds``: commit → decision in Redis,
    and the recovery snapshots taken meanwhile, per epoch."""
    console.print(f"latency run: {rate:.0f} tickets/s for {seconds:.0f}s")
    before = scrape_stages(ports)
    snapshots_before, started = scrape_snapshots(ports), time.perf_counter()
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
    lat = _wait_routed(client, settings.redis.key_prefix, ids, 120)
    time.sleep(1.0)  # the stage recorders report in batches of at most 0.5 s
    epochs = (time.perf_counter() - started) / settings.pipeline.epoch_interval.total_seconds()
    return {
        "offered_rate_per_s": rate,
        "achieved_rate_per_s": round(len(ids) / offered_s, 1),
        "tickets": len(ids),
        "routed": lat["tickets_routed"],
        "commit_to_redis_ms": lat["latency_ms"],
        "stages_commit_to_exit_ms": stage_percentiles(before, scrape_stages(ports)),
        "snapshots": snapshot_summary(snapshots_before, scrape_snapshots(ports), epochs),
    }


def run_kafka_bench(
    settings: AppSettings, *, rate: float, seconds: float, console: Console, processes: int = 1
) -> dict[str, Any]:
    """The latency run on the production inbound path: commit → Debezium in Kafka Connect
    → a local KRaft broker → the pipeline in Kafka mode → decision in Redis.

    Same JSON as the embedded bench's ``latency`` part (and ``processes``), plus
    ``cdc: kafka``; the broker, Connect and the production connector are started as in
    ``triage demo --cdc kafka`` (:func:`triage.kafka_local.local_production_cdc`).
    """
    from triage.kafka_local import local_production_cdc

    state_dir = settings.state_dir / "bench-kafka"
    if state_dir.exists():
        shutil.rmtree(state_dir)
    prefix = settings.redis.key_prefix
    with open_stack(settings, state_dir / "services") as stack:
        migrate(stack)
        _seed(stack.source_dsn)
        console.print("starting a KRaft broker and Kafka Connect with Debezium")
        with local_production_cdc(stack.source_dsn, state_dir) as cdc:
            metrics_port = free_port()
            ports = [metrics_port + i for i in range(processes)]
            env = {**_pipeline_env(processes, metrics_port), **cdc.pipeline_env()}
            pipeline = PipelineProcess(stack, state_dir / "pipeline", extra_env=env).start()
            client = redis.Redis.from_url(stack.redis_url)
            try:
                with psycopg.connect(stack.source_dsn, autocommit=True) as conn:
                    customers = _warm_up(conn, client, prefix, pipeline, timeout=180)
                    latency = _latency_run(
                        conn, client, settings, customers, rate, seconds, ports, console
                    )
            finally:
                pipeline.stop()
                client.close()
    return {"processes": processes, "cdc": "kafka", "latency": latency}


def _recovery_run(
    conn: psycopg.Connection[Any],
    client: redis.Redis,
    prefix: str,
    customers: list[int],
    pipeline: PipelineProcess,
) -> dict[str, Any]:
    """SIGKILL the pipeline, restart it, and time the first decision on a new ticket.

    A ticket is inserted every 100 ms from the restart on; the time is restart → the first
    of them routed in Redis (process start, imports, resume from recovery, replay of the
    last epoch, first decision).
    """
    pipeline.kill()
    t0 = time.perf_counter()
    pipeline.start()
    ids: list[int] = []
    rows = _ticket_rows(100_000, customers, start=20_000_000)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and pipeline.alive():
        got = conn.execute(_INSERT, next(rows)).fetchone()
        assert got is not None
        ids.append(got[0])
        if routed_summary(client, prefix, ids)["tickets_routed"] > 0:
            return {"restart_to_first_decision_s": round(time.perf_counter() - t0, 2)}
        time.sleep(0.1)
    return {"restart_to_first_decision_s": None}


def _database(dsn: str, name: str) -> str:
    """A fresh database beside ``dsn``'s (the bench's own private server)."""
    from psycopg import sql
    from psycopg.conninfo import make_conninfo

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return make_conninfo(dsn, dbname=name)


def _scale_runs(
    settings: AppSettings,
    stack: Stack,
    counts: list[int],
    events: int,
    state_dir: Any,
    console: Console,
) -> tuple[dict[str, Any], bool]:
    """The same history through each process count: one source database, one slot each.

    Every pipeline registers its replication slot (and completes its first epoch) before
    the tickets are written; then each in turn reads the whole history from its slot into
    its own analytics database. So the runs see the same changes at the same LSNs, and
    their stores can be compared (:mod:`triage.tools.compare`). Throughput is the tickets
    divided by the span from the first ticket enriched to the last decision (a backlog,
    for every run; start-up before the first ticket is left out and reported apart).
    """
    source = _database(stack.source_dsn, "bench_scale_source")
    runs: dict[int, tuple[str, PipelineProcess]] = {}
    for n in counts:
        analytics = _database(stack.source_dsn, f"bench_scale_{n}")
        run_stack = Stack(source_dsn=source, analytics_dsn=analytics, redis_url=stack.redis_url)
        migrate(run_stack)
        env = _pipeline_env(n)
        env["TRIAGE_REDIS__KEY_PREFIX"] = f"bench{n}"
        env["TRIAGE_SOURCE__SLOT_NAME"] = f"bench_scale_{n}"
        runs[n] = (analytics, PipelineProcess(run_stack, state_dir / f"scale-{n}", extra_env=env))
    _seed(source)
    for n, (_, pipeline) in runs.items():
        pipeline.start()
        try:
            pipeline.wait_ready(f"bench_scale_{n}", flow_id=settings.pipeline.flow_id)
        finally:
            pipeline.stop()
    with psycopg.connect(source, autocommit=True) as conn:
        customers = [r[0] for r in conn.execute("SELECT id FROM customers ORDER BY id")]
        ids = _insert_bulk(conn, _ticket_rows(events, customers))
        postgres_pid = postgres_server_pid(conn)
    client = redis.Redis.from_url(stack.redis_url)
    try:
        redis_pid = redis_server_pid(client)
    finally:
        client.close()
    scale: dict[str, Any] = {}
    snapshots = []
    for n, (analytics, pipeline) in runs.items():
        console.print(f"scale run: {n} process(es), {events} tickets from the slot")
        t0 = time.perf_counter()
        pipeline.start()
        meter = CpuMeter(
            {"pipeline": pipeline.pid, "postgres": postgres_pid, "redis": redis_pid},
            threads_of="pipeline",
        )
        try:
            routed = _wait_decided(analytics, ids, pipeline, timeout=900)
            wall = time.perf_counter() - t0
            cpu = meter.read()
            time.sleep(2.0)  # the last minute windows and rollups settle
        finally:
            pipeline.stop()
        with psycopg.connect(analytics) as conn:
            # Processing window: the first ticket entering enrichment to the last decision
            # (the pipeline's start-up is not throughput).
            row = conn.execute(
                "SELECT extract(epoch FROM "
                "  (SELECT max(decided_at) FROM analytics.routing_decision_history "
                "    WHERE ticket_id = ANY(%(ids)s)) - "
                "  (SELECT min(enriched_at) FROM analytics.ticket_facts "
                "    WHERE ticket_id = ANY(%(ids)s)))",
                {"ids": ids},
            ).fetchone()
        span = float(row[0]) if row and row[0] else float("nan")
        scale[str(n)] = {
            "tickets": events,
            "routed": routed,
            "first_enriched_to_last_decision_s": round(span, 2),
            "restart_to_last_decision_s": round(wall, 2),
            "events_per_s": round(routed / span, 1) if span > 0 else None,
            "cpu": cpu,
            "pipeline_cpu_ms_per_ticket": _per_ticket_ms(cpu, routed),
        }
        snapshots.append(store_snapshot(analytics))
    first, last = scale[str(counts[0])], scale[str(counts[-1])]
    if first["events_per_s"] and last["events_per_s"]:
        scale["ratio"] = round(last["events_per_s"] / first["events_per_s"], 2)
    differs = sorted({p for snap in snapshots[1:] for p in differing_parts(snapshots[0], snap)})
    if differs:
        scale["differing"] = differs
    return scale, not differs


def _per_ticket_ms(cpu: dict[str, Any], tickets: int) -> float | None:
    """The pipeline's CPU milliseconds per ticket of a run (start-up included)."""
    seconds = cpu["cpu_seconds"].get("pipeline")
    return round(seconds * 1000 / tickets, 3) if seconds is not None and tickets else None


def _insert_bulk(conn: psycopg.Connection[Any], rows: Any) -> list[int]:
    ids: list[int] = []
    rows_iter = iter(rows)
    while chunk := list(itertools.islice(rows_iter, 5000)):
        with conn.transaction(), conn.cursor() as cur:
            cur.executemany(_INSERT, chunk, returning=True)
            while True:
                got = cur.fetchone()
                if got is not None:
                    ids.append(got[0])
                if not cur.nextset():
                    break
    return ids


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
    meter = CpuMeter({"pipeline": pipeline.pid, "postgres": postgres_server_pid(conn)})
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
    cpu = meter.read()
    return {
        "change_events": tickets * 5,
        "tickets_complete": done,
        "insert_seconds": round(insert_s, 2),
        "end_to_end_seconds": round(total_s, 2),
        "events_per_s": round(tickets * 5 / total_s, 1) if done >= tickets else None,
        "cpu": cpu,
    }
