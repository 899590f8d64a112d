-- When a dead letter was sent through the flow again (`triage dead-letters replay`), so
-- that a replay is done once and operators see what is still pending. Idempotent.
ALTER TABLE analytics.dead_letters ADD COLUMN IF NOT EXISTS replayed_at timestamptz;
