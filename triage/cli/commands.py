"""The ``triage`` command line.

Kept as one module: it is the command table: each command is a thin function
that parses options and calls into the application, and the help text of the whole CLI reads
in one place; shared helpers live in common.py.
"""

from __future__ import annotations

import json
import os
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from triage.cli.common import StateDir, console
from triage.cli.common import fail as _fail
from triage.cli.common import load_settings as _settings
from triage.cli.common import stop_on_sigterm as _stop_on_sigterm
from triage.cli.keys import keys_app

app = typer.Typer(
    name="triage",
    help="Smart Triage: live ticket triage from a helpdesk's PostgreSQL.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
cdc_app = typer.Typer(help="Manage the embedded CDC reader's replication slot.")
app.add_typer(cdc_app, name="cdc")
connect_app = typer.Typer(help="Production path: the Debezium connector in Kafka Connect.")
app.add_typer(connect_app, name="connect")
app.add_typer(keys_app, name="api-keys")


class CdcPath(StrEnum):
    """Where the demo's and the bench's changes come from."""

    embedded = "embedded"
    kafka = "kafka"


@app.command()
def demo(
    tickets: Annotated[int, typer.Option(min=1, help="Tickets to create.")] = 300,
    rate: Annotated[float, typer.Option(min=0.1, help="Offered tickets per second.")] = 25.0,
    seed: Annotated[int, typer.Option(help="Workload seed.")] = 7,
    json_out: Annotated[
        bool, typer.Option("--json", help="Non-interactive: no progress, summary as JSON.")
    ] = False,
    serve: Annotated[bool, typer.Option(help="Keep the API serving after the run.")] = False,
    fresh: Annotated[bool, typer.Option(help="Start from empty stores.")] = True,
    cdc: Annotated[
        CdcPath | None,
        typer.Option(
            help="kafka: a local KRaft broker and Kafka Connect with the production Debezium "
            "connector feed the pipeline (jars from `make setup`); default: TRIAGE_CDC__MODE."
        ),
    ] = None,
    state_dir: StateDir = None,
) -> None:
    """Run the whole system on the embedded default (or through Debezium and a local Kafka
    with --cdc kafka) and print a summary."""
    from triage.services import ServiceError
    from triage.tools.demo import DemoError, DemoOptions, render_summary, run_demo

    settings = _settings(state_dir)
    opts = DemoOptions(
        tickets=tickets, rate=rate, seed=seed, serve=serve, fresh=fresh, quiet=json_out
    )

    def show(summary: dict[str, object]) -> None:
        if json_out:
            sys.stdout.write(json.dumps(summary) + "\n")
            sys.stdout.flush()
        else:
            render_summary(summary, Console())

    if cdc is CdcPath.embedded:
        settings = settings.model_copy(
            update={"cdc": settings.cdc.model_copy(update={"mode": "embedded"})}
        )
        # The pipeline runs as a child process that reads its settings from the environment.
        os.environ["TRIAGE_CDC__MODE"] = "embedded"
    _stop_on_sigterm()
    try:
        if cdc is CdcPath.kafka:
            from triage.tools.demo_kafka import run_kafka_demo

            summary = run_kafka_demo(settings, opts, console, on_summary=show)
        else:
            summary = run_demo(settings, opts, console, on_summary=show)
    except (ServiceError, DemoError) as exc:
        raise _fail(str(exc)) from exc
    except KeyboardInterrupt:
        console.print("stopped: pipeline, API and local services shut down")
        raise typer.Exit(130) from None
    if summary["tickets_routed"] != summary["tickets_created"]:
        raise typer.Exit(1)


@app.command()
def pipeline(
    state_dir: StateDir = None,
    migrate_first: Annotated[
        bool,
        typer.Option(
            "--migrate/--no-migrate",
            help="Apply the schemas first (idempotent); --no-migrate when a deploy step does.",
        ),
    ] = True,
    processes: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=64,
            help="Start a local cluster of this many processes (TRIAGE_CLUSTER__PROCESSES).",
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            min=1, max=64, help="Worker threads per process (TRIAGE_CLUSTER__WORKERS_PER_PROCESS)."
        ),
    ] = None,
    process_id: Annotated[
        int | None,
        typer.Option("--process-id", "-i", min=0, help="This process's index in --addresses."),
    ] = None,
    addresses: Annotated[
        str | None,
        typer.Option(
            "--addresses",
            "-a",
            help="host:port of every process of a multi-host cluster, ';'-separated, in id order.",
        ),
    ] = None,
    epoch_interval: Annotated[
        float | None,
        typer.Option(
            min=0.1, help="Seconds between recovery snapshots (TRIAGE_PIPELINE__EPOCH_INTERVAL)."
        ),
    ] = None,
    recovery_dir: Annotated[
        Path | None, typer.Option(help="Recovery partitions (default <state-dir>/recovery).")
    ] = None,
) -> None:
    """Run the triage dataflow (stores from TRIAGE_* settings) until interrupted.

    One process by default; --processes P starts a local cluster of P processes (Bytewax
    cluster mode over loopback). Across hosts, run one process per host with
    --process-id and the same --addresses.
    """
    from datetime import timedelta

    from triage.runtime import migrate as apply
    from triage.runtime import open_stack, run_pipeline
    from triage.services import ServiceError

    settings = _settings(state_dir)
    cluster: dict[str, object] = {}
    if processes is not None:
        cluster["processes"] = processes
    if workers is not None:
        cluster["workers_per_process"] = workers
    if recovery_dir is not None:
        cluster["recovery_dir"] = recovery_dir
    if addresses is not None:
        cluster["addresses"] = [a.strip() for a in addresses.split(";") if a.strip()]
    if process_id is not None:
        cluster["process_id"] = process_id
    if cluster:
        settings = settings.model_copy(
            update={"cluster": settings.cluster.model_copy(update=cluster)}
        )
    if epoch_interval is not None:
        settings = settings.model_copy(
            update={
                "pipeline": settings.pipeline.model_copy(
                    update={"epoch_interval": timedelta(seconds=epoch_interval)}
                )
            }
        )
    c = settings.cluster
    if c.addresses and (c.process_id is None or c.process_id >= len(c.addresses)):
        raise _fail(
            f"--process-id must be one of 0..{len(c.addresses) - 1} with {len(c.addresses)} "
            "--addresses (TRIAGE_CLUSTER__PROCESS_ID)"
        )
    if c.addresses and c.processes > 1:
        raise _fail("give either --processes (one host) or --addresses (one process per host)")
    _stop_on_sigterm()  # Bytewax and the cluster supervisor take signals over once running
    try:
        with open_stack(settings, settings.state_dir / "services") as stack:
            if migrate_first:
                apply(stack, timescale=settings.timescale.enabled)
            if c.processes > 1:
                from triage.cluster import run_local_cluster

                code = run_local_cluster(settings, stack, log_dir=settings.state_dir / "cluster")
                if code:
                    raise _fail(
                        f"a pipeline process failed (exit {code}); logs in "
                        f"{settings.state_dir / 'cluster'}",
                        code,
                    )
            else:
                run_pipeline(settings, stack)
    except KeyboardInterrupt:
        pass
    except ServiceError as exc:
        raise _fail(str(exc)) from exc


@app.command()
def api(
    port: Annotated[int | None, typer.Option(help="Port (default TRIAGE_API__PORT).")] = None,
    workers: Annotated[
        int | None,
        typer.Option(min=1, max=64, help="Worker processes (default TRIAGE_API__WORKERS)."),
    ] = None,
    state_dir: StateDir = None,
) -> None:
    """Serve the read API (routing decisions, agent queues, health)."""
    from triage.api_server import serve
    from triage.runtime import open_stack

    settings = _settings(state_dir)
    _stop_on_sigterm()  # until uvicorn takes the signals over (it stops gracefully on both)
    try:
        with open_stack(settings, settings.state_dir / "services") as stack:
            serve(
                settings,
                stack,
                port=port or settings.api.port,
                workers=workers or settings.api.workers,
            )
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


@app.command()
def migrate(state_dir: StateDir = None) -> None:
    """Apply the source and analytics schemas (idempotent)."""
    from triage.runtime import migrate as apply
    from triage.runtime import open_stack

    settings = _settings(state_dir)
    with open_stack(settings, settings.state_dir / "services") as stack:
        applied = apply(stack)
    console.print(f"applied {len(applied)} migration(s): {', '.join(applied) or 'none new'}")


@app.command()
def generate(
    tickets: Annotated[int, typer.Option(min=1)] = 1000,
    rate: Annotated[float, typer.Option(min=0.1)] = 50.0,
    seed: Annotated[int, typer.Option()] = 7,
    state_dir: StateDir = None,
) -> None:
    """Write helpdesk activity into the source database (TRIAGE_SOURCE__DSN)."""
    from evaluation.workload import WorkloadConfig, WorkloadWriter

    settings = _settings(state_dir)
    if settings.source.dsn is None:
        raise _fail("set TRIAGE_SOURCE__DSN to the helpdesk database to write into")
    writer = WorkloadWriter(
        settings.source.dsn, WorkloadConfig(seed=seed, tickets=tickets, rate=rate)
    )
    writer.seed_reference_data()
    report = writer.run()
    console.print(f"created {len(report.created_ticket_ids)} tickets")


bench_app = typer.Typer(
    help="Benchmarks that print JSON: the pipeline (default) and the read API (`bench api`).",
    invoke_without_command=True,
)


@bench_app.callback()
def bench(
    ctx: typer.Context,
    events: Annotated[int, typer.Option(min=100, help="Tickets for the throughput run.")] = 50000,
    rate: Annotated[float, typer.Option(min=1, help="Offered tickets/s for latency.")] = 200.0,
    seconds: Annotated[float, typer.Option(min=1, help="Length of the latency run.")] = 20.0,
    processes: Annotated[
        str,
        typer.Option(
            help="Process counts, e.g. 1,2: latency and throughput on the first; with more "
            "than one, a scale run per count and the same-results check."
        ),
    ] = "1",
    scale_events: Annotated[
        int | None, typer.Option(min=100, help="Tickets per scale run (default --events).")
    ] = None,
    cdc: Annotated[
        CdcPath,
        typer.Option(
            help="kafka: the latency run only, through Debezium in Kafka Connect and a local "
            "KRaft broker (jars from `make setup`), on the first process count."
        ),
    ] = CdcPath.embedded,
    memory: Annotated[
        str | None,
        typer.Option(
            help="Only the memory run: tickets after which the pipeline's resident set is "
            "read, e.g. 100000,1000000 (each closed two chunks of 5,000 later)."
        ),
    ] = None,
    state_dir: StateDir = None,
) -> None:
    """Benchmark the embedded path; prints JSON (latency, stages, throughput, scale).

    With --cdc kafka: the latency run through Debezium and Kafka, same JSON. With --memory:
    the pipeline's resident set after so many tickets. `triage bench api` benchmarks the
    read API instead."""
    if ctx.invoked_subcommand is not None:
        return
    from triage.tools.bench import run_bench, run_kafka_bench

    try:
        counts = [int(p) for p in processes.split(",") if p.strip()]
    except ValueError:
        counts = []
    if not counts or any(not 1 <= c <= 64 for c in counts):
        raise _fail(
            f"--processes takes counts from 1 to 64 separated by commas, not {processes!r}", 2
        )
    settings = _settings(state_dir)
    if memory is not None:
        from triage.tools.bench_memory import run_memory_bench

        try:
            marks = [int(m.replace("_", "")) for m in memory.split(",") if m.strip()]
        except ValueError:
            marks = []
        if not marks or any(m < 1 for m in marks):
            raise _fail(f"--memory takes ticket counts separated by commas, not {memory!r}", 2)
        result = run_memory_bench(settings, checkpoints=marks, console=console)
        sys.stdout.write(json.dumps({"memory": result}) + "\n")
        return
    if cdc is CdcPath.kafka:
        kafka = run_kafka_bench(
            settings, rate=rate, seconds=seconds, console=console, processes=counts[0]
        )
        sys.stdout.write(json.dumps(kafka) + "\n")
        return
    result = run_bench(
        settings,
        events=events,
        rate=rate,
        seconds=seconds,
        console=console,
        processes=counts,
        scale_events=scale_events,
    )
    sys.stdout.write(json.dumps(result) + "\n")


@bench_app.command("api")
def bench_api(
    rate: Annotated[
        float,
        typer.Option(min=0, help="Offered requests/s (open loop); 0: as fast as it answers."),
    ] = 1000.0,
    seconds: Annotated[float, typer.Option(min=1, help="Length of the measured run.")] = 20.0,
    connections: Annotated[int, typer.Option(min=1, max=1024, help="Keep-alive connections.")] = 64,
    workers: Annotated[
        int | None, typer.Option(min=1, max=64, help="API processes (default TRIAGE_API__WORKERS).")
    ] = None,
    tickets: Annotated[int, typer.Option(min=1, help="Routing decisions to read.")] = 10000,
    state_dir: StateDir = None,
) -> None:
    """Benchmark `GET /v1/tickets/{id}/routing` (auth on, audit on); prints JSON with
    achieved rate, status counts, errors and p50/p90/p99 latency from each request's due
    time (no coordinated omission)."""
    from triage.services import ServiceError
    from triage.tools.api_bench import run_api_bench

    settings = _settings(state_dir)
    try:
        result = run_api_bench(
            settings,
            rate=rate,
            seconds=seconds,
            connections=connections,
            workers=workers or settings.api.workers,
            tickets=tickets,
            console=console,
        )
    except (ServiceError, RuntimeError) as exc:
        raise _fail(str(exc)) from exc
    sys.stdout.write(json.dumps(result) + "\n")


app.add_typer(bench_app, name="bench")


@app.command()
def profile(
    seconds: Annotated[int, typer.Option(min=1, help="How long to sample, in seconds.")] = 30,
    rate: Annotated[int, typer.Option(min=1, max=1000, help="Samples per second.")] = 100,
    pid: Annotated[
        list[int] | None,
        typer.Option(help="Process to sample (repeatable); default: every running pipeline."),
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print only the JSON document.")] = False,
) -> None:
    """Where the running pipeline's CPU goes: samples it with py-spy and prints the share
    of each stage of the flow (read, decode, enrich, duplicates, classify, route, each
    sink, recovery snapshots, Bytewax's runtime) and the busiest functions."""
    from triage.tools.profile import ProfileError, pipeline_pids, record

    pids = list(pid or pipeline_pids())
    if not pids:
        raise _fail(
            "no running `triage pipeline` found; start one (e.g. `triage demo` or "
            "`triage pipeline`), or name a process with --pid"
        )
    if not json_out:
        console.print(f"sampling {', '.join(map(str, pids))} for {seconds} s …")
    try:
        result = record(pids, seconds=seconds, rate=rate).report()
    except ProfileError as exc:
        raise _fail(str(exc)) from exc
    result["pids"] = pids
    if not json_out:
        from rich.table import Table

        table = Table("stage", "% of samples", title=f"{result['samples']} samples")
        for name, share in result["stages_percent"].items():
            table.add_row(name, f"{share:.1f}")
        console.print(table)
        functions = Table("function (self time)", "% of samples")
        for name, share in result["top_functions_percent"].items():
            functions.add_row(name, f"{share:.1f}")
        console.print(functions)
    sys.stdout.write(json.dumps(result) + "\n")


@app.command()
def evaluate(
    data_dir: Annotated[
        Path | None,
        typer.Option(help="Folder with endava_tickets/ and itsm_incident_log/ (../shared/data)."),
    ] = None,
    only: Annotated[
        list[str] | None,
        typer.Option(help="routing, endava, itsm, forecast or anomaly (repeatable)."),
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print only the JSON document.")] = False,
) -> None:
    """Prequential evaluation of routing, text models and breach risk; table and JSON."""
    from evaluation.suite import run_evaluations

    _settings()
    unknown = set(only or []) - {"routing", "endava", "itsm", "forecast", "anomaly"}
    if unknown:
        raise _fail(f"unknown evaluation(s): {', '.join(sorted(unknown))}", 2)
    results = run_evaluations(
        data_dir, only=set(only) if only else None, console=None if json_out else Console()
    )
    sys.stdout.write(json.dumps(results, default=str) + "\n")


@app.command()
def forecast(
    history_days: Annotated[int, typer.Option(min=7, help="Days of history to fit.")] = 28,
    aht_seconds: Annotated[float, typer.Option(min=1, help="Average handling time.")] = 600.0,
    state_dir: StateDir = None,
) -> None:
    """Forecast hourly volume per category for 7 days with staffing (Erlang C)."""
    from triage.jobs.forecast_job import run_forecast
    from triage.runtime import open_stack

    settings = _settings(state_dir)
    with open_stack(settings, settings.state_dir / "services") as stack:
        result = run_forecast(
            stack.analytics_dsn, history_days=history_days, aht_seconds=aht_seconds
        )
    sys.stdout.write(json.dumps(result) + "\n")


@app.command()
def report(
    day: Annotated[str | None, typer.Option(help="UTC day YYYY-MM-DD (default: today).")] = None,
    state_dir: StateDir = None,
) -> None:
    """Print the daily summary (Markdown) from the analytics store."""
    from datetime import UTC, date, datetime

    import psycopg

    from api.reports import daily_stats
    from models.summary import render_daily_summary
    from triage.runtime import open_stack

    settings = _settings(state_dir)
    try:
        wanted = date.fromisoformat(day) if day else datetime.now(UTC).date()
    except ValueError as exc:
        raise _fail(f"--day must be YYYY-MM-DD, got {day!r}", 2) from exc
    with (
        open_stack(settings, settings.state_dir / "services") as stack,
        psycopg.connect(stack.analytics_dsn) as conn,
    ):
        sys.stdout.write(render_daily_summary(daily_stats(conn, wanted)))


dashboards_app = typer.Typer(help="Dashboards: sample history, Grafana export, query benchmark.")
app.add_typer(dashboards_app, name="dashboards")


@dashboards_app.command("sample-data")
def dashboards_sample_data(
    days: Annotated[int, typer.Option(min=1, max=400, help="Days of history to write.")] = 30,
    per_minute: Annotated[
        float, typer.Option(min=0.01, help="Mean new tickets per minute (before rhythm).")
    ] = 1.5,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 7,
    force: Annotated[
        bool, typer.Option(help="Write even if the store already has minute metrics.")
    ] = False,
    state_dir: StateDir = None,
) -> None:
    """Fill the analytics store with a synthetic history (to explore dashboards, notebooks)."""
    import psycopg
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from triage.runtime import migrate as apply
    from triage.runtime import open_stack
    from triage.tools.sample_analytics import seed_analytics

    settings = _settings(state_dir)
    with open_stack(settings, settings.state_dir / "services") as stack:
        apply(stack, timescale=settings.timescale.enabled)
        with psycopg.connect(stack.analytics_dsn) as conn:
            row = conn.execute("SELECT count(*) FROM analytics.metrics_minute").fetchone()
        if row and row[0] and not force:
            raise _fail(
                f"the analytics store already holds {row[0]} minute-metric rows; sample data "
                "would mix with them. Use a fresh --state-dir (or --force)."
            )
        with Progress(
            SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console
        ) as progress:
            task = progress.add_task("seeding", total=None)
            summary = seed_analytics(
                stack.analytics_dsn,
                days=days,
                tickets_per_minute=per_minute,
                seed=seed,
                progress=lambda what: progress.update(task, description=f"writing {what}"),
            )
    sys.stdout.write(json.dumps(summary.as_dict()) + "\n")


@dashboards_app.command("grafana")
def dashboards_grafana(
    output: Annotated[
        Path | None, typer.Option(help="Where to write (default: infra/grafana/dashboards).")
    ] = None,
    check: Annotated[
        bool, typer.Option(help="Only check that the file is up to date (exit 1 if not).")
    ] = False,
) -> None:
    """Write the Grafana dashboard JSON generated from the panel queries."""
    from triage.tools.grafana import GRAFANA_JSON, render, write

    target = output or GRAFANA_JSON
    if check:
        current = target.read_text(encoding="utf-8") if target.exists() else ""
        if current != render():
            raise _fail(f"{target} is out of date: run `triage dashboards grafana`")
        console.print(f"{target} is up to date")
        return
    console.print(f"wrote {write(target)}")


@dashboards_app.command("bench")
def dashboards_bench(
    days: Annotated[int, typer.Option(min=1, max=120, help="Days of history to seed.")] = 30,
    repeat: Annotated[int, typer.Option(min=1, help="Runs of each query.")] = 20,
    json_out: Annotated[bool, typer.Option("--json", help="Print only the JSON document.")] = False,
) -> None:
    """Time every dashboard query over up to ``days`` of minute metrics (target 50 ms)."""
    from rich.table import Table

    from triage.tools.dashboard_bench import run_dashboard_bench

    _settings()
    with console.status("preparing") as status:
        result = run_dashboard_bench(
            days=days, repeat=repeat, progress=lambda what: status.update(what)
        )
    if not json_out:
        table = Table(title=f"Dashboard queries over {days} days of history (ms)")
        for column in ("range", "panel", "rows", "p50", "p95", "max"):
            table.add_column(column, justify="left" if column in ("range", "panel") else "right")
        for q in result["queries"]:
            p95 = f"{q['p95_ms']:.1f}"
            if q["p95_ms"] > result["target_ms"]:
                p95 = f"[red]{p95}[/]"
            table.add_row(
                q["range"],
                q["panel"],
                str(q["rows"]),
                f"{q['p50_ms']:.1f}",
                p95,
                f"{q['max_ms']:.1f}",
            )
        console.print(table)
    sys.stdout.write(json.dumps(result) + "\n")


warehouse_app = typer.Typer(help="The Parquet warehouse read by BI tools.")
app.add_typer(warehouse_app, name="warehouse")


@warehouse_app.command("compact")
def warehouse_compact(
    day: Annotated[str | None, typer.Option(help="YYYY-MM-DD; default: every partition.")] = None,
    state_dir: StateDir = None,
) -> None:
    """Rewrite partitions keeping the newest copy of each key (removes replay duplicates)."""
    from sinks.warehouse import TABLES, compact

    settings = _settings(state_dir)
    root = settings.warehouse.path or settings.state_dir / "warehouse"
    if not root.exists():
        raise _fail(f"no warehouse at {root}; run the pipeline first or set TRIAGE_WAREHOUSE__PATH")
    for table in TABLES:
        days = (
            [day]
            if day
            else sorted(
                p.name.split("=", 1)[1] for p in (root / table).glob("date=*") if p.is_dir()
            )
        )
        for d in days:
            result = compact(root, table, d)
            console.print(f"{table} {d}: {result}")


jobs_app = typer.Typer(
    help="Batch jobs the pipeline schedules: forecast, warehouse compaction and publishing, "
    "daily summary."
)
app.add_typer(jobs_app, name="jobs")
JobArg = Annotated[
    str, typer.Argument(help="forecast, warehouse-compact, warehouse-publish or daily-summary.")
]


@jobs_app.command("list")
def jobs_list(
    json_out: Annotated[bool, typer.Option("--json", help="Print only the JSON document.")] = False,
    state_dir: StateDir = None,
) -> None:
    """Each job with its schedule, last run and when it is next due."""
    from datetime import UTC, datetime

    import psycopg
    from rich.table import Table

    from triage.jobs.scheduler import build_jobs, job_statuses
    from triage.runtime import open_stack

    settings = _settings(state_dir)
    try:
        with open_stack(settings, settings.state_dir / "services") as stack:
            statuses = job_statuses(build_jobs(settings), stack.analytics_dsn)
    except psycopg.errors.UndefinedTable as exc:
        raise _fail("analytics.job_runs does not exist: run `triage migrate` first") from exc
    if json_out:
        sys.stdout.write(json.dumps([s.as_dict() for s in statuses]) + "\n")
        return
    table = Table(title="Batch jobs (times in UTC)")
    for column in ("job", "schedule", "timeout", "last run", "status", "next due"):
        table.add_column(column)
    now = datetime.now(UTC)
    for s in statuses:
        last = f"{s.last.started_at:%Y-%m-%d %H:%M:%S}" if s.last else "never"
        if s.next_due is None:
            due = f"not scheduled ({s.spec.note})"
        else:
            due = "now" if s.next_due <= now else f"{s.next_due:%Y-%m-%d %H:%M:%S}"
        table.add_row(
            s.spec.name, s.spec.describe(), str(s.spec.timeout), last, s.last_status or "", due
        )
    Console().print(table)


@jobs_app.command("run")
def jobs_run(job: JobArg, state_dir: StateDir = None) -> None:
    """Run one job now (in a child process), recorded like the scheduled runs."""
    import psycopg

    from triage.jobs.scheduler import JOB_NAMES, JobScheduler
    from triage.runtime import open_stack

    settings = _settings(state_dir)
    if job not in JOB_NAMES:
        raise _fail(f"unknown job {job!r} (known: {', '.join(JOB_NAMES)})", 2)
    with open_stack(settings, settings.state_dir / "services") as stack:
        scheduler = JobScheduler.from_settings(settings, stack)
        try:
            outcome = scheduler.run(scheduler.job(job))
        except psycopg.errors.UndefinedTable as exc:
            raise _fail("analytics.job_runs does not exist: run `triage migrate` first") from exc
    if outcome is None:
        raise _fail(f"{job} is running in another process (its lock is held)")
    took = (outcome.finished_at - outcome.started_at).total_seconds()
    console.print(f"{job}: {outcome.status} in {took:.1f} s: {outcome.detail}")
    if outcome.status != "ok":
        raise typer.Exit(1)


@jobs_app.command("exec", hidden=True)
def jobs_exec(
    job: JobArg,
    day: Annotated[
        str | None, typer.Option(help="daily-summary: UTC day YYYY-MM-DD (default yesterday).")
    ] = None,
    state_dir: StateDir = None,
) -> None:
    """Do one job's work in this process (what a scheduled run executes as its child)."""
    from datetime import date

    from triage.jobs.scheduler import JOB_NAMES
    from triage.jobs.work import exec_job, exit_with_parent
    from triage.runtime import open_stack

    settings = _settings(state_dir)
    if job not in JOB_NAMES:
        raise _fail(f"unknown job {job!r} (known: {', '.join(JOB_NAMES)})", 2)
    try:
        wanted = date.fromisoformat(day) if day else None
    except ValueError as exc:
        raise _fail(f"--day must be YYYY-MM-DD, got {day!r}", 2) from exc
    exit_with_parent()
    with open_stack(settings, settings.state_dir / "services") as stack:
        message = exec_job(job, settings, stack, day=wanted)
    sys.stdout.write(message + "\n")


@cdc_app.command("drop-slot")
def drop_slot(state_dir: StateDir = None) -> None:
    """Drop the embedded reader's replication slot (it then snapshots again on start)."""
    from connectors.pg_cdc import drop_slot as drop

    settings = _settings(state_dir)
    if settings.source.dsn is None:
        raise _fail("set TRIAGE_SOURCE__DSN to the database that holds the slot")
    drop(settings.source.dsn, settings.source.slot_name)
    console.print(f"dropped slot {settings.source.slot_name}")


@connect_app.command("register")
def connect_register(
    connector: Annotated[
        Path, typer.Option(exists=True, dir_okay=False, help="Connector JSON file.")
    ] = Path("infra/debezium/helpdesk-connector.json"),
) -> None:
    """Create or update the Debezium connector (TRIAGE_KAFKA__CONNECT_URL) and wait for it."""
    from connectors.kafka_connect import ConnectError, load_connector, register_connector

    settings = _settings()
    try:
        name, config = load_connector(connector)
        status = register_connector(settings.kafka.connect_url, name, config)
    except ConnectError as exc:
        raise _fail(str(exc)) from exc
    console.print(f"connector {name}: {status['connector']['state']}")


kafka_app = typer.Typer(help="Production path: the Kafka topics the project relies on.")
app.add_typer(kafka_app, name="kafka")


@kafka_app.command("create-topics")
def kafka_create_topics(
    partitions: Annotated[int, typer.Option(min=1, help="Partitions of new topics.")] = 4,
) -> None:
    """Create the CDC, alerts and dead-letter topics with their cleanup policies (idempotent).

    CDC topics are compacted and kept forever (a replay rebuilds state from the
    snapshot); the alerts topic is compacted by alert id; dead letters are kept 30 days.
    Existing topics get the same settings; their partition count is never changed.
    """
    from connectors.kafka import KafkaSettings, KafkaTopicError, cdc_topics, ensure_topic_specs
    from connectors.kafka_config import topic_specs

    settings = _settings()
    topics = cdc_topics(
        KafkaSettings(brokers=settings.kafka.brokers, topic_prefix=settings.cdc.topic_prefix)
    )
    specs = topic_specs(
        topics,
        alerts_topic=settings.kafka.alerts_topic if settings.publishes_alerts else None,
        dead_letter_topic=settings.dead_letter_topic,
        partitions=partitions,
    )
    config = {
        **settings.kafka.client_config(),
        "bootstrap.servers": ",".join(settings.kafka.brokers),
    }
    try:
        created, configured = ensure_topic_specs(config, specs)
    except KafkaTopicError as exc:
        raise _fail(str(exc)) from exc
    console.print(f"topics created: {', '.join(created) or 'none'}")
    console.print(f"topics configured: {', '.join(configured) or 'none'}")


rebuild_app = typer.Typer(help="Re-create a derived store from the analytics store.")
app.add_typer(rebuild_app, name="rebuild")


@rebuild_app.command("redis")
def rebuild_redis_command(
    page: Annotated[int, typer.Option(min=1, help="Rows per read and per Redis batch.")] = 5000,
    state_dir: StateDir = None,
) -> None:
    """Re-create Redis live state (routing, queues, SLA clocks, risk) from the analytics
    store (TRIAGE_ANALYTICS__DSN → TRIAGE_REDIS__URL). Idempotent and resumable: safe to
    run again, and while the pipeline runs."""
    from rich.progress import Progress

    from triage.jobs.rebuild import count_rows, rebuild_redis
    from triage.runtime import open_stack

    settings = _settings(state_dir)
    with open_stack(settings, settings.state_dir / "services") as stack:
        totals = count_rows(stack.analytics_dsn)
        with Progress(console=console) as bar:
            tasks = {table: bar.add_task(table, total=n) for table, n in totals.items()}
            read = rebuild_redis(
                stack.analytics_dsn,
                stack.redis_url,
                prefix=settings.redis.key_prefix,
                page=page,
                progress=lambda table, n: bar.advance(tasks[table], n),
            )
    console.print("applied to Redis: " + ", ".join(f"{t} {n}" for t, n in read.items()))


@rebuild_app.command("search")
def rebuild_search_command(
    page: Annotated[int, typer.Option(min=1, help="Rows per read and per write.")] = 2000,
    state_dir: StateDir = None,
) -> None:
    """Index every ticket (ticket_facts + helpdesk descriptions) and KB article again in the
    configured search store (TRIAGE_ELASTICSEARCH__URL, else PostgreSQL full-text search).
    Idempotent and resumable: safe to run again, and while the pipeline runs."""
    from rich.progress import Progress

    from triage.jobs.rebuild import rebuild_search
    from triage.runtime import open_stack, search_sink

    settings = _settings(state_dir)
    with open_stack(settings, settings.state_dir / "services") as stack:
        sink = search_sink(settings, stack)
        if sink is None:
            raise _fail("search is disabled (TRIAGE_ELASTICSEARCH__ENABLED=false)")
        with Progress(console=console) as bar:
            tasks = {
                name: bar.add_task(name, total=None) for name in ("ticket_facts", "kb_articles")
            }
            counts = rebuild_search(
                stack.analytics_dsn,
                stack.source_dsn,
                sink,  # type: ignore[arg-type]
                page=page,
                progress=lambda name, n: bar.advance(tasks[name], n),
            )
    console.print("indexed: " + ", ".join(f"{t} {n}" for t, n in counts.items()))


dead_letters_app = typer.Typer(help="Records the flow or a store could not take, with why.")
app.add_typer(dead_letters_app, name="dead-letters")


@dead_letters_app.command("list")
def dead_letters_list(
    stage: Annotated[
        str | None, typer.Option(help="Only this stage (decode_cdc, write_analytics, ...).")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 20,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON lines.")] = False,
    state_dir: StateDir = None,
) -> None:
    """The newest dead letters (TRIAGE_ANALYTICS__DSN) and the count per stage."""
    from rich.table import Table

    from triage.jobs.dead_letters import count_by_stage, list_dead_letters
    from triage.runtime import open_stack

    settings = _settings(state_dir)
    with open_stack(settings, settings.state_dir / "services") as stack:
        letters = list_dead_letters(stack.analytics_dsn, stage=stage, limit=limit)
        counts = count_by_stage(stack.analytics_dsn)
    if json_out:
        for letter in letters:
            sys.stdout.write(json.dumps(letter, default=str) + "\n")
        return
    table = Table("failed at", "stage", "topic", "key", "reason")
    for letter in letters:
        table.add_row(
            str(letter["failed_at"]),
            letter["stage"],
            letter["topic"],
            letter["key"] or "",
            letter["reason"][:200],
        )
    Console().print(table)
    console.print("per stage: " + (", ".join(f"{s} {n}" for s, n in counts.items()) or "none"))


@dead_letters_app.command("replay")
def dead_letters_replay(
    stage: Annotated[str | None, typer.Option(help="Only dead letters of this stage.")] = None,
    ids: Annotated[
        list[int] | None, typer.Option("--id", help="Only this dead letter; repeat for several.")
    ] = None,
    state_dir: StateDir = None,
) -> None:
    """Send dead-lettered Kafka records through the flow again, after a fix: each is read
    back from its topic and produced to it again (TRIAGE_KAFKA__*). Done once per record."""
    from triage.jobs.dead_letters import replay_kafka_dead_letters
    from triage.runtime import open_stack

    settings = _settings(state_dir)
    config = {
        **settings.kafka.client_config(),
        "bootstrap.servers": ",".join(settings.kafka.brokers),
    }
    with open_stack(settings, settings.state_dir / "services") as stack:
        try:
            result = replay_kafka_dead_letters(
                stack.analytics_dsn, config, stage=stage, ids=ids or None
            )
        except RuntimeError as exc:
            raise _fail(str(exc)) from exc
    console.print(f"replayed {len(result.replayed)} record(s)")
    if result.gone:
        console.print(
            f"no longer in Kafka (compacted or expired): dead letters {result.gone}; "
            "their payload is in `triage dead-letters list --json`"
        )


@dead_letters_app.command("publish")
def dead_letters_publish(state_dir: StateDir = None) -> None:
    """Relay the rows the stores refused (write_analytics, write_search, write_live) to the
    dead-letter topic (TRIAGE_KAFKA__DEAD_LETTER_TOPIC); the flow publishes its own. Each
    row once acknowledged; the job dead-letters-publish runs it every minute."""
    from triage.jobs.dead_letters import publish_store_refusals
    from triage.runtime import open_stack

    settings = _settings(state_dir)
    topic = settings.dead_letter_topic
    if topic is None:
        raise _fail(
            "dead letters do not go to Kafka: set TRIAGE_CDC__MODE=kafka (or "
            "TRIAGE_KAFKA__PUBLISH_ALERTS=true) and TRIAGE_KAFKA__DEAD_LETTER_TOPIC"
        )
    config = {
        **settings.kafka.client_config(),
        "bootstrap.servers": ",".join(settings.kafka.brokers),
    }
    with open_stack(settings, settings.state_dir / "services") as stack:
        try:
            count = publish_store_refusals(stack.analytics_dsn, config, topic)
        except RuntimeError as exc:
            raise _fail(str(exc)) from exc
    console.print(f"published {count} refused row(s) to {topic}")


routing_app = typer.Typer(help="The router's outcome input: teach it handling times.")
app.add_typer(routing_app, name="routing")


@routing_app.command("warm-start")
def routing_warm_start(
    outcomes: Annotated[
        Path,
        typer.Option(
            help="CSV of finished work: agent_id, work_type, handling_seconds[, queue,"
            " completed_at, wait_seconds, quality].",
        ),
    ],
    queue: Annotated[
        str | None, typer.Option(help="Queue of the rows that have no queue column.")
    ] = None,
    state_dir: StateDir = None,
) -> None:
    """Teach the router a history of handling times, through the outcome input (CDC).

    The rows go to the helpdesk database's work_outcomes table as history (no ticket);
    the pipeline learns them in order, now if it runs, else when it starts.
    """
    from rich.progress import Progress

    from triage.jobs.warm_start import OutcomesFileError, read_history, write_history
    from triage.runtime import open_stack

    settings = _settings(state_dir)
    try:
        rows = read_history(outcomes, default_queue=queue)
    except OutcomesFileError as exc:
        raise _fail(str(exc), 2) from exc
    with (
        open_stack(settings, settings.state_dir / "services") as stack,
        Progress(console=console, transient=True) as progress,
    ):
        task = progress.add_task("adding outcomes", total=len(rows))
        written = write_history(
            stack.source_dsn, rows, progress=lambda n: progress.advance(task, n)
        )
    queues = sorted({r.queue for r in rows})
    console.print(
        f"added {written} outcome(s) for {len({r.agent_id for r in rows})} agent(s) in"
        f" queue(s) {', '.join(queues)}; the pipeline learns them through CDC"
    )


simulate_app = typer.Typer(help="Replay your own history through the router, offline.")
app.add_typer(simulate_app, name="simulate")


@simulate_app.command("routing")
def simulate_routing(
    calls: Annotated[
        Path,
        typer.Option(help="CSV: arrival, type, agent, handling_seconds[, queue], one call a row."),
    ],
    capacity: Annotated[int, typer.Option(min=1, help="Calls an agent handles at once.")] = 1,
    seed: Annotated[int, typer.Option(help="Seed of the handling-time draws.")] = 7,
    policy: Annotated[
        list[str] | None,
        typer.Option(help="least_loaded, longest_idle, learned, affinity or oracle (repeatable)."),
    ] = None,
    warm_start: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=0.99,
            help="Share of the earliest calls the learning policies learn first as history;"
            " all policies are compared on the rest.",
        ),
    ] = 0.0,
    json_out: Annotated[bool, typer.Option("--json", help="Print only the JSON document.")] = False,
) -> None:
    """Replay real calls under each routing policy; mean handling time, waits, gains."""
    from rich.progress import Progress

    from evaluation.simulation import POLICIES, CallsFileError, render_table, simulate_file

    unknown = [p for p in policy or [] if p not in POLICIES]
    if unknown:
        raise _fail(f"unknown policy {unknown[0]!r}; choose from {', '.join(POLICIES)}", 2)
    options = {
        "capacity": capacity,
        "seed": seed,
        "policies": tuple(policy or POLICIES),
        "warm_start": warm_start,
    }
    try:
        if json_out:
            result = simulate_file(calls, **options)
        else:
            with Progress(console=console, transient=True) as progress:
                result = simulate_file(calls, progress=progress, **options)
    except (CallsFileError, ValueError) as exc:
        raise _fail(str(exc), 2) from exc
    if json_out:
        sys.stdout.write(json.dumps(result) + "\n")
    else:
        Console().print(render_table(result))
