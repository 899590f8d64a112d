"""The main job: local stack, schema, pipeline, API and workload, then a summary."""

from __future__ import annotations

import json
import logging
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from triage.runtime import ApiServer, PipelineProcess, migrate, open_stack
from triage.settings import AppSettings
from triage.signals import ignore_stop_signals, stop_signals_once
from triage.tools.assignments import AssignmentFollower
from triage.tools.report import dead_letter_count, enrichment_summary, routed_summary, sla_summary

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoOptions:
    tickets: int = 300
    rate: float = 25.0
    seed: int = 7
    customers: int = 200
    agents: int = 24
    serve: bool = False
    fresh: bool = True
    quiet: bool = False
    route_timeout: float = 120.0
    api_port: int | None = None


class DemoError(RuntimeError):
    """The demo could not complete; the message says what to look at."""


def run_demo(
    settings: AppSettings,
    opts: DemoOptions,
    console: Console,
    on_summary: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run the whole embedded system once and return the summary.

    ``on_summary`` sees the summary as soon as it is known, before ``opts.serve`` keeps
    the API (and the pipeline) running until Ctrl-C.
    """
    from evaluation.workload import WorkloadConfig, WorkloadWriter

    state_dir = settings.state_dir / "demo"
    if opts.fresh and state_dir.exists():
        shutil.rmtree(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    say = (lambda *_: None) if opts.quiet else console.print

    started = time.monotonic()
    with stop_signals_once(), open_stack(settings, state_dir / "services") as stack:
        say(f"[bold]stores[/] source={stack.source_dsn} redis={stack.redis_url}")
        migrate(stack)
        cfg = WorkloadConfig(
            seed=opts.seed,
            customers=opts.customers,
            agents=opts.agents,
            tickets=opts.tickets,
            rate=opts.rate,
            # Agents work fast enough that tickets are solved and capacity frees during
            # a short run (simulated seconds per wall second).
            time_compression=600.0,
        )
        writer = WorkloadWriter(stack.source_dsn, cfg)
        writer.seed_reference_data()

        warehouse = settings.warehouse.path or state_dir / "warehouse"
        api_run_settings = open_api_for_demo(settings, console, quiet=opts.quiet)
        # The API first: a port in use fails the demo before any process is started.
        api = ApiServer(api_run_settings, stack, port=opts.api_port).start()
        pipeline = PipelineProcess(
            stack,
            state_dir / "pipeline",
            extra_env={
                "TRIAGE_WAREHOUSE__PATH": str(warehouse),
                # A short run: write Parquet files every two seconds, not every thirty.
                "TRIAGE_PIPELINE__WAREHOUSE_FLUSH": "PT2S",
            },
        )
        try:
            pipeline.start()
            if settings.cdc.mode == "embedded":
                pipeline.wait_ready(settings.source.slot_name, flow_id=settings.pipeline.flow_id)
            else:
                # Kafka: tickets written before the flow runs would count its start-up.
                pipeline.wait_running(timeout=opts.route_timeout)
            follower = AssignmentFollower(
                stack.redis_url, stack.source_dsn, key_prefix=settings.redis.key_prefix
            ).start()
        except BaseException:
            ignore_stop_signals()
            pipeline.stop()
            api.stop()
            raise
        say(
            f"[bold]API[/] {api.base_url}/docs   [bold]dashboard[/] {api.base_url}/dashboard"
            f"   [bold]pipeline log[/] {pipeline.state_dir}"
        )
        client = redis.Redis.from_url(stack.redis_url)
        stop = threading.Event()
        try:
            with _progress(opts.quiet, console) as progress:
                created_task = progress.add_task("tickets created", total=opts.tickets)
                routed_task = progress.add_task("tickets routed", total=opts.tickets)

                def on_progress(p: Any) -> None:
                    progress.update(created_task, completed=p.tickets_created)

                t0 = time.monotonic()
                report = writer.run(stop_event=stop, progress=on_progress)
                created = list(report.created_ticket_ids)
                progress.update(created_task, completed=len(created))
                load_seconds = time.monotonic() - t0
                deadline = time.monotonic() + opts.route_timeout
                summary: dict[str, Any] = {}
                while True:
                    if not pipeline.alive():
                        raise DemoError(f"pipeline exited early:\n{pipeline.log_tail()}")
                    summary = routed_summary(client, settings.redis.key_prefix, created)
                    progress.update(routed_task, completed=summary["tickets_routed"])
                    if summary["tickets_routed"] >= len(created):
                        break
                    if time.monotonic() > deadline:
                        raise DemoError(
                            f"only {summary['tickets_routed']} of {len(created)} tickets were "
                            f"routed within {opts.route_timeout:.0f}s; pipeline log:\n"
                            f"{pipeline.log_tail()}"
                        )
                    time.sleep(0.1)
                # Redis is written first; the analytics store follows within a batch or two.
                _wait_analytics(stack.analytics_dsn, created, timeout=opts.route_timeout)
            result = {
                "tickets_created": len(created),
                **summary,
                "dead_letters": dead_letter_count(stack.analytics_dsn),
                "enrichment": enrichment_summary(stack.analytics_dsn),
                "sla": sla_summary(stack.analytics_dsn),
                "warehouse": str(warehouse),
                "warehouse_tickets": _wait_warehouse(warehouse, created, timeout=30.0),
                "assignments_applied": follower.applied,
                "offered_rate_per_s": opts.rate,
                "load_seconds": round(load_seconds, 2),
                "wall_seconds": round(time.monotonic() - started, 2),
                "api": api.base_url,
            }
            # Once the summary is out, a stop signal ends the serving, not the run: it may
            # come at once (a script that read the summary), before the wait below begins.
            try:
                if on_summary is not None:
                    on_summary(result)
                if opts.serve:
                    say(f"serving {api.base_url} — Ctrl-C to stop")
                    while pipeline.alive():
                        time.sleep(0.5)
            except KeyboardInterrupt:
                pass
            return result
        finally:
            ignore_stop_signals()  # only the shutdown is left: a second signal must not cut it
            stop.set()
            follower.stop()
            api.stop()
            pipeline.stop()


AUTH_OFF_NOTICE = (
    "API keys are off for this local demo: every /v1 read is answered without a key "
    "(set TRIAGE_API__AUTH_REQUIRED=true to require them)."
)


def open_api_for_demo(settings: AppSettings, console: Console, *, quiet: bool) -> AppSettings:
    """The settings the demo serves its API with: keys off, and says so.

    Keys are required by default; the demo is a local tour whose API answers curl and the
    dashboard without a key. An explicit ``TRIAGE_API__AUTH_REQUIRED=true`` is kept.
    """
    if "auth_required" in settings.api.model_fields_set and settings.api.auth_required:
        return settings
    if quiet:  # --json keeps stdout for the summary line
        Console(stderr=True).print(AUTH_OFF_NOTICE, style="yellow", soft_wrap=True)
    else:
        console.print(f"[yellow]{AUTH_OFF_NOTICE}[/]", soft_wrap=True)
    api = settings.api.model_copy(update={"auth_required": False})
    return settings.model_copy(update={"api": api})


def _wait_analytics(dsn: str, ticket_ids: list[int], *, timeout: float) -> int:
    """How many of ``ticket_ids`` have a decision in the analytics store, waiting for them."""
    import psycopg

    deadline = time.monotonic() + timeout
    with psycopg.connect(dsn, autocommit=True) as conn:
        while True:
            row = conn.execute(
                "SELECT count(*) FROM analytics.routing_decisions WHERE ticket_id = ANY(%s)",
                (ticket_ids,),
            ).fetchone()
            done = int(row[0]) if row else 0
            if done >= len(ticket_ids) or time.monotonic() > deadline:
                return done
            time.sleep(0.1)


def _wait_warehouse(root: Path, ticket_ids: list[int], *, timeout: float) -> int:
    """How many of ``ticket_ids`` the warehouse holds, waiting for its next flush."""
    from sinks.warehouse import read_table

    wanted = set(ticket_ids)
    deadline = time.monotonic() + timeout
    found = 0
    while True:
        if (root / "ticket_facts").exists():
            ids = read_table(root, "ticket_facts").get_column("ticket_id").to_list()
            found = len(wanted & set(ids))
        if found >= len(wanted) or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


class _NullProgress:
    def add_task(self, *_: Any, **__: Any) -> int:
        return 0

    def update(self, *_: Any, **__: Any) -> None:
        return None

    def __enter__(self) -> _NullProgress:
        return self

    def __exit__(self, *_: object) -> None:
        return None


def _progress(quiet: bool, console: Console) -> Any:
    if quiet:
        return _NullProgress()
    return Progress(
        TextColumn("{task.description:>16}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )


def render_summary(summary: dict[str, Any], console: Console) -> None:
    table = Table(title="Smart Triage run", show_header=False)
    for key, value in summary.items():
        table.add_row(key, json.dumps(value) if isinstance(value, dict) else str(value))
    console.print(table)


def write_summary(summary: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(summary, indent=2))
