-- Burnout risk (0-100) next to each agent-load sample, with the signals behind it.
ALTER TABLE analytics.agent_load
    ADD COLUMN IF NOT EXISTS burnout_risk real,
    ADD COLUMN IF NOT EXISTS burnout_reasons text[] NOT NULL DEFAULT '{}';
