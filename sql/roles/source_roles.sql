-- The CDC login of the helpdesk database: what Debezium (and the embedded reader) need
-- and nothing more. Run by the owner of the helpdesk tables after sql/source (which
-- creates the publication); idempotent. The password is set apart
-- (infra/postgres/source-roles.sh), never written here.
--   triage_cdc  REPLICATION (logical slot, pgoutput, heartbeat messages) and SELECT on
--               exactly the tables of the publication (the initial snapshot); no writes,
--               no other table.
DO $$
DECLARE
    published regclass;
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'triage_cdc') THEN
        CREATE ROLE triage_cdc LOGIN REPLICATION NOSUPERUSER NOCREATEDB NOCREATEROLE;
    END IF;
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO triage_cdc', current_database());
    FOR published IN
        SELECT pr.prrelid::regclass
        FROM pg_publication_rel AS pr
        JOIN pg_publication AS p ON p.oid = pr.prpubid
        WHERE p.pubname = 'triage_cdc'
    LOOP
        EXECUTE format('GRANT SELECT ON %s TO triage_cdc', published);
    END LOOP;
END
$$;
GRANT USAGE ON SCHEMA public TO triage_cdc;

-- The outcome input's login (POST /v1/outcomes in the API): it adds work outcomes and
-- reads back only their ids; nothing else in the helpdesk database. The grants on the
-- table are repeated by sql/source/003_work_outcomes.sql for databases where this runs
-- before the table exists.
--   triage_outcomes  INSERT on work_outcomes (and its id sequence), SELECT of its id.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'triage_outcomes') THEN
        CREATE ROLE triage_outcomes LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE;
    END IF;
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO triage_outcomes', current_database());
    IF to_regclass('public.work_outcomes') IS NOT NULL THEN
        GRANT INSERT, SELECT (id) ON work_outcomes TO triage_outcomes;
        GRANT USAGE ON SEQUENCE work_outcomes_id_seq TO triage_outcomes;
    END IF;
END
$$;
GRANT USAGE ON SCHEMA public TO triage_outcomes;
