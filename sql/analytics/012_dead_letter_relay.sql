-- Rows a store refused (stages write_*) are dead-lettered inside that store's sink and
-- land only in dead_letters. `triage dead-letters publish` (the scheduled job
-- dead-letters-publish when dead letters go to Kafka) relays them to the dead-letter
-- topic and keeps its place here, per topic: rows after last_id are still to publish.
-- Idempotent.
CREATE TABLE IF NOT EXISTS analytics.dead_letter_relay (
    topic       text        PRIMARY KEY,
    last_id     bigint      NOT NULL DEFAULT 0,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
