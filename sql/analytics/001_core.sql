-- Analytics core: current ticket facts, routing decisions (current + history), dead letters.
-- Idempotent: every statement can run again on an existing schema.
-- Every fact row carries `version` (the source LSN of the change that produced it); the
-- sinks upsert with "only if newer", so replays and redelivery never regress a row.

CREATE SCHEMA IF NOT EXISTS analytics;

-- One row per ticket: its latest enriched state. Deletes keep the row with deleted = true
-- so that history-based metrics (volumes, resolution times) stay complete.
CREATE TABLE IF NOT EXISTS analytics.ticket_facts (
    ticket_id            bigint      PRIMARY KEY,
    version              bigint      NOT NULL,
    customer_id          bigint      NOT NULL,
    customer_tier        text        NOT NULL,
    channel              text        NOT NULL,
    status               text        NOT NULL,
    priority             text        NOT NULL,
    priority_reasons     text[]      NOT NULL DEFAULT '{}',
    category             text        NOT NULL,
    queue                text        NOT NULL,
    language             text        NOT NULL,
    language_confidence  real        NOT NULL,
    assigned_agent_id    bigint,
    subject              text        NOT NULL,
    created_at           timestamptz NOT NULL,
    updated_at           timestamptz,
    first_reply_at       timestamptz,
    solved_at            timestamptz,
    csat                 smallint,
    source_committed_at  timestamptz NOT NULL,
    enriched_at          timestamptz NOT NULL,
    deleted              boolean     NOT NULL DEFAULT false
);

-- Open work per queue and per agent (dashboards, API fallbacks).
CREATE INDEX IF NOT EXISTS ticket_facts_queue_status_idx
    ON analytics.ticket_facts (queue, status) WHERE NOT deleted;
CREATE INDEX IF NOT EXISTS ticket_facts_agent_status_idx
    ON analytics.ticket_facts (assigned_agent_id, status)
    WHERE assigned_agent_id IS NOT NULL AND NOT deleted;
-- Volume and resolution-time reports bucket by creation time.
CREATE INDEX IF NOT EXISTS ticket_facts_created_at_idx
    ON analytics.ticket_facts (created_at);
CREATE INDEX IF NOT EXISTS ticket_facts_category_created_idx
    ON analytics.ticket_facts (category, created_at);
-- End-to-end latency and freshness checks look at the newest source commits.
CREATE INDEX IF NOT EXISTS ticket_facts_source_committed_at_idx
    ON analytics.ticket_facts (source_committed_at);

-- The current routing decision per ticket (what Redis holds, durable).
CREATE TABLE IF NOT EXISTS analytics.routing_decisions (
    ticket_id            bigint           PRIMARY KEY,
    version              bigint           NOT NULL,
    queue                text             NOT NULL,
    status               text             NOT NULL
                         CHECK (status IN ('assigned', 'queued', 'released')),
    agent_id             bigint,
    score                double precision NOT NULL,
    confidence           double precision NOT NULL,
    reasons              text[]           NOT NULL DEFAULT '{}',
    priority             text             NOT NULL,
    sla_deadline         timestamptz,
    model_version        text             NOT NULL,
    decided_at           timestamptz      NOT NULL,
    source_committed_at  timestamptz      NOT NULL,
    candidates           integer          NOT NULL DEFAULT 0,
    extra                jsonb            NOT NULL DEFAULT '{}'::jsonb
);

-- An agent's current queue and a queue's holding list (API fallback when Redis is cold).
CREATE INDEX IF NOT EXISTS routing_decisions_agent_idx
    ON analytics.routing_decisions (agent_id, decided_at) WHERE status = 'assigned';
CREATE INDEX IF NOT EXISTS routing_decisions_holding_idx
    ON analytics.routing_decisions (queue, decided_at) WHERE status = 'queued';

-- Every decision ever made, for offline evaluation of the routing model. Append-only:
-- (ticket_id, version) identifies a decision, so a replayed one is ignored.
CREATE TABLE IF NOT EXISTS analytics.routing_decision_history (
    ticket_id            bigint           NOT NULL,
    version              bigint           NOT NULL,
    queue                text             NOT NULL,
    status               text             NOT NULL
                         CHECK (status IN ('assigned', 'queued', 'released')),
    agent_id             bigint,
    score                double precision NOT NULL,
    confidence           double precision NOT NULL,
    reasons              text[]           NOT NULL DEFAULT '{}',
    priority             text             NOT NULL,
    sla_deadline         timestamptz,
    model_version        text             NOT NULL,
    decided_at           timestamptz      NOT NULL,
    source_committed_at  timestamptz      NOT NULL,
    candidates           integer          NOT NULL DEFAULT 0,
    extra                jsonb            NOT NULL DEFAULT '{}'::jsonb,
    PRIMARY KEY (ticket_id, version)
);

-- Evaluation compares model versions over time; agent workload looks at an agent's history.
CREATE INDEX IF NOT EXISTS routing_decision_history_model_idx
    ON analytics.routing_decision_history (model_version, decided_at);
CREATE INDEX IF NOT EXISTS routing_decision_history_decided_at_idx
    ON analytics.routing_decision_history (decided_at);
CREATE INDEX IF NOT EXISTS routing_decision_history_agent_idx
    ON analytics.routing_decision_history (agent_id, decided_at) WHERE agent_id IS NOT NULL;

-- Records the flow could not process, with the reason and the raw payload.
CREATE TABLE IF NOT EXISTS analytics.dead_letters (
    id               bigserial   PRIMARY KEY,
    stage            text        NOT NULL,
    reason           text        NOT NULL,
    topic            text        NOT NULL,
    key              text,
    payload          text,
    lsn              bigint,
    kafka_topic      text,
    kafka_partition  integer,
    kafka_offset     bigint,
    failed_at        timestamptz NOT NULL,
    recorded_at      timestamptz NOT NULL DEFAULT now(),
    -- Where the record came from, as one comparable value: the LSN, else the Kafka
    -- coordinate, else a digest of key and payload. Explicit ::text casts keep the
    -- expression immutable, as generated columns require.
    position_key     text        GENERATED ALWAYS AS (
        coalesce(
            'lsn:' || lsn::text,
            'kafka:' || kafka_topic || '/' || kafka_partition::text || '/' || kafka_offset::text,
            'digest:' || md5(coalesce(key, '') || chr(31) || coalesce(payload, ''))
        )
    ) STORED,
    -- A replayed failure of the same record at the same stage is the same dead letter.
    CONSTRAINT dead_letters_position_uq UNIQUE (stage, topic, position_key)
);

-- Operators triage dead letters by stage and recency.
CREATE INDEX IF NOT EXISTS dead_letters_stage_failed_at_idx
    ON analytics.dead_letters (stage, failed_at);
CREATE INDEX IF NOT EXISTS dead_letters_failed_at_idx
    ON analytics.dead_letters (failed_at);
