"""When each batch job is due, from its recorded runs and the time (pure, exact times)."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import pytest

from triage.jobs.scheduler import (
    JobHistory,
    JobRun,
    JobSpec,
    build_jobs,
    due_jobs,
    next_due,
)
from triage.jobs.work import partitions_to_compact
from triage.settings import AppSettings, JobsSettings, WarehouseSettings


def at(day: int, hour: int, minute: int = 0, second: int = 0) -> datetime:
    return datetime(2026, 3, day, hour, minute, second, tzinfo=UTC)


FORECAST = JobSpec("forecast", ("true",), every=timedelta(hours=1))
SUMMARY = JobSpec("daily-summary", ("true",), every=timedelta(days=1), at=timedelta(minutes=10))


def ok(job: str, started: datetime, took: timedelta = timedelta(seconds=20)) -> JobRun:
    return JobRun(job, started, started + took, "ok")


def failed(job: str, started: datetime, took: timedelta = timedelta(seconds=20)) -> JobRun:
    return JobRun(job, started, started + took, "failed", "exit code 1")


def test_a_job_never_run_is_due_at_once() -> None:
    now = at(2, 15, 7)
    assert next_due(FORECAST, JobHistory(), now) == now
    assert due_jobs([FORECAST], {}, now) == [FORECAST]


def test_an_interval_job_is_not_due_before_its_interval_and_due_after() -> None:
    history = JobHistory(last_ok=ok("forecast", at(2, 10)), last_finished=ok("forecast", at(2, 10)))
    assert next_due(FORECAST, history, at(2, 10, 30)) == at(2, 11)
    assert due_jobs([FORECAST], {"forecast": history}, at(2, 10, 59, 59)) == []
    assert due_jobs([FORECAST], {"forecast": history}, at(2, 11)) == [FORECAST]
    assert due_jobs([FORECAST], {"forecast": history}, at(2, 13)) == [FORECAST]


def test_a_daily_job_is_due_at_its_time_of_day() -> None:
    run = ok("daily-summary", at(2, 0, 10, 4))
    history = JobHistory(last_ok=run, last_finished=run)
    assert next_due(SUMMARY, history, at(2, 12)) == at(3, 0, 10)
    assert due_jobs([SUMMARY], {"daily-summary": history}, at(3, 0, 9, 59)) == []
    assert due_jobs([SUMMARY], {"daily-summary": history}, at(3, 0, 10)) == [SUMMARY]


def test_a_daily_job_catches_up_a_missed_slot_once() -> None:
    # Never run, started mid-afternoon: today's 00:10 slot is caught up at once.
    assert next_due(SUMMARY, JobHistory(), at(2, 15)) == at(2, 0, 10)
    # The pipeline was down for two days: one run now, not one per missed day.
    run = ok("daily-summary", at(2, 0, 10))
    missed = JobHistory(last_ok=run, last_finished=run)
    assert next_due(SUMMARY, missed, at(4, 15)) == at(3, 0, 10)
    late = ok("daily-summary", at(4, 15))
    assert next_due(SUMMARY, JobHistory(last_ok=late, last_finished=late), at(4, 15, 1)) == at(
        5, 0, 10
    )


def test_a_manual_run_before_the_slot_does_not_count_for_the_slot() -> None:
    # At 00:05 the previous day's slot (yesterday 00:10) is the one that run belonged to.
    early = ok("daily-summary", at(3, 0, 5))
    assert next_due(SUMMARY, JobHistory(last_ok=early, last_finished=early), at(3, 0, 6)) == at(
        3, 0, 10
    )


def test_clock_slots_repeat_within_the_day_for_shorter_intervals() -> None:
    spec = JobSpec("warehouse-compact", ("true",), every=timedelta(hours=6), at=timedelta(hours=1))
    run = ok("warehouse-compact", at(2, 7, 0, 30))
    assert next_due(spec, JobHistory(last_ok=run, last_finished=run), at(2, 8)) == at(2, 13)
    assert spec.describe() == "every 6h from 01:00 UTC"
    assert SUMMARY.describe() == "daily at 00:10 UTC"
    assert FORECAST.describe() == "every 1h"


def test_a_failed_run_is_retried_after_a_backoff_not_at_once() -> None:
    last_ok = ok("forecast", at(2, 10))
    fail = failed("forecast", at(2, 11), took=timedelta(minutes=1))  # finished 11:01
    history = JobHistory(last_ok=last_ok, last_finished=fail, failures=1)
    assert next_due(FORECAST, history, at(2, 11, 2)) == at(2, 11, 6)
    assert due_jobs([FORECAST], {"forecast": history}, at(2, 11, 2)) == []
    assert due_jobs([FORECAST], {"forecast": history}, at(2, 11, 6)) == [FORECAST]


def test_the_backoff_doubles_per_failure_and_is_capped_at_the_interval() -> None:
    fail = failed("forecast", at(2, 11), took=timedelta(0))
    waits = [
        next_due(FORECAST, JobHistory(last_finished=fail, failures=n), at(2, 11)) - at(2, 11)  # type: ignore[operator]
        for n in (1, 2, 3, 4, 5, 50)
    ]
    minutes = [w / timedelta(minutes=1) for w in waits]
    assert minutes == [5, 10, 20, 40, 60, 60]


def test_a_timed_out_daily_run_does_not_rerun_before_the_backoff() -> None:
    last_ok = ok("daily-summary", at(1, 0, 10))
    timeout = JobRun("daily-summary", at(2, 0, 10), at(2, 0, 20), "timeout", "killed")
    history = JobHistory(last_ok=last_ok, last_finished=timeout, failures=1)
    assert next_due(SUMMARY, history, at(2, 0, 21)) == at(2, 0, 25)


def test_disabled_jobs_are_never_due() -> None:
    off = JobSpec("forecast", ("true",), every=timedelta(hours=1), enabled=False)
    assert next_due(off, JobHistory(), at(2, 10)) is None
    assert due_jobs([off, SUMMARY], {}, at(2, 10)) == [SUMMARY]


def test_due_jobs_run_the_longest_overdue_first() -> None:
    run = ok("forecast", at(2, 8))
    histories = {"forecast": JobHistory(last_ok=run, last_finished=run)}
    assert due_jobs([SUMMARY, FORECAST], histories, at(2, 10)) == [SUMMARY, FORECAST]
    assert due_jobs([FORECAST, SUMMARY], histories, at(2, 10)) == [SUMMARY, FORECAST]


def test_jobs_follow_their_settings() -> None:
    settings = AppSettings(
        jobs=JobsSettings(
            forecast_every=timedelta(hours=2),
            daily_summary_at=time(0, 20),
            retry_after=timedelta(minutes=1),
        )
    )
    jobs = {spec.name: spec for spec in build_jobs(settings)}
    assert list(jobs) == [
        "forecast",
        "warehouse-compact",
        "warehouse-publish",
        "dead-letters-publish",
        "daily-summary",
    ]
    assert jobs["forecast"].every == timedelta(hours=2) and jobs["forecast"].at is None
    assert jobs["daily-summary"].at == timedelta(minutes=20)
    assert jobs["warehouse-compact"].describe() == "daily at 01:00 UTC"
    # The dead-letter relay only where dead letters go to Kafka (not the embedded default).
    relay = jobs.pop("dead-letters-publish")
    assert not relay.enabled and "Kafka" in relay.note
    assert all(spec.enabled and spec.retry_after == timedelta(minutes=1) for spec in jobs.values())
    kafka = build_jobs(
        settings.model_copy(update={"cdc": settings.cdc.model_copy(update={"mode": "kafka"})})
    )
    assert [s.enabled for s in kafka if s.name == "dead-letters-publish"] == [True]
    assert jobs["forecast"].command[-3:] == ("jobs", "exec", "forecast")


def test_disabled_jobs_say_why() -> None:
    no_warehouse = build_jobs(AppSettings(warehouse=WarehouseSettings(enabled=False)))
    assert [s.name for s in no_warehouse if not s.enabled] == [
        "warehouse-compact",
        "warehouse-publish",
        "dead-letters-publish",
    ]
    assert "WAREHOUSE" in no_warehouse[1].note
    skipped = build_jobs(AppSettings(jobs=JobsSettings(disabled=("forecast",))))
    assert [s.name for s in skipped if not s.enabled] == ["forecast", "dead-letters-publish"]
    off = build_jobs(AppSettings(jobs=JobsSettings(enabled=False)))
    assert not any(s.enabled for s in off)
    assert due_jobs(off, {}, at(2, 10)) == []


def test_job_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRIAGE_JOBS__ENABLED", "false")
    monkeypatch.setenv("TRIAGE_JOBS__FORECAST_EVERY", "PT30M")
    monkeypatch.setenv("TRIAGE_JOBS__DAILY_SUMMARY_AT", "00:15")
    monkeypatch.setenv("TRIAGE_JOBS__DISABLED", '["warehouse-compact"]')
    jobs = AppSettings().jobs
    assert not jobs.enabled
    assert jobs.forecast_every == timedelta(minutes=30)
    assert jobs.daily_summary_at == time(0, 15)
    assert jobs.disabled == ("warehouse-compact",)


@pytest.mark.parametrize(
    ("field", "value"),
    [("forecast_every", timedelta(0)), ("daily_summary_at", "00:10+02:00"), ("disabled", ["x"])],
)
def test_invalid_job_settings_are_refused(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        JobsSettings.model_validate({field: value})


def test_only_partitions_with_new_files_are_compacted(tmp_path: Path) -> None:
    def touch(relative: str) -> None:
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")

    touch("ticket_facts/date=2026-03-01/part-compacted-aa.parquet")  # already compacted
    touch("ticket_facts/date=2026-03-02/part-compacted-bb.parquet")
    touch("ticket_facts/date=2026-03-02/part-0-cc.parquet")  # a part written since
    touch("ticket_facts/date=2026-03-03/part-0-dd.parquet")  # never compacted
    touch("ticket_facts/date=2026-03-04/.part-0-ee.parquet.1234.tmp")  # a write in progress
    assert partitions_to_compact(tmp_path) == [
        ("ticket_facts", "2026-03-02"),
        ("ticket_facts", "2026-03-03"),
    ]
