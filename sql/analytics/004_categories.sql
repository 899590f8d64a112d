-- Multi-label categories: every category the multi-label model places a ticket in
-- (the single `category` column stays the routing category).
ALTER TABLE analytics.ticket_facts
    ADD COLUMN IF NOT EXISTS categories text[] NOT NULL DEFAULT '{}';
CREATE INDEX IF NOT EXISTS ticket_facts_categories_idx
    ON analytics.ticket_facts USING gin (categories);
