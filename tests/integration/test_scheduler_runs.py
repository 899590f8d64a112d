"""The batch-job scheduler against a real PostgreSQL: runs recorded in analytics.job_runs,
no rerun after a run, the advisory lock, failures and timeouts recorded, the real jobs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from sinks.migrations import apply_migrations
from triage.jobs.scheduler import JobScheduler, JobSpec, job_statuses, load_history
from triage.runtime import SQL_DIR, Stack
from triage.settings import AppSettings

pytestmark = pytest.mark.integration

HOUR = timedelta(hours=1)


@pytest.fixture
def dsn(pg_dsn: str) -> str:
    apply_migrations(pg_dsn, SQL_DIR / "analytics", schema="analytics")
    return pg_dsn


def python(code: str) -> tuple[str, ...]:
    return (sys.executable, "-c", code)


def scheduler(dsn: str, *jobs: JobSpec, **options: Any) -> JobScheduler:
    return JobScheduler(jobs, analytics_dsn=dsn, env=os.environ, **options)


def runs(dsn: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT job, status, detail, started_at <= finished_at FROM analytics.job_runs"
            " ORDER BY id"
        ).fetchall()


def wait_for(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def running(dsn: str) -> bool:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*) FROM analytics.job_runs WHERE status IS NULL")
        return row.fetchone() == (1,)


def test_a_run_is_recorded_and_the_next_tick_does_not_rerun_it(dsn: str) -> None:
    spec = JobSpec("echo", python("print('hello')"), every=HOUR)
    first = scheduler(dsn, spec).tick()
    assert [(o.job, o.status, o.detail) for o in first] == [("echo", "ok", "hello")]
    assert scheduler(dsn, spec).tick() == []  # right after, and after a restart
    assert runs(dsn) == [("echo", "ok", "hello", True)]
    later = scheduler(dsn, spec, clock=lambda: datetime.now(UTC) + HOUR)
    assert [o.status for o in later.tick()] == ["ok"]


def test_the_advisory_lock_keeps_a_second_runner_out(dsn: str) -> None:
    spec = JobSpec("slow", python("import time; time.sleep(1.5)"), every=HOUR)
    first, second = scheduler(dsn, spec), scheduler(dsn, spec)
    done: list[Any] = []
    thread = threading.Thread(target=lambda: done.extend(first.tick()))
    thread.start()
    try:
        wait_for(lambda: running(dsn))
        # Nothing has finished yet, so the job is due for the second runner too: the lock
        # is what keeps it out, for a scheduled and for a manual run.
        assert second.tick() == []
        assert second.run(spec) is None
        [status] = job_statuses([spec], dsn)
        assert status.running and status.last_status == "running"
    finally:
        thread.join()
    assert [o.status for o in done] == ["ok"]
    assert [r[:2] for r in runs(dsn)] == [("slow", "ok")]
    [status] = job_statuses([spec], dsn)
    assert not status.running and status.last_status == "ok"
    assert status.next_due == status.last.started_at + HOUR  # type: ignore[union-attr]


def test_a_failing_job_is_recorded_and_retried_only_after_the_backoff(dsn: str) -> None:
    code = "import sys; sys.stderr.write('boom'); sys.exit(3)"
    spec = JobSpec("broken", python(code), every=HOUR, retry_after=timedelta(minutes=10))
    [outcome] = scheduler(dsn, spec).tick()  # does not raise
    assert outcome.status == "failed" and outcome.detail == "exit code 3: boom"
    assert scheduler(dsn, spec).tick() == []
    later = scheduler(dsn, spec, clock=lambda: datetime.now(UTC) + timedelta(minutes=11))
    assert [o.status for o in later.tick()] == ["failed"]
    with psycopg.connect(dsn) as conn:
        assert load_history(conn, "broken").failures == 2
    missing = JobSpec("missing", ("/nonexistent/command",), every=HOUR)
    [outcome] = scheduler(dsn, missing).tick()
    assert outcome.status == "failed" and "could not start" in outcome.detail


def test_a_job_past_its_timeout_is_killed_and_recorded(dsn: str) -> None:
    spec = JobSpec("hang", python("import time; time.sleep(60)"), every=HOUR, timeout=HOUR / 7200)
    t0 = time.monotonic()
    [outcome] = scheduler(dsn, spec).tick()
    assert outcome.status == "timeout" and outcome.detail.startswith("killed after 0:00:00.5")
    assert time.monotonic() - t0 < 10


def test_the_thread_runs_due_jobs_and_stopping_it_kills_a_running_one(dsn: str) -> None:
    spec = JobSpec("long", python("import time; time.sleep(60)"), every=HOUR)
    jobs = scheduler(dsn, spec, check_every=timedelta(milliseconds=100)).start()
    wait_for(lambda: running(dsn))
    t0 = time.monotonic()
    jobs.stop()
    assert time.monotonic() - t0 < 10
    [(job, status, detail, ordered)] = runs(dsn)
    assert (job, status, ordered) == ("long", "failed", True)
    assert detail.startswith("interrupted: the scheduler stopped")


def test_a_run_left_unfinished_by_a_dead_runner_is_closed_by_the_next(dsn: str) -> None:
    spec = JobSpec("echo", python("print('again')"), every=HOUR)
    with psycopg.connect(dsn) as conn:
        conn.execute(
            "INSERT INTO analytics.job_runs (job, started_at) VALUES ('echo', %s)",
            (datetime.now(UTC) - timedelta(minutes=5),),
        )
    [status] = job_statuses([spec], dsn)
    assert status.last_status == "interrupted"  # unfinished, and nobody holds the lock
    # The next runner closes it as a failure, so the job is retried after the backoff.
    assert scheduler(dsn, spec).tick() == []
    [(job, status_, detail, _)] = runs(dsn)
    assert (job, status_) == ("echo", "failed") and detail.startswith("interrupted")
    later = scheduler(dsn, spec, clock=lambda: datetime.now(UTC) + timedelta(minutes=6))
    assert [o.status for o in later.tick()] == ["ok"]


def test_the_real_jobs_run_as_children_and_the_summary_is_written(dsn: str, tmp_path: Path) -> None:
    from triage.tools.sample_analytics import seed_analytics

    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    yesterday = (today - timedelta(days=1)).date()
    seed_analytics(dsn, days=2, end=today, tickets_per_minute=0.3, incidents=[])
    settings = AppSettings(state_dir=tmp_path / "state")
    stack = Stack(source_dsn=dsn, analytics_dsn=dsn, redis_url="redis://127.0.0.1:9/0")
    jobs = JobScheduler.from_settings(settings, stack)

    summary = jobs.run(jobs.job("daily-summary"))
    assert summary is not None and summary.status == "ok", summary
    report = tmp_path / "state" / "reports" / f"summary-{yesterday.isoformat()}.md"
    assert summary.detail == f"wrote {report}"
    with psycopg.connect(dsn) as conn:
        created = conn.execute(
            "SELECT count(*) FROM analytics.ticket_facts"
            " WHERE created_at >= %s AND created_at < %s",
            (today - timedelta(days=1), today),
        ).fetchone()
    assert created is not None and created[0] > 0
    text = report.read_text(encoding="utf-8")
    assert text.startswith(f"# Helpdesk summary for {yesterday.isoformat()}")
    assert f"{created[0]} tickets created" in text

    forecast = jobs.run(jobs.job("forecast"))
    assert forecast is not None and forecast.status == "ok", forecast
    with psycopg.connect(dsn) as conn:
        written = conn.execute(
            "SELECT count(*) FROM analytics.forecasts WHERE generated_at >= %s",
            (forecast.started_at,),
        ).fetchone()
    assert forecast.detail.startswith(f"{written[0] if written else 0} forecast rows; series:")
    assert written is not None and written[0] >= 168

    compact = jobs.run(jobs.job("warehouse-compact"))
    assert compact is not None and compact.status == "ok"
    assert compact.detail.startswith("no warehouse at")
    publish = jobs.run(jobs.job("warehouse-publish"))
    assert publish is not None and publish.status == "ok"
    assert publish.detail.startswith("no warehouse at")

    # The CLI lists what ran and when each job is next due.
    env = {**os.environ, **stack.env(), "TRIAGE_STATE_DIR": str(tmp_path / "state")}
    listed = subprocess.run(
        [sys.executable, "-m", "triage", "jobs", "list", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    by_job = {j["job"]: j for j in json.loads(listed.stdout)}
    # Dead letters go to Kafka only in Kafka mode: that relay is off here, and never ran.
    relay = by_job.pop("dead-letters-publish")
    assert relay["last_status"] is None and relay["enabled"] is False, relay
    assert {j["last_status"] for j in by_job.values()} == {"ok"}
    next_summary = jobs.job("daily-summary").slot(summary.started_at) + timedelta(days=1)
    assert by_job["daily-summary"]["next_due"] == next_summary.isoformat()
    next_forecast = datetime.fromisoformat(by_job["forecast"]["next_due"])
    assert next_forecast == forecast.started_at + HOUR
    unknown = subprocess.run(
        [sys.executable, "-m", "triage", "jobs", "run", "nope"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert unknown.returncode == 2 and "unknown job" in unknown.stderr


def test_old_forecast_runs_and_job_runs_are_pruned(dsn: str) -> None:
    from triage.jobs.work import prune_history

    now = datetime(2026, 3, 2, tzinfo=UTC)
    with psycopg.connect(dsn, autocommit=True) as conn:
        for generated in (now - timedelta(days=200), now - timedelta(days=10)):
            conn.execute(
                "INSERT INTO analytics.forecasts (generated_at, series, hour, value)"
                " VALUES (%s, 'all', %s, 1.0)",
                (generated, generated + HOUR),
            )
        for started, status in (
            (now - timedelta(days=100), "ok"),
            (now - timedelta(days=100), None),
            (now - timedelta(days=1), "failed"),
        ):
            conn.execute(
                "INSERT INTO analytics.job_runs (job, started_at, finished_at, status)"
                " VALUES ('forecast', %s, %s, %s)",
                (started, None if status is None else started + HOUR, status),
            )
    assert prune_history(
        dsn, forecasts_before=now - timedelta(days=180), job_runs_before=now - timedelta(days=90)
    ) == (1, 1)
    with psycopg.connect(dsn) as conn:
        kept = conn.execute("SELECT generated_at FROM analytics.forecasts").fetchall()
        statuses = conn.execute("SELECT status FROM analytics.job_runs ORDER BY id").fetchall()
    assert kept == [(now - timedelta(days=10),)]
    assert statuses == [(None,), ("failed",)]  # a run in progress is never pruned
