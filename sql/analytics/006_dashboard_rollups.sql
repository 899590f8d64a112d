-- Fast dashboards on plain PostgreSQL: a `time_bucket` that runs at native speed, and
-- hourly rollups kept up to date by the pipeline. Idempotent.
--
-- Dashboards draw ranges of up to three days from the minute tables and longer ranges from
-- the hourly rollups `metrics_hourly`, `agent_load_hourly` and `sla_hourly`. Under
-- TimescaleDB those three are continuous aggregates (sinks/timescale.py) and nothing here
-- applies. On plain PostgreSQL they are tables: `analytics.refresh_rollups(hours)`
-- recomputes the given hours from the minute tables. The PostgreSQL sink calls the
-- three-array form (each rollup only for the hours its own source table was written in)
-- in the transaction that writes the minute rows, so a rollup never lags its sources.
-- Recomputing (rather than adding to) an hour makes replays and late rows harmless.

DO $rollups$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
        RETURN;
    END IF;

    -- The shim's fixed-width cases through the built-in date_bin (same floor-to-origin
    -- semantics, a C function instead of PL/pgSQL arithmetic: an order of magnitude
    -- faster per row). Month widths and invalid widths still take the general function, which keeps
    -- TimescaleDB's error messages. These are plain SQL expressions, so the planner
    -- inlines them into the calling query.
    CREATE OR REPLACE FUNCTION analytics.time_bucket(bucket_width interval, ts timestamptz)
    RETURNS timestamptz
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $fn$
        SELECT CASE
            WHEN bucket_width > interval '0'
                 AND extract(year FROM bucket_width) = 0 AND extract(month FROM bucket_width) = 0
            THEN date_bin(bucket_width, ts, timestamptz '2000-01-03 00:00+00')
            ELSE analytics.time_bucket(bucket_width, ts AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
        END
    $fn$;

    CREATE OR REPLACE FUNCTION analytics.time_bucket(
        bucket_width interval, ts timestamptz, origin timestamptz
    ) RETURNS timestamptz
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $fn$
        SELECT CASE
            WHEN bucket_width > interval '0'
                 AND extract(year FROM bucket_width) = 0 AND extract(month FROM bucket_width) = 0
            THEN date_bin(bucket_width, ts, origin)
            ELSE analytics.time_bucket(
                bucket_width, ts AT TIME ZONE 'UTC', origin AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
        END
    $fn$;

    -- Hourly rollups: tables here, continuous aggregates under TimescaleDB. The columns
    -- of the former views stay; sums and counts are added so that wider buckets can be
    -- built from hours (a mean of means would weigh quiet hours like busy ones).
    IF EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
               WHERE n.nspname = 'analytics' AND c.relname = 'metrics_hourly'
                 AND c.relkind = 'v') THEN
        DROP VIEW analytics.metrics_hourly;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
               WHERE n.nspname = 'analytics' AND c.relname = 'agent_load_hourly'
                 AND c.relkind = 'v') THEN
        DROP VIEW analytics.agent_load_hourly;
    END IF;

    CREATE TABLE IF NOT EXISTS analytics.metrics_hourly (
        bucket                       timestamptz      NOT NULL,
        dimension                    text             NOT NULL,
        created                      bigint           NOT NULL,
        solved                       bigint           NOT NULL,
        reopened                     bigint           NOT NULL,
        backlog_last                 integer,
        backlog_max                  integer,
        first_reply_p90_max_seconds  double precision,
        resolution_p90_max_seconds   double precision,
        breaches                     bigint           NOT NULL,
        late_events                  bigint           NOT NULL,
        -- Sums of the minutes' percentiles and how many minutes had one.
        first_reply_p50_sum_seconds  double precision,
        first_reply_p90_sum_seconds  double precision,
        first_reply_minutes          bigint           NOT NULL,
        resolution_p50_sum_seconds   double precision,
        resolution_p90_sum_seconds   double precision,
        resolution_minutes           bigint           NOT NULL,
        PRIMARY KEY (dimension, bucket)
    );

    CREATE TABLE IF NOT EXISTS analytics.agent_load_hourly (
        bucket            timestamptz      NOT NULL,
        agent_id          bigint           NOT NULL,
        queue             text             NOT NULL,
        assigned_max      integer,
        assigned_avg      double precision,
        capacity_max      integer,
        utilisation_max   double precision,
        assigned_sum      bigint           NOT NULL,
        capacity_sum      bigint           NOT NULL,
        samples           bigint           NOT NULL,
        burnout_risk_max  real,
        PRIMARY KEY (bucket, agent_id, queue)
    );

    -- SLA targets met (fulfilled on time) and missed (deadline passed) per hour and
    -- metric. A missed target counts at its breach, not again when it is fulfilled late.
    CREATE TABLE IF NOT EXISTS analytics.sla_hourly (
        bucket  timestamptz NOT NULL,
        metric  text        NOT NULL,
        met     bigint      NOT NULL,
        missed  bigint      NOT NULL,
        PRIMARY KEY (bucket, metric)
    );

    -- Each rollup is recomputed only for the hours its own source table was written in.
    CREATE OR REPLACE FUNCTION analytics.refresh_rollups(
        metric_hours timestamptz[], load_hours timestamptz[], sla_hours timestamptz[]
    )
    RETURNS integer
    LANGUAGE plpgsql
    AS $fn$
    DECLARE
        wanted timestamptz[];
        written integer := 0;
        n integer;
    BEGIN
        IF coalesce(cardinality(metric_hours), 0) + coalesce(cardinality(load_hours), 0)
           + coalesce(cardinality(sla_hours), 0) = 0 THEN
            RETURN 0;
        END IF;
        -- One refresher at a time: two transactions recomputing the same hour would
        -- both delete, then collide on insert.
        PERFORM pg_advisory_xact_lock(hashtext('analytics.refresh_rollups'));

        SELECT array_agg(DISTINCT date_trunc('hour', h AT TIME ZONE 'UTC') AT TIME ZONE 'UTC')
          INTO wanted FROM unnest(metric_hours) AS h WHERE h IS NOT NULL;
        IF (SELECT relkind FROM pg_class WHERE oid = to_regclass('analytics.metrics_hourly'))
           = 'r' AND wanted IS NOT NULL THEN
            DELETE FROM analytics.metrics_hourly WHERE bucket = ANY (wanted);
            INSERT INTO analytics.metrics_hourly
            SELECT h.hour, m.dimension,
                   sum(m.created), sum(m.solved), sum(m.reopened),
                   (array_agg(m.backlog ORDER BY m.bucket DESC))[1], max(m.backlog),
                   max(m.first_reply_p90_seconds), max(m.resolution_p90_seconds),
                   sum(m.breaches), sum(m.late_events),
                   sum(m.first_reply_p50_seconds), sum(m.first_reply_p90_seconds),
                   count(m.first_reply_p50_seconds),
                   sum(m.resolution_p50_seconds), sum(m.resolution_p90_seconds),
                   count(m.resolution_p50_seconds)
              FROM unnest(wanted) AS h(hour)
              JOIN analytics.metrics_minute AS m
                ON m.bucket >= h.hour AND m.bucket < h.hour + interval '1 hour'
             GROUP BY h.hour, m.dimension;
            GET DIAGNOSTICS n = ROW_COUNT;
            written := written + n;
        END IF;

        SELECT array_agg(DISTINCT date_trunc('hour', h AT TIME ZONE 'UTC') AT TIME ZONE 'UTC')
          INTO wanted FROM unnest(load_hours) AS h WHERE h IS NOT NULL;
        IF (SELECT relkind FROM pg_class WHERE oid = to_regclass('analytics.agent_load_hourly'))
           = 'r' AND wanted IS NOT NULL THEN
            DELETE FROM analytics.agent_load_hourly WHERE bucket = ANY (wanted);
            INSERT INTO analytics.agent_load_hourly
            SELECT h.hour, l.agent_id, l.queue,
                   max(l.assigned), avg(l.assigned)::double precision, max(l.capacity),
                   max(l.assigned::double precision / nullif(l.capacity, 0)),
                   sum(l.assigned), sum(l.capacity), count(*), max(l.burnout_risk)
              FROM unnest(wanted) AS h(hour)
              JOIN analytics.agent_load AS l
                ON l.bucket >= h.hour AND l.bucket < h.hour + interval '1 hour'
             GROUP BY h.hour, l.agent_id, l.queue;
            GET DIAGNOSTICS n = ROW_COUNT;
            written := written + n;
        END IF;

        SELECT array_agg(DISTINCT date_trunc('hour', h AT TIME ZONE 'UTC') AT TIME ZONE 'UTC')
          INTO wanted FROM unnest(sla_hours) AS h WHERE h IS NOT NULL;
        IF (SELECT relkind FROM pg_class WHERE oid = to_regclass('analytics.sla_hourly'))
           = 'r' AND wanted IS NOT NULL THEN
            DELETE FROM analytics.sla_hourly WHERE bucket = ANY (wanted);
            INSERT INTO analytics.sla_hourly
            SELECT h.hour, e.metric,
                   count(*) FILTER (WHERE e.kind = 'fulfill' AND NOT e.breached),
                   count(*) FILTER (WHERE e.kind = 'breach')
              FROM unnest(wanted) AS h(hour)
              JOIN analytics.sla_events AS e
                ON e.at >= h.hour AND e.at < h.hour + interval '1 hour'
             WHERE e.kind IN ('fulfill', 'breach')
             GROUP BY h.hour, e.metric;
            GET DIAGNOSTICS n = ROW_COUNT;
            written := written + n;
        END IF;
        RETURN written;
    END;
    $fn$;

    -- All three rollups for the same hours (back-fills, sample data).
    CREATE OR REPLACE FUNCTION analytics.refresh_rollups(hours timestamptz[])
    RETURNS integer
    LANGUAGE sql
    AS $fn$ SELECT analytics.refresh_rollups(hours, hours, hours) $fn$;

    -- Fill the rollups from whatever the minute tables already hold.
    PERFORM analytics.refresh_rollups(array(
        SELECT DISTINCT date_trunc('hour', bucket AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
          FROM analytics.metrics_minute
        UNION
        SELECT DISTINCT date_trunc('hour', bucket AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
          FROM analytics.agent_load
        UNION
        SELECT DISTINCT date_trunc('hour', at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
          FROM analytics.sla_events WHERE kind IN ('fulfill', 'breach')
    ));

    CREATE INDEX IF NOT EXISTS metrics_hourly_bucket_idx ON analytics.metrics_hourly (bucket);
END
$rollups$;

-- SLA compliance over short ranges reads the outcome events directly; this partial index
-- covers that query (index-only scans).
CREATE INDEX IF NOT EXISTS sla_events_outcomes_idx
    ON analytics.sla_events (at) INCLUDE (kind, breached)
    WHERE kind IN ('fulfill', 'breach');
