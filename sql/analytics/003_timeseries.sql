-- Time series: windowed metrics, agent load, anomalies and forecasts; report views over the
-- ticket facts; and a `time_bucket` compatible with TimescaleDB's when the extension is absent.
-- Runs on plain PostgreSQL 15. Idempotent: every statement can run again on an existing schema.
--
-- TimescaleDB features (hypertables, continuous aggregates, compression, retention) are not
-- set up here: `sinks.timescale.apply_timescale` adds them when the extension is available,
-- replacing the rollup views `metrics_hourly` and `agent_load_hourly` by continuous
-- aggregates of the same names and columns. Every primary key and unique constraint of the
-- tables it converts includes their time column, as hypertables require.

-- One row per closed one-minute window and dimension (e.g. `all`, `queue:billing`),
-- written by the windowed-metrics step. Percentiles are in seconds over the window's
-- completions; `late_events` counts events that arrived after their window had closed.
CREATE TABLE IF NOT EXISTS analytics.metrics_minute (
    bucket                   timestamptz      NOT NULL,
    dimension                text             NOT NULL,
    created                  integer          NOT NULL DEFAULT 0,
    solved                   integer          NOT NULL DEFAULT 0,
    reopened                 integer          NOT NULL DEFAULT 0,
    backlog                  integer          NOT NULL DEFAULT 0,
    first_reply_p50_seconds  double precision,
    first_reply_p90_seconds  double precision,
    resolution_p50_seconds   double precision,
    resolution_p90_seconds   double precision,
    breaches                 integer          NOT NULL DEFAULT 0,
    late_events              integer          NOT NULL DEFAULT 0,
    PRIMARY KEY (bucket, dimension)
);

-- Dashboards plot one dimension over a recent range.
CREATE INDEX IF NOT EXISTS metrics_minute_dimension_bucket_idx
    ON analytics.metrics_minute (dimension, bucket DESC);

-- Open assignments against capacity per agent and queue, sampled per bucket.
CREATE TABLE IF NOT EXISTS analytics.agent_load (
    bucket    timestamptz NOT NULL,
    agent_id  bigint      NOT NULL,
    queue     text        NOT NULL,
    assigned  integer     NOT NULL DEFAULT 0,
    capacity  integer     NOT NULL DEFAULT 0,
    PRIMARY KEY (bucket, agent_id, queue)
);

CREATE INDEX IF NOT EXISTS agent_load_agent_bucket_idx
    ON analytics.agent_load (agent_id, bucket DESC);
CREATE INDEX IF NOT EXISTS agent_load_queue_bucket_idx
    ON analytics.agent_load (queue, bucket DESC);

-- Detected anomalies. A series' bucket is flagged at most once, so a replayed detection is
-- ignored. Few rows: this stays a plain table under TimescaleDB too.
CREATE TABLE IF NOT EXISTS analytics.anomalies (
    id            bigint           GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    detected_at   timestamptz      NOT NULL,
    series        text             NOT NULL,
    bucket_start  timestamptz      NOT NULL,
    observed      double precision NOT NULL,
    expected      double precision NOT NULL,
    score         double precision NOT NULL,
    -- {"category:billing": 0.62, ...}: what contributed most, largest first
    drivers       jsonb            NOT NULL DEFAULT '{}'::jsonb,
    CONSTRAINT anomalies_series_bucket_uq UNIQUE (series, bucket_start)
);

CREATE INDEX IF NOT EXISTS anomalies_detected_at_idx
    ON analytics.anomalies (detected_at DESC);

-- Hourly forecasts; every run adds its own rows, so runs can be compared with the actuals.
CREATE TABLE IF NOT EXISTS analytics.forecasts (
    generated_at   timestamptz      NOT NULL,
    series         text             NOT NULL,
    hour           timestamptz      NOT NULL,
    value          double precision NOT NULL,
    lower          double precision,
    upper          double precision,
    agents_needed  integer,
    PRIMARY KEY (series, hour, generated_at)
);

-- "The latest forecast of a series" starts from its newest run.
CREATE INDEX IF NOT EXISTS forecasts_series_generated_idx
    ON analytics.forecasts (series, generated_at DESC);

-- Resolution and first-reply reports bucket by completion time (creation time is indexed
-- in 001_core).
CREATE INDEX IF NOT EXISTS ticket_facts_solved_at_idx
    ON analytics.ticket_facts (solved_at) WHERE solved_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS ticket_facts_first_reply_at_idx
    ON analytics.ticket_facts (first_reply_at) WHERE first_reply_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS ticket_facts_priority_created_idx
    ON analytics.ticket_facts (priority, created_at);
CREATE INDEX IF NOT EXISTS ticket_facts_channel_created_idx
    ON analytics.ticket_facts (channel, created_at);

-- `time_bucket` with TimescaleDB's semantics, only where the extension is absent (where it
-- is present the real one is used, and these would shadow it). The shim lives in the
-- analytics schema so that installing TimescaleDB later (into `public`) does not collide
-- with it; analysts put it on their path with `SET search_path TO analytics, public`.
--   * Fixed widths (seconds ... weeks; a day counts as 24 hours) are aligned to the origin,
--     by default 2000-01-03 00:00 (a Monday, so weekly buckets start on Mondays).
--   * Month widths ('1 month', '3 months', '1 year') are aligned to 2000-01-01, so they
--     start on the first of a month; a width mixing months with days or time is refused.
--   * Times before the origin are floored, never truncated towards it.
--   * timestamptz is bucketed in UTC unless a time zone is given.
-- Arithmetic is exact to the microsecond within a few centuries of the origin.
DO $shim$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
        RETURN;
    END IF;

    -- The general case: every other variant converts to and from this one.
    CREATE OR REPLACE FUNCTION analytics.time_bucket(
        bucket_width interval, ts timestamp, origin timestamp
    ) RETURNS timestamp
    LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
    AS $fn$
    DECLARE
        months        integer := (extract(year FROM bucket_width) * 12
                                  + extract(month FROM bucket_width))::integer;
        rest          interval := bucket_width - make_interval(months => months);
        width_seconds numeric;
        since         integer;
        n             numeric;
    BEGIN
        IF months <> 0 AND rest <> interval '0' THEN
            RAISE EXCEPTION 'month intervals cannot have day or time component'
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF months < 0 OR (months = 0 AND rest <= interval '0') THEN
            RAISE EXCEPTION 'period must be greater than 0'
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF months > 0 THEN
            since := (extract(year FROM ts) - extract(year FROM origin))::integer * 12
                     + (extract(month FROM ts) - extract(month FROM origin))::integer;
            IF origin + make_interval(months => since) > ts THEN
                since := since - 1;
            END IF;
            n := floor(since::numeric / months);
            RETURN origin + make_interval(months => (n * months)::integer);
        END IF;
        width_seconds := extract(epoch FROM bucket_width);
        n := floor((extract(epoch FROM ts) - extract(epoch FROM origin)) / width_seconds);
        RETURN origin + make_interval(secs => (n * width_seconds)::double precision);
    END;
    $fn$;

    CREATE OR REPLACE FUNCTION analytics.time_bucket(bucket_width interval, ts timestamp)
    RETURNS timestamp
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $fn$
        SELECT analytics.time_bucket(
            bucket_width, ts,
            CASE WHEN extract(year FROM bucket_width) * 12 + extract(month FROM bucket_width) <> 0
                 THEN timestamp '2000-01-01 00:00'
                 ELSE timestamp '2000-01-03 00:00' END)
    $fn$;

    CREATE OR REPLACE FUNCTION analytics.time_bucket(
        bucket_width interval, ts timestamptz, origin timestamptz
    ) RETURNS timestamptz
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $fn$
        SELECT analytics.time_bucket(
            bucket_width, ts AT TIME ZONE 'UTC', origin AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
    $fn$;

    CREATE OR REPLACE FUNCTION analytics.time_bucket(bucket_width interval, ts timestamptz)
    RETURNS timestamptz
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $fn$
        SELECT analytics.time_bucket(bucket_width, ts AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
    $fn$;

    -- Local-time buckets (days and weeks starting at local midnight).
    CREATE OR REPLACE FUNCTION analytics.time_bucket(
        bucket_width interval, ts timestamptz, timezone text
    ) RETURNS timestamptz
    LANGUAGE sql STABLE STRICT PARALLEL SAFE
    AS $fn$
        SELECT analytics.time_bucket(bucket_width, ts AT TIME ZONE timezone) AT TIME ZONE timezone
    $fn$;

    -- Buckets shifted by an offset from the default origin.
    CREATE OR REPLACE FUNCTION analytics.time_bucket(
        bucket_width interval, ts timestamptz, "offset" interval
    ) RETURNS timestamptz
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $fn$
        SELECT analytics.time_bucket(
            bucket_width, (ts AT TIME ZONE 'UTC') - "offset") AT TIME ZONE 'UTC'
            + "offset"
    $fn$;

    CREATE OR REPLACE FUNCTION analytics.time_bucket(
        bucket_width interval, ts timestamp, "offset" interval
    ) RETURNS timestamp
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $fn$
        SELECT analytics.time_bucket(bucket_width, ts - "offset") + "offset"
    $fn$;

    CREATE OR REPLACE FUNCTION analytics.time_bucket(bucket_width interval, ts date)
    RETURNS date
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $fn$
        SELECT analytics.time_bucket(bucket_width, ts::timestamp)::date
    $fn$;

    CREATE OR REPLACE FUNCTION analytics.time_bucket(
        bucket_width interval, ts date, origin date
    ) RETURNS date
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $fn$
        SELECT analytics.time_bucket(bucket_width, ts::timestamp, origin::timestamp)::date
    $fn$;
END
$shim$;

-- Report views over the ticket facts. ticket_facts holds one current row per ticket, keyed
-- by ticket id alone, so it cannot be a hypertable; these stay views under TimescaleDB.
-- Deleted tickets count: they were created and worked on. Days are UTC days.

-- Tickets created per hour by category, priority and channel, and how many of them are
-- solved (or closed) by now.
CREATE OR REPLACE VIEW analytics.volume_hourly AS
SELECT
    date_trunc('hour', f.created_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS bucket,
    f.category,
    f.priority,
    f.channel,
    count(*)                                          AS created,
    count(*) FILTER (WHERE f.solved_at IS NOT NULL)   AS solved,
    count(*) FILTER (WHERE f.status IN ('new', 'open', 'pending', 'on_hold')
                     AND NOT f.deleted)               AS open
FROM analytics.ticket_facts AS f
GROUP BY 1, 2, 3, 4;

CREATE OR REPLACE VIEW analytics.volume_daily AS
SELECT
    (f.created_at AT TIME ZONE 'UTC')::date            AS date,
    f.category,
    f.priority,
    f.channel,
    count(*)                                          AS created,
    count(*) FILTER (WHERE f.solved_at IS NOT NULL)   AS solved,
    count(*) FILTER (WHERE f.status IN ('new', 'open', 'pending', 'on_hold')
                     AND NOT f.deleted)               AS open
FROM analytics.ticket_facts AS f
GROUP BY 1, 2, 3, 4;

-- Wall-clock first-reply and resolution times, per UTC day of the reply or resolution and
-- per priority, plus an `all` row per day and metric (percentiles do not add up, so the
-- overall figures are computed, not derived from the per-priority rows).
CREATE OR REPLACE VIEW analytics.response_times_daily AS
WITH durations AS (
    SELECT
        'first_reply'::text                                AS metric,
        (f.first_reply_at AT TIME ZONE 'UTC')::date       AS date,
        f.priority,
        extract(epoch FROM f.first_reply_at - f.created_at)::double precision AS seconds
    FROM analytics.ticket_facts AS f
    WHERE f.first_reply_at IS NOT NULL AND f.first_reply_at >= f.created_at
    UNION ALL
    SELECT
        'resolution'::text,
        (f.solved_at AT TIME ZONE 'UTC')::date,
        f.priority,
        extract(epoch FROM f.solved_at - f.created_at)::double precision
    FROM analytics.ticket_facts AS f
    WHERE f.solved_at IS NOT NULL AND f.solved_at >= f.created_at
)
SELECT
    d.date,
    d.metric,
    coalesce(d.priority, 'all')                                      AS priority,
    count(*)                                                         AS tickets,
    percentile_cont(0.5) WITHIN GROUP (ORDER BY d.seconds)           AS p50_seconds,
    percentile_cont(0.9) WITHIN GROUP (ORDER BY d.seconds)           AS p90_seconds,
    avg(d.seconds)                                                   AS avg_seconds
FROM durations AS d
GROUP BY GROUPING SETS ((d.date, d.metric, d.priority), (d.date, d.metric));

-- Per UTC day and agent: tickets assigned by routing (decision day), tickets solved while
-- assigned to the agent (solve day) with their resolution times and CSAT.
CREATE OR REPLACE VIEW analytics.agent_performance_daily AS
WITH assigned AS (
    SELECT
        (h.decided_at AT TIME ZONE 'UTC')::date AS date,
        h.agent_id,
        count(DISTINCT h.ticket_id)           AS assigned
    FROM analytics.routing_decision_history AS h
    WHERE h.status = 'assigned' AND h.agent_id IS NOT NULL
    GROUP BY 1, 2
), solved AS (
    SELECT
        (f.solved_at AT TIME ZONE 'UTC')::date AS date,
        f.assigned_agent_id                  AS agent_id,
        count(*)                             AS solved,
        percentile_cont(0.5) WITHIN GROUP (
            ORDER BY extract(epoch FROM f.solved_at - f.created_at)::double precision
        )                                    AS resolution_p50_seconds,
        percentile_cont(0.9) WITHIN GROUP (
            ORDER BY extract(epoch FROM f.solved_at - f.created_at)::double precision
        )                                    AS resolution_p90_seconds,
        count(f.csat)                        AS csat_responses,
        avg(f.csat)::double precision        AS csat_avg,
        count(*) FILTER (WHERE f.sla_breached) AS sla_breached
    FROM analytics.ticket_facts AS f
    WHERE f.solved_at IS NOT NULL AND f.assigned_agent_id IS NOT NULL AND NOT f.deleted
    GROUP BY 1, 2
)
SELECT
    date,
    agent_id,
    coalesce(a.assigned, 0)     AS assigned,
    coalesce(s.solved, 0)       AS solved,
    s.resolution_p50_seconds,
    s.resolution_p90_seconds,
    coalesce(s.csat_responses, 0) AS csat_responses,
    s.csat_avg,
    coalesce(s.sla_breached, 0) AS sla_breached
FROM assigned AS a
FULL JOIN solved AS s USING (date, agent_id);

-- Rollups of the time-series tables. Under TimescaleDB these become continuous aggregates
-- of the same names and columns (see sinks/timescale.py). Percentiles cannot be combined,
-- so an hour reports the worst minute's p90.
CREATE OR REPLACE VIEW analytics.metrics_hourly AS
SELECT
    date_trunc('hour', m.bucket AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS bucket,
    m.dimension,
    sum(m.created)::bigint                                 AS created,
    sum(m.solved)::bigint                                  AS solved,
    sum(m.reopened)::bigint                                AS reopened,
    (array_agg(m.backlog ORDER BY m.bucket DESC))[1]       AS backlog_last,
    max(m.backlog)                                         AS backlog_max,
    max(m.first_reply_p90_seconds)                         AS first_reply_p90_max_seconds,
    max(m.resolution_p90_seconds)                          AS resolution_p90_max_seconds,
    sum(m.breaches)::bigint                                AS breaches,
    sum(m.late_events)::bigint                             AS late_events
FROM analytics.metrics_minute AS m
GROUP BY 1, 2;

CREATE OR REPLACE VIEW analytics.agent_load_hourly AS
SELECT
    date_trunc('hour', l.bucket AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS bucket,
    l.agent_id,
    l.queue,
    max(l.assigned)                                        AS assigned_max,
    avg(l.assigned)::double precision                      AS assigned_avg,
    max(l.capacity)                                        AS capacity_max,
    max(l.assigned::double precision / nullif(l.capacity, 0)) AS utilisation_max
FROM analytics.agent_load AS l
GROUP BY 1, 2, 3;
