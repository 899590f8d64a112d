-- The read API's two writes, for its least-privilege login when it exists
-- (sql/roles/analytics_roles.sql creates it in production; the embedded default has none,
-- and then this changes nothing): one audit row per read of customer data, and a key's
-- last-use time.
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'triage_api') THEN
        GRANT INSERT ON analytics.api_audit TO triage_api;
        GRANT UPDATE (last_used_at) ON analytics.api_keys TO triage_api;
        GRANT USAGE ON ALL SEQUENCES IN SCHEMA analytics TO triage_api;
    END IF;
END
$$;
