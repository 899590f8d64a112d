-- Batch job bookkeeping (triage/scheduler.py): one row per run of a scheduled job. Idempotent.
--
-- A row is written when a run starts (status and finished_at NULL) and completed when it
-- ends, so a run in progress is visible. The scheduler decides what is due from these rows,
-- which is why restarting the pipeline does not rerun a job that just ran. A row left
-- unfinished by a runner that died is closed as 'failed' by the next runner of that job.

CREATE TABLE IF NOT EXISTS analytics.job_runs (
    id           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job          text        NOT NULL,
    started_at   timestamptz NOT NULL,
    finished_at  timestamptz,
    status       text        CHECK (status IN ('ok', 'failed', 'timeout')),
    detail       text        NOT NULL DEFAULT '',
    -- host:pid of the process that ran it (which pipeline, when several share the store)
    runner       text        NOT NULL DEFAULT '',
    CHECK ((status IS NULL) = (finished_at IS NULL))
);

-- "The last (successful) run of a job" reads the newest rows of that job.
CREATE INDEX IF NOT EXISTS job_runs_job_started_idx
    ON analytics.job_runs (job, started_at DESC);
