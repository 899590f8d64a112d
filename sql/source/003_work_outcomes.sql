-- Work outcomes: "item X, handled by agent A, took N seconds" (a contact-centre call, a chat,
-- a ticket's handling time). The router learns each agent's handling time per work type from
-- them and frees the agent (models/routing.py QueueRouter.complete). Rows are written by the
-- API (POST /v1/outcomes), by `triage routing warm-start` from a history file, or directly by
-- the system that knows the handling time. They travel through CDC like every other change,
-- so what was learned is rebuilt from the log after a restart or a replay.
CREATE TABLE IF NOT EXISTS work_outcomes (
    id               bigserial PRIMARY KEY,
    ticket_id        bigint,                       -- the routed item; NULL: history only
    agent_id         bigint NOT NULL,              -- who handled it
    queue            text NOT NULL,                -- the routing decision's queue (team)
    work_type        text,                         -- NULL: the category the item was routed with
    handling_seconds double precision NOT NULL CHECK (handling_seconds >= 0),
    wait_seconds     double precision CHECK (wait_seconds >= 0),
    quality          double precision CHECK (quality BETWEEN 0 AND 1),
    origin           text NOT NULL DEFAULT 'api',  -- api, warm-start, or the writing system
    completed_at     timestamptz NOT NULL DEFAULT now(),
    -- History rows teach the router a work type's handling time: they must name the type.
    CONSTRAINT work_outcomes_type_or_item
        CHECK (ticket_id IS NOT NULL OR coalesce(btrim(work_type), '') <> '')
);
CREATE INDEX IF NOT EXISTS work_outcomes_ticket_idx ON work_outcomes (ticket_id);
ALTER TABLE work_outcomes REPLICA IDENTITY DEFAULT;

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_publication WHERE pubname = 'triage_cdc')
       AND NOT EXISTS (
           SELECT 1 FROM pg_publication_tables
           WHERE pubname = 'triage_cdc' AND schemaname = 'public' AND tablename = 'work_outcomes'
       ) THEN
        ALTER PUBLICATION triage_cdc ADD TABLE work_outcomes;
    END IF;
    -- The CDC login reads exactly the published tables (sql/roles/source_roles.sql).
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'triage_cdc') THEN
        GRANT SELECT ON work_outcomes TO triage_cdc;
    END IF;
    -- The API's outcome login adds rows and reads back their ids only.
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'triage_outcomes') THEN
        GRANT INSERT, SELECT (id) ON work_outcomes TO triage_outcomes;
        GRANT USAGE ON SEQUENCE work_outcomes_id_seq TO triage_outcomes;
    END IF;
END
$$;
