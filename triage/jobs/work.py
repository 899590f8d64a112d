"""The batch jobs' work, done in the child process the scheduler starts (``triage jobs exec``).

:mod:`triage.jobs.scheduler` decides when a job is due, runs it as a child and records the run;
this module is what the child does: the forecast, warehouse compaction and publication,
the relay of the stores' refusals to the dead-letter topic, and the daily summary.
"""

from __future__ import annotations

import os
import threading
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg

if TYPE_CHECKING:
    from triage.settings import AppSettings
    from triage.stack import Stack


def exec_job(name: str, settings: AppSettings, stack: Stack, *, day: date | None = None) -> str:
    """Do the work of job ``name`` in this process; returns a one-line summary.

    ``day`` is the UTC day of ``daily-summary`` (default: yesterday).

    Raises:
        KeyError: When there is no such job.
    """
    if name == "forecast":
        from triage.jobs.forecast_job import run_forecast

        result = run_forecast(stack.analytics_dsn)
        series = ", ".join(sorted(result["series"])) or "none with history"
        now = datetime.now(UTC)
        pruned_forecasts, pruned_runs = prune_history(
            stack.analytics_dsn,
            forecasts_before=now - settings.jobs.forecasts_keep,
            job_runs_before=now - settings.jobs.job_runs_keep,
        )
        return (
            f"{result['rows']} forecast rows; series: {series}; pruned {pruned_forecasts} "
            f"old forecast rows and {pruned_runs} old job runs"
        )
    if name == "warehouse-compact":
        return compact_warehouse(
            settings.warehouse.path or settings.state_dir / "warehouse",
            history_keep=settings.jobs.warehouse_history_keep,
        )
    if name == "warehouse-publish":
        return publish_warehouse(settings.warehouse.path or settings.state_dir / "warehouse")
    if name == "dead-letters-publish":
        from triage.jobs.dead_letters import publish_store_refusals

        topic = settings.dead_letter_topic
        if topic is None:
            return "dead letters do not go to Kafka: nothing to publish"
        config = {
            **settings.kafka.client_config(),
            "bootstrap.servers": ",".join(settings.kafka.brokers),
        }
        count = publish_store_refusals(stack.analytics_dsn, config, topic)
        return f"published {count} refused row(s) to {topic}"
    if name == "daily-summary":
        day = day or datetime.now(UTC).date() - timedelta(days=1)
        path = write_daily_summary(stack.analytics_dsn, settings.state_dir / "reports", day)
        return f"wrote {path}"
    raise KeyError(name)


def prune_history(
    analytics_dsn: str, *, forecasts_before: datetime, job_runs_before: datetime
) -> tuple[int, int]:
    """Delete forecast runs generated and job runs started before the given times.

    Returns:
        Rows deleted from ``analytics.forecasts`` and from ``analytics.job_runs``. Runs
        still in progress (no status yet) are kept whatever their age.
    """
    with psycopg.connect(analytics_dsn, autocommit=True) as conn:
        forecasts = conn.execute(
            "DELETE FROM analytics.forecasts WHERE generated_at < %s", (forecasts_before,)
        ).rowcount
        runs = conn.execute(
            "DELETE FROM analytics.job_runs WHERE started_at < %s AND status IS NOT NULL",
            (job_runs_before,),
        ).rowcount
    return max(0, forecasts), max(0, runs)


def partitions_to_compact(root: Path) -> list[tuple[str, str]]:
    """``(table, day)`` of each warehouse partition holding more than one compacted file.

    A partition whose only file is the output of a compaction has nothing to merge, so
    the daily job rewrites only what changed since it last ran, however long the history.
    """
    from sinks.warehouse import TABLES

    found = []
    for table in TABLES:
        for directory in sorted((root / table).glob("date=*")):
            parts = list(directory.glob("part-*.parquet"))
            if len(parts) > 1 or (parts and not parts[0].name.startswith("part-compacted-")):
                found.append((table, directory.name.split("=", 1)[1]))
    return found


def compact_warehouse(root: Path, *, history_keep: timedelta = timedelta(days=7)) -> str:
    """Compact every partition of the warehouse's change log at ``root`` that needs it, then
    publish the current-state Delta tables and compact and vacuum them."""
    if not root.exists():
        return f"no warehouse at {root} yet: nothing to compact"
    from sinks.warehouse import compact
    from sinks.warehouse_delta import optimize_current, publish_current

    partitions = partitions_to_compact(root)
    removed = 0
    for table, day in partitions:
        result = compact(root, table, day)
        removed += result.rows_before - result.rows_after
    publish_current(root)
    optimized = "; ".join(optimize_current(root, keep=history_keep)) or "no current tables"
    return (
        f"compacted {len(partitions)} partition(s) under {root}; {removed} duplicate row(s); "
        f"current tables: {optimized}"
    )


def publish_warehouse(root: Path) -> str:
    """Merge the change log's new rows into the current-state Delta tables."""
    if not root.exists():
        return f"no warehouse at {root} yet: nothing to publish"
    from sinks.warehouse_delta import publish_current

    parts = [
        f"{r.table} +{r.rows_inserted} ~{r.rows_updated} (v{r.delta_version})"
        for r in publish_current(root)
        if r.delta_version is not None
    ]
    return "published " + (", ".join(parts) or "nothing yet")


def write_daily_summary(analytics_dsn: str, reports_dir: Path, day: date) -> Path:
    """Write the Markdown summary of UTC ``day`` to ``reports_dir/summary-YYYY-MM-DD.md``.

    The file appears complete or not at all (written aside, then renamed), so a reader or
    a rerun never sees half a report.
    """
    from api.reports import daily_stats
    from models.summary import render_daily_summary

    with psycopg.connect(analytics_dsn, connect_timeout=10) as conn:
        text = render_daily_summary(daily_stats(conn, day))
    reports_dir.mkdir(parents=True, exist_ok=True)
    path = reports_dir / f"summary-{day.isoformat()}.md"
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temp.write_text(text, encoding="utf-8")
    os.replace(temp, path)
    return path


def exit_with_parent(poll_seconds: float = 1.0) -> None:
    """Exit this process as soon as its parent is gone.

    A job whose pipeline was killed would otherwise run on unrecorded and without its
    lock, next to the run the restarted pipeline starts.
    """
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_seconds)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()
