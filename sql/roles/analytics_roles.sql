-- Least-privilege logins of the analytics store (TimescaleDB / PostgreSQL).
-- Run by the owner of the analytics schema (the role that runs `triage migrate`), once
-- the database exists; idempotent. Passwords are set apart (infra/postgres/analytics-roles.sh
-- with ALTER ROLE ... PASSWORD), so no secret is ever written into SQL files.
--   triage_pipeline  the dataflow and its batch jobs: reads and writes rows, no DDL
--   triage_api       the read API: reads everything, writes only its audit log and the
--                    keys' last-use time
--   triage_bi        BI tools and Grafana: read-only
-- Default privileges cover the tables, views and continuous aggregates that later
-- migrations create, as long as the same owner applies them.
DO $$
DECLARE
    login text;
BEGIN
    FOREACH login IN ARRAY ARRAY['triage_pipeline', 'triage_api', 'triage_bi'] LOOP
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = login) THEN
            EXECUTE format('CREATE ROLE %I LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE', login);
        END IF;
        EXECUTE format('GRANT CONNECT ON DATABASE %I TO %I', current_database(), login);
    END LOOP;
    -- The sinks COPY each batch into session temporary staging tables.
    EXECUTE format('GRANT TEMPORARY ON DATABASE %I TO triage_pipeline', current_database());
END
$$;

CREATE SCHEMA IF NOT EXISTS analytics;
-- Nobody but the owner creates objects in the schemas.
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
REVOKE CREATE ON SCHEMA analytics FROM PUBLIC;
GRANT USAGE ON SCHEMA analytics TO triage_pipeline, triage_api, triage_bi;

GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA analytics TO triage_pipeline;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA analytics TO triage_pipeline;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA analytics TO triage_pipeline;
GRANT SELECT ON ALL TABLES IN SCHEMA analytics TO triage_api, triage_bi;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA analytics TO triage_api, triage_bi;

ALTER DEFAULT PRIVILEGES IN SCHEMA analytics
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO triage_pipeline;
ALTER DEFAULT PRIVILEGES IN SCHEMA analytics
    GRANT USAGE, SELECT ON SEQUENCES TO triage_pipeline;
ALTER DEFAULT PRIVILEGES IN SCHEMA analytics
    GRANT EXECUTE ON FUNCTIONS TO triage_pipeline, triage_api, triage_bi;
ALTER DEFAULT PRIVILEGES IN SCHEMA analytics
    GRANT SELECT ON TABLES TO triage_api, triage_bi;

-- The API's own writes: one audit row per read of customer data, and a key's last use.
-- Granted when the tables exist (sql/analytics/008_api_security.sql); run this file again
-- after `triage migrate` on an existing database.
DO $$
BEGIN
    IF to_regclass('analytics.api_audit') IS NOT NULL THEN
        GRANT INSERT ON analytics.api_audit TO triage_api;
        GRANT USAGE ON ALL SEQUENCES IN SCHEMA analytics TO triage_api;
    END IF;
    IF to_regclass('analytics.api_keys') IS NOT NULL THEN
        GRANT UPDATE (last_used_at) ON analytics.api_keys TO triage_api;
    END IF;
END
$$;
