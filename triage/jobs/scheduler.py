"""Batch jobs beside the dataflow: the forecast, warehouse compaction and the daily summary.

``triage pipeline`` starts a :class:`JobScheduler` thread next to the dataflow. Every run is
a child process (``python -m triage jobs exec <job>``), so a CPU-heavy forecast does not
hold the dataflow's GIL, and a job that crashes or hangs (killed at its timeout) costs only
that run: it is logged, recorded and retried later, never raised into the pipeline.

Runs are recorded in ``analytics.job_runs`` and what is due is decided from those rows by
the pure :func:`next_due`, so restarting the pipeline does not rerun a job that just ran.
A PostgreSQL advisory lock per job keeps two pipelines (or a pipeline and ``triage jobs
run``) from running the same job at once. Jobs run one at a time, so batch work takes at
most one core beside the dataflow.

Kept as one module: when a job is due, its child process, its lock and its
recorded runs are one loop; the jobs' work is in work.py.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from datetime import time as TimeOfDay
from typing import TYPE_CHECKING, Any, Literal, get_args

import psycopg

from triage.settings import JobName

if TYPE_CHECKING:
    from triage.settings import AppSettings
    from triage.stack import Stack

log = logging.getLogger(__name__)

RunStatus = Literal["ok", "failed", "timeout"]
JOB_NAMES: tuple[str, ...] = get_args(JobName)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DETAIL_CHARS = 2000
# Advisory locks use the two-key form: this namespace plus a hash of the job name.
_LOCK_NAMESPACE = "triage.jobs"
# Child output is read in slices this long, so a stop request is noticed promptly.
_POLL_SECONDS = 0.5
_KILL_GRACE_SECONDS = 5.0


@dataclass(frozen=True)
class JobSpec:
    """A scheduled job: what to run and when.

    Attributes:
        name: The job's name, the key of its rows in ``analytics.job_runs``.
        command: The child process's argv.
        every: Time between runs.
        at: Anchors the runs to clock times: the job is due at ``UTC midnight + at + k *
            every`` (``every`` of a day and ``at`` of 00:10 is daily at 00:10 UTC). None:
            due ``every`` after the start of the last successful run.
        timeout: The child is killed after this long and the run recorded as ``timeout``.
        retry_after: Wait after a failed run, doubled for each further consecutive
            failure and never longer than ``every``.
        enabled: Whether the scheduler runs it (``triage jobs run`` runs it regardless).
        note: Why it is disabled.
    """

    name: str
    command: tuple[str, ...]
    every: timedelta
    at: timedelta | None = None
    timeout: timedelta = timedelta(minutes=30)
    retry_after: timedelta = timedelta(minutes=5)
    enabled: bool = True
    note: str = ""

    def slot(self, moment: datetime) -> datetime:
        """The latest clock slot at or before ``moment`` (see ``at``)."""
        anchor = _EPOCH + (self.at or timedelta(0))
        return anchor + ((moment - anchor) // self.every) * self.every

    def describe(self) -> str:
        """The schedule in words, e.g. ``every 1h`` or ``daily at 00:10 UTC``."""
        if self.at is None:
            return f"every {_duration(self.every)}"
        clock = (datetime.min + self.at).strftime("%H:%M")
        if self.every == timedelta(days=1):
            return f"daily at {clock} UTC"
        return f"every {_duration(self.every)} from {clock} UTC"


@dataclass(frozen=True)
class JobRun:
    """One row of ``analytics.job_runs``; ``status`` is None while the run is going on."""

    job: str
    started_at: datetime
    finished_at: datetime | None = None
    status: RunStatus | None = None
    detail: str = ""


@dataclass(frozen=True)
class JobHistory:
    """What the recorded runs of one job say about when it is due.

    Attributes:
        last_ok: The latest successful run.
        last_finished: The latest finished run, whatever its status.
        failures: Failed or timed-out runs since ``last_ok`` (since ever without one).
    """

    last_ok: JobRun | None = None
    last_finished: JobRun | None = None
    failures: int = 0


def next_due(spec: JobSpec, history: JobHistory, now: datetime) -> datetime | None:
    """When ``spec`` is next due given its recorded runs; None when it is disabled.

    A time at or before ``now`` means due now. A job never run is due at once (a clock
    job at its latest slot, so a slot missed while nothing ran is caught up). After a
    success it is due ``every`` after that run started, or at the next slot after it.
    After failures it is not due before ``retry_after`` from the end of the last one,
    doubled for each further consecutive failure and capped at ``every``, so a broken
    job neither hammers the store nor waits longer than its normal interval.

    Example:
        >>> spec = JobSpec("forecast", ("true",), every=timedelta(hours=1))
        >>> ok = JobRun("forecast", datetime(2026, 3, 2, 10, tzinfo=UTC), status="ok")
        >>> next_due(spec, JobHistory(last_ok=ok), datetime(2026, 3, 2, 10, 30, tzinfo=UTC))
        datetime.datetime(2026, 3, 2, 11, 0, tzinfo=datetime.timezone.utc)
    """
    if not spec.enabled:
        return None
    ok = history.last_ok
    if ok is None:
        due = spec.slot(now) if spec.at is not None else now
    elif spec.at is not None:
        due = spec.slot(ok.started_at) + spec.every
    else:
        due = ok.started_at + spec.every
    failed = history.last_finished
    if history.failures > 0 and failed is not None and failed.finished_at is not None:
        backoff = min(spec.retry_after * 2 ** min(history.failures - 1, 16), spec.every)
        due = max(due, failed.finished_at + backoff)
    return due


def due_jobs(
    jobs: Sequence[JobSpec], histories: Mapping[str, JobHistory], now: datetime
) -> list[JobSpec]:
    """The enabled jobs due at ``now``, the longest overdue first."""
    due: list[tuple[datetime, JobSpec]] = []
    for spec in jobs:
        when = next_due(spec, histories.get(spec.name, JobHistory()), now)
        if when is not None and when <= now:
            due.append((when, spec))
    return [spec for _, spec in sorted(due, key=lambda item: item[0])]


def build_jobs(settings: AppSettings) -> list[JobSpec]:
    """The jobs as configured by ``settings.jobs`` (disabled ones say why)."""
    cfg = settings.jobs
    specs = [
        JobSpec(
            "forecast",
            _exec_command("forecast"),
            every=cfg.forecast_every,
            timeout=cfg.forecast_timeout,
        ),
        JobSpec(
            "warehouse-compact",
            _exec_command("warehouse-compact"),
            every=cfg.warehouse_compact_every,
            at=_since_midnight(cfg.warehouse_compact_at),
            timeout=cfg.warehouse_compact_timeout,
        ),
        JobSpec(
            "warehouse-publish",
            _exec_command("warehouse-publish"),
            every=cfg.warehouse_publish_every,
            timeout=cfg.warehouse_publish_timeout,
        ),
        JobSpec(
            "dead-letters-publish",
            _exec_command("dead-letters-publish"),
            every=cfg.dead_letters_publish_every,
            timeout=cfg.dead_letters_publish_timeout,
        ),
        JobSpec(
            "daily-summary",
            _exec_command("daily-summary"),
            every=timedelta(days=1),
            at=_since_midnight(cfg.daily_summary_at),
            timeout=cfg.daily_summary_timeout,
        ),
    ]
    out = []
    for spec in specs:
        spec = replace(spec, retry_after=cfg.retry_after)
        if not cfg.enabled:
            spec = replace(spec, enabled=False, note="TRIAGE_JOBS__ENABLED is false")
        elif spec.name in cfg.disabled:
            spec = replace(spec, enabled=False, note="listed in TRIAGE_JOBS__DISABLED")
        elif spec.name.startswith("warehouse-") and not settings.warehouse.enabled:
            spec = replace(spec, enabled=False, note="TRIAGE_WAREHOUSE__ENABLED is false")
        elif spec.name == "dead-letters-publish" and settings.dead_letter_topic is None:
            spec = replace(spec, enabled=False, note="dead letters do not go to Kafka")
        out.append(spec)
    return out


def job_env(settings: AppSettings, stack: Stack) -> dict[str, str]:
    """Environment of a job's child: this process's, pointed at the same stores and paths."""
    env = {**os.environ, **stack.env(), "TRIAGE_STATE_DIR": str(settings.state_dir.resolve())}
    if settings.warehouse.path is not None:
        env["TRIAGE_WAREHOUSE__PATH"] = str(settings.warehouse.path.resolve())
    env.setdefault("PYTHONFAULTHANDLER", "1")
    return env


@dataclass(frozen=True)
class JobOutcome:
    """How one run ended (as recorded)."""

    job: str
    status: RunStatus
    started_at: datetime
    finished_at: datetime
    detail: str


class JobScheduler:
    """Runs due jobs one at a time in child processes, from a daemon thread.

    Every ``check_every`` the thread reads the recorded runs, and runs each job that
    :func:`next_due` says is due (under that job's advisory lock, re-checking that it is
    still due once the lock is held). Errors of the store or of a job are logged and the
    loop carries on; :meth:`stop` ends it and kills a job still running.
    """

    def __init__(
        self,
        jobs: Sequence[JobSpec],
        *,
        analytics_dsn: str,
        env: Mapping[str, str] | None = None,
        check_every: timedelta = timedelta(seconds=30),
        start_delay: timedelta = timedelta(0),
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.jobs = list(jobs)
        self._dsn = analytics_dsn
        self._env = dict(os.environ if env is None else env)
        self._check_every = check_every
        self._start_delay = start_delay
        self._clock = clock or (lambda: datetime.now(UTC))
        self._runner = f"{socket.gethostname()}:{os.getpid()}"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def from_settings(cls, settings: AppSettings, stack: Stack) -> JobScheduler:
        return cls(
            build_jobs(settings),
            analytics_dsn=stack.analytics_dsn,
            env=job_env(settings, stack),
            check_every=settings.jobs.check_every,
            start_delay=settings.jobs.start_delay,
        )

    def job(self, name: str) -> JobSpec:
        """The job called ``name``.

        Raises:
            KeyError: When there is no such job.
        """
        for spec in self.jobs:
            if spec.name == name:
                return spec
        raise KeyError(name)

    def start(self) -> JobScheduler:
        self._thread = threading.Thread(target=self._loop, name="job-scheduler", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 15.0) -> None:
        """End the loop; a job still running is killed and recorded as failed."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                log.warning("job scheduler did not stop within %.0f s", timeout)

    def tick(self) -> list[JobOutcome]:
        """Run every job due now, one after the other; returns the runs made."""
        with self._connect() as conn:
            histories = {spec.name: load_history(conn, spec.name) for spec in self.jobs}
        outcomes = []
        for spec in due_jobs(self.jobs, histories, self._clock()):
            if self._stop.is_set():
                break
            outcome = self.run(spec, only_if_due=True)
            if outcome is not None:
                outcomes.append(outcome)
        return outcomes

    def run(self, spec: JobSpec, *, only_if_due: bool = False) -> JobOutcome | None:
        """Run ``spec`` now in a child process and record the run.

        Returns None when it did not run: another process holds the job's lock, or, with
        ``only_if_due``, a run recorded meanwhile means it is no longer due. A job that
        fails or times out is recorded as such and returned, not raised.
        """
        with self._connect() as conn:
            locked = conn.execute(
                "SELECT pg_try_advisory_lock(hashtext(%s), hashtext(%s))",
                (_LOCK_NAMESPACE, spec.name),
            ).fetchone()
            if not (locked and locked[0]):
                log.info("job %s is running elsewhere; not started here", spec.name)
                return None
            try:
                return self._run_locked(conn, spec, only_if_due=only_if_due)
            finally:
                with contextlib.suppress(psycopg.Error):
                    conn.execute(
                        "SELECT pg_advisory_unlock(hashtext(%s), hashtext(%s))",
                        (_LOCK_NAMESPACE, spec.name),
                    )

    def _run_locked(
        self, conn: psycopg.Connection[Any], spec: JobSpec, *, only_if_due: bool
    ) -> JobOutcome | None:
        # With the lock held no one else runs this job: unfinished rows are left over by a
        # runner that died (the pipeline was killed mid-run).
        conn.execute(
            "UPDATE analytics.job_runs SET finished_at = %s, status = 'failed',"
            " detail = 'interrupted: its runner stopped before the run finished'"
            " WHERE job = %s AND finished_at IS NULL",
            (self._clock(), spec.name),
        )
        if only_if_due:
            now = self._clock()
            when = next_due(spec, load_history(conn, spec.name), now)
            if when is None or when > now:
                return None
        started = self._clock()
        row = conn.execute(
            "INSERT INTO analytics.job_runs (job, started_at, runner) VALUES (%s, %s, %s)"
            " RETURNING id",
            (spec.name, started, self._runner),
        ).fetchone()
        assert row is not None
        log.info("job %s: started", spec.name)
        status: RunStatus
        try:
            status, detail = _execute(spec, self._env, self._stop)
        except BaseException:
            self._record(conn, row[0], "failed", "interrupted: the command was interrupted")
            raise
        finished = self._record(conn, row[0], status, detail)
        if status == "ok":
            log.info("job %s: ok in %s: %s", spec.name, finished - started, detail)
        else:
            log.warning("job %s: %s after %s: %s", spec.name, status, finished - started, detail)
        return JobOutcome(spec.name, status, started, finished, detail)

    def _record(
        self, conn: psycopg.Connection[Any], run_id: int, status: RunStatus, detail: str
    ) -> datetime:
        finished = self._clock()
        params = (finished, status, detail, run_id)
        update = "UPDATE analytics.job_runs SET finished_at = %s, status = %s, detail = %s"
        update += " WHERE id = %s"
        try:
            conn.execute(update, params)
        except psycopg.OperationalError:
            # The connection held through a long run can drop; the result still counts.
            with self._connect() as fresh:
                fresh.execute(update, params)
        return finished

    def _connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(
            self._dsn, autocommit=True, connect_timeout=10, application_name="triage-jobs"
        )

    def _loop(self) -> None:
        if self._stop.wait(self._start_delay.total_seconds()):
            return
        while not self._stop.is_set():
            try:
                self.tick()
            except psycopg.errors.UndefinedTable:
                log.error("analytics.job_runs is missing: run `triage migrate`; no job runs")
            except psycopg.OperationalError as exc:
                log.warning("job scheduler: analytics store unavailable: %s", exc)
            except Exception:
                log.exception("job scheduler: check failed; trying again")
            self._stop.wait(self._check_every.total_seconds())


_RUN = "SELECT job, started_at, finished_at, status, detail FROM analytics.job_runs WHERE job = %s"
_LAST_OK = _RUN + " AND status = 'ok' ORDER BY started_at DESC LIMIT 1"
_LAST_FINISHED = _RUN + " AND status IS NOT NULL ORDER BY finished_at DESC LIMIT 1"
_NEWEST = _RUN + " ORDER BY started_at DESC LIMIT 1"


def load_history(conn: psycopg.Connection[Any], job: str) -> JobHistory:
    """What ``analytics.job_runs`` holds about ``job`` (see :class:`JobHistory`)."""
    last_ok = _one_run(conn, _LAST_OK, job)
    row = conn.execute(
        "SELECT count(*) FROM analytics.job_runs WHERE job = %s"
        " AND status IN ('failed', 'timeout') AND started_at > %s",
        (job, last_ok.started_at if last_ok else datetime.min.replace(tzinfo=UTC)),
    ).fetchone()
    return JobHistory(
        last_ok=last_ok,
        last_finished=_one_run(conn, _LAST_FINISHED, job),
        failures=row[0] if row else 0,
    )


def _one_run(conn: psycopg.Connection[Any], query: str, job: str) -> JobRun | None:
    row = conn.execute(query, (job,)).fetchone()
    if row is None:
        return None
    name, started, finished, status, detail = row
    # The session's time zone is the server's; runs are reported in UTC.
    return JobRun(
        name,
        started.astimezone(UTC),
        finished.astimezone(UTC) if finished else None,
        status,
        detail,
    )


@dataclass(frozen=True)
class JobStatus:
    """A line of ``triage jobs list``.

    Attributes:
        spec: The job.
        last: Its newest run (possibly unfinished).
        running: Whether some process holds the job's lock now.
        next_due: When the scheduler runs it next (None: not scheduled).
    """

    spec: JobSpec
    last: JobRun | None
    running: bool
    next_due: datetime | None

    def as_dict(self) -> dict[str, Any]:
        last = self.last
        return {
            "job": self.spec.name,
            "schedule": self.spec.describe(),
            "timeout_s": self.spec.timeout.total_seconds(),
            "enabled": self.spec.enabled,
            "note": self.spec.note,
            "running": self.running,
            "last_started_at": last.started_at.isoformat() if last else None,
            "last_finished_at": last.finished_at.isoformat() if last and last.finished_at else None,
            "last_status": self.last_status,
            "last_detail": last.detail if last else None,
            "next_due": self.next_due.isoformat() if self.next_due else None,
        }

    @property
    def last_status(self) -> str | None:
        """``ok``/``failed``/``timeout``; ``running`` or ``interrupted`` when unfinished."""
        if self.last is None:
            return None
        if self.last.status is not None:
            return self.last.status
        return "running" if self.running else "interrupted"


def job_statuses(
    jobs: Sequence[JobSpec], analytics_dsn: str, *, now: datetime | None = None
) -> list[JobStatus]:
    """Each job with its newest run, whether it runs now, and when it is next due."""
    now = now or datetime.now(UTC)
    out = []
    with psycopg.connect(analytics_dsn, connect_timeout=10) as conn:
        for spec in jobs:
            held = conn.execute(
                "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory'"
                " AND granted AND objsubid = 2"
                " AND classid = (hashtext(%s)::bigint & 4294967295)::oid"
                " AND objid = (hashtext(%s)::bigint & 4294967295)::oid)",
                (_LOCK_NAMESPACE, spec.name),
            ).fetchone()
            out.append(
                JobStatus(
                    spec=spec,
                    last=_one_run(conn, _NEWEST, spec.name),
                    running=bool(held and held[0]),
                    next_due=next_due(spec, load_history(conn, spec.name), now),
                )
            )
    return out


def _exec_command(job: str) -> tuple[str, ...]:
    return (sys.executable, "-m", "triage", "jobs", "exec", job)


def _since_midnight(at: TimeOfDay) -> timedelta:
    return timedelta(hours=at.hour, minutes=at.minute, seconds=at.second)


def _duration(span: timedelta) -> str:
    seconds = int(span.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _tail(text: str) -> str:
    text = text.strip()
    return text if len(text) <= _DETAIL_CHARS else "…" + text[-_DETAIL_CHARS:]


def _execute(spec: JobSpec, env: Mapping[str, str], stop: threading.Event) -> tuple[RunStatus, str]:
    """Run the job's command to its end, its timeout, or ``stop``; status and detail."""
    try:
        proc = subprocess.Popen(
            spec.command,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
            # Its own session: a terminal's Ctrl-C meant for the pipeline does not hit the
            # job halfway, and the whole group can be killed at the timeout.
            start_new_session=True,
        )
    except OSError as exc:
        return "failed", f"could not start {spec.command[0]}: {exc}"
    deadline = time.monotonic() + spec.timeout.total_seconds()
    ended: str | None = None
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                ended = "timeout"
                break
            if stop.is_set():
                ended = "stopped"
                break
            try:
                out, err = proc.communicate(timeout=min(remaining, _POLL_SECONDS))
                break
            except subprocess.TimeoutExpired:
                continue
    except BaseException:
        _kill_group(proc)
        raise
    if ended is not None:
        _kill_group(proc)
        out, err = "", ""
        with contextlib.suppress(subprocess.TimeoutExpired):
            out, err = proc.communicate(timeout=_KILL_GRACE_SECONDS)
        if ended == "timeout":
            return "timeout", _tail(f"killed after {spec.timeout}; {err or out}")
        return "failed", _tail(f"interrupted: the scheduler stopped; {err or out}")
    if proc.returncode != 0:
        return "failed", _tail(f"exit code {proc.returncode}: {err or out}")
    if err.strip():
        log.debug("job %s stderr: %s", spec.name, _tail(err))
    return "ok", _tail(out) or "done"


def _kill_group(proc: subprocess.Popen[str]) -> None:
    """SIGTERM the child's process group, then SIGKILL what is left after a grace period."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if proc.poll() is not None:
            break
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=_KILL_GRACE_SECONDS)
