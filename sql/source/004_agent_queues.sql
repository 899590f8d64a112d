-- Queues an agent serves besides its team's (models/helpdesk.py Agent.queues). They count
-- within the team's routing pool (TRIAGE_PIPELINE__ROUTING_POOLS), where the agent's load
-- covers all its queues at once.
ALTER TABLE agents ADD COLUMN IF NOT EXISTS queues text[] NOT NULL DEFAULT '{}';
