-- Ticket intelligence and SLA: enrichment columns on ticket_facts, the SLA event log with
-- the current clock per ticket and metric, breach-risk scores and online model quality.
-- Idempotent: every statement can run again on an existing schema.

-- What enrichment derives besides routing. A constant default makes ADD COLUMN a catalog
-- change only (no table rewrite), so this is cheap on a large ticket_facts.
ALTER TABLE analytics.ticket_facts
    ADD COLUMN IF NOT EXISTS organization          text,
    ADD COLUMN IF NOT EXISTS region                text        NOT NULL DEFAULT 'us',
    ADD COLUMN IF NOT EXISTS sentiment             real,
    ADD COLUMN IF NOT EXISTS sentiment_label       text        NOT NULL DEFAULT 'unknown',
    ADD COLUMN IF NOT EXISTS sentiment_confidence  real        NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS intent                text,
    ADD COLUMN IF NOT EXISTS intent_confidence     real        NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS intent_source         text        NOT NULL DEFAULT 'none',
    ADD COLUMN IF NOT EXISTS category_confidence   real        NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS category_source       text        NOT NULL DEFAULT 'keywords',
    ADD COLUMN IF NOT EXISTS category_suggestion   text,
    -- [{"ticket_id": 12, "similarity": 0.91}, ...], most similar first
    ADD COLUMN IF NOT EXISTS duplicates            jsonb       NOT NULL DEFAULT '[]'::jsonb,
    -- [{"article_id": 4, "title": "...", "score": 0.7}, ...], best first
    ADD COLUMN IF NOT EXISTS kb_suggestions        jsonb       NOT NULL DEFAULT '[]'::jsonb,
    ADD COLUMN IF NOT EXISTS response_suggestion   text,
    ADD COLUMN IF NOT EXISTS first_reply_due       timestamptz,
    ADD COLUMN IF NOT EXISTS resolution_due        timestamptz,
    ADD COLUMN IF NOT EXISTS sla_policy            text,
    ADD COLUMN IF NOT EXISTS sla_breached          boolean     NOT NULL DEFAULT false,
    -- {"model name": "version", ...}: which models produced this row's labels
    ADD COLUMN IF NOT EXISTS model_versions        jsonb       NOT NULL DEFAULT '{}'::jsonb;

-- Intent mix over time, and the open tickets already past an SLA target.
CREATE INDEX IF NOT EXISTS ticket_facts_intent_created_idx
    ON analytics.ticket_facts (intent, created_at) WHERE intent IS NOT NULL;
CREATE INDEX IF NOT EXISTS ticket_facts_sla_breached_idx
    ON analytics.ticket_facts (queue, resolution_due) WHERE sla_breached AND NOT deleted;

-- Every change of an SLA metric clock (after Zendesk's ticket metric events). Append-only:
-- (ticket_id, metric, kind, at) identifies an event, so a replayed one is ignored.
CREATE TABLE IF NOT EXISTS analytics.sla_events (
    ticket_id                 bigint           NOT NULL,
    metric                    text             NOT NULL
                              CHECK (metric IN ('first_reply', 'next_reply', 'resolution')),
    kind                      text             NOT NULL
                              CHECK (kind IN ('apply', 'pause', 'resume', 'fulfill', 'breach',
                                              'update')),
    at                        timestamptz      NOT NULL,
    deadline                  timestamptz,
    policy                    text             NOT NULL,
    business_seconds_elapsed  double precision NOT NULL,
    paused_seconds            double precision NOT NULL,
    breached                  boolean          NOT NULL DEFAULT false,
    recorded_at               timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (ticket_id, metric, kind, at)
);

-- Compliance reports bucket by event time. A ticket's events are found through the
-- primary key, whose leading column is ticket_id, so no separate index is needed for that.
CREATE INDEX IF NOT EXISTS sla_events_at_idx
    ON analytics.sla_events (at);

-- The current clock of each metric of each ticket (what Redis holds, durable). The sink
-- replaces a row only with an event at least as recent as the stored one (`updated_at`
-- is the event's `at`); of events at the same instant the later one wins, and a replayed
-- one (already in sla_events) changes nothing. `state` follows the event kind; an
-- `update` (policy change) reads as running when it carries a deadline.
CREATE TABLE IF NOT EXISTS analytics.ticket_sla (
    ticket_id                 bigint           NOT NULL,
    metric                    text             NOT NULL
                              CHECK (metric IN ('first_reply', 'next_reply', 'resolution')),
    kind                      text             NOT NULL,
    state                     text             NOT NULL
                              CHECK (state IN ('running', 'paused', 'fulfilled')),
    deadline                  timestamptz,
    breached                  boolean          NOT NULL DEFAULT false,
    policy                    text             NOT NULL,
    business_seconds_elapsed  double precision NOT NULL,
    paused_seconds            double precision NOT NULL,
    updated_at                timestamptz      NOT NULL,
    PRIMARY KEY (ticket_id, metric)
);

-- Deadlines coming up: the running clocks, nearest first.
CREATE INDEX IF NOT EXISTS ticket_sla_running_deadline_idx
    ON analytics.ticket_sla (deadline) WHERE state = 'running';

-- The newest breach-risk score per open ticket; only a greater `version` replaces it.
CREATE TABLE IF NOT EXISTS analytics.ticket_risk (
    ticket_id      bigint           PRIMARY KEY,
    version        bigint           NOT NULL,
    queue          text             NOT NULL,
    risk           double precision NOT NULL CHECK (risk >= 0 AND risk <= 1),
    scored_at      timestamptz      NOT NULL,
    deadline       timestamptz,
    metric         text,
    model_version  text             NOT NULL
);

-- Riskiest tickets of a queue first (dashboards, staffing).
CREATE INDEX IF NOT EXISTS ticket_risk_queue_risk_idx
    ON analytics.ticket_risk (queue, risk DESC);

-- Prequential quality of the online models along their stream. (model, n_seen) is one
-- checkpoint of one model, so a replayed checkpoint is ignored.
CREATE TABLE IF NOT EXISTS analytics.model_metrics (
    model           text             NOT NULL,
    version         text             NOT NULL,
    at              timestamptz      NOT NULL,
    n_seen          bigint           NOT NULL,
    accuracy        double precision NOT NULL,
    weighted_f1     double precision NOT NULL,
    drift_detected  integer          NOT NULL DEFAULT 0,
    PRIMARY KEY (model, n_seen)
);

CREATE INDEX IF NOT EXISTS model_metrics_model_at_idx
    ON analytics.model_metrics (model, at);

-- Example analyst query: per UTC day and metric, how many measurements completed within
-- their target (`fulfilled`) and how many completed late (`breached`), from the `fulfill`
-- events, which carry whether the target had been missed. A next_reply clock completes once
-- per agent reply, and a reopened ticket's resolution clock completes again when re-solved.
CREATE OR REPLACE VIEW analytics.sla_compliance_daily AS
SELECT
    (e.at AT TIME ZONE 'UTC')::date                       AS date,
    e.metric,
    count(*) FILTER (WHERE NOT e.breached)                 AS fulfilled,
    count(*) FILTER (WHERE e.breached)                     AS breached,
    round(count(*) FILTER (WHERE NOT e.breached)::numeric / count(*), 4) AS compliance
FROM analytics.sla_events AS e
WHERE e.kind = 'fulfill'
GROUP BY 1, 2;
