-- Helpdesk source schema (the operational OLTP database that CDC reads).
-- Idempotent: safe to apply on every start.

CREATE TABLE IF NOT EXISTS customers (
    id           bigserial PRIMARY KEY,
    name         text        NOT NULL,
    email        text        NOT NULL,
    organization text,
    tier         text        NOT NULL DEFAULT 'standard'
                 CHECK (tier IN ('free', 'standard', 'premium', 'enterprise')),
    language     text        NOT NULL DEFAULT 'en',
    region       text        NOT NULL DEFAULT 'us',
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS agents (
    id           bigserial PRIMARY KEY,
    name         text        NOT NULL,
    email        text        NOT NULL,
    team         text        NOT NULL,
    -- Skill level per category in 0..1, e.g. {"billing": 0.9, "technical": 0.4}.
    skills       jsonb       NOT NULL DEFAULT '{}'::jsonb,
    languages    text[]      NOT NULL DEFAULT ARRAY['en'],
    capacity     integer     NOT NULL DEFAULT 5 CHECK (capacity >= 0),
    status       text        NOT NULL DEFAULT 'online'
                 CHECK (status IN ('online', 'away', 'offline')),
    shift_start  smallint    NOT NULL DEFAULT 0 CHECK (shift_start BETWEEN 0 AND 23),
    shift_end    smallint    NOT NULL DEFAULT 24 CHECK (shift_end BETWEEN 1 AND 24),
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS tickets (
    id                bigserial PRIMARY KEY,
    customer_id       bigint      NOT NULL REFERENCES customers (id),
    subject           text        NOT NULL,
    description       text        NOT NULL DEFAULT '',
    channel           text        NOT NULL DEFAULT 'email'
                      CHECK (channel IN ('email', 'web', 'chat', 'phone', 'api')),
    status            text        NOT NULL DEFAULT 'new'
                      CHECK (status IN ('new', 'open', 'pending', 'on_hold', 'solved', 'closed')),
    priority          text
                      CHECK (priority IN ('urgent', 'high', 'normal', 'low')),
    category          text,
    intent            text,
    assigned_agent_id bigint      REFERENCES agents (id),
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    first_reply_at    timestamptz,
    solved_at         timestamptz,
    csat              smallint    CHECK (csat BETWEEN 1 AND 5)
);
CREATE INDEX IF NOT EXISTS tickets_status_idx ON tickets (status);
CREATE INDEX IF NOT EXISTS tickets_assigned_idx ON tickets (assigned_agent_id) WHERE assigned_agent_id IS NOT NULL;

CREATE TABLE IF NOT EXISTS ticket_events (
    id           bigserial PRIMARY KEY,
    ticket_id    bigint      NOT NULL REFERENCES tickets (id),
    kind         text        NOT NULL CHECK (kind IN ('comment', 'status_change', 'assignment')),
    author_type  text        NOT NULL CHECK (author_type IN ('customer', 'agent', 'system')),
    author_id    bigint,
    body         text,
    old_status   text,
    new_status   text,
    public       boolean     NOT NULL DEFAULT true,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS ticket_events_ticket_idx ON ticket_events (ticket_id);

CREATE TABLE IF NOT EXISTS kb_articles (
    id           bigserial PRIMARY KEY,
    title        text        NOT NULL,
    body         text        NOT NULL,
    category     text,
    language     text        NOT NULL DEFAULT 'en',
    published    boolean     NOT NULL DEFAULT true,
    updated_at   timestamptz NOT NULL DEFAULT now()
);

-- Replica identity. CDC consumers need the old row for two things: the previous value of
-- routing-relevant columns (an agent changing team, a ticket changing status or assignee)
-- and the key of deleted rows. FULL on tickets and agents gives complete "before" images
-- for those updates at the cost of larger WAL records; both tables change far less often
-- than they are read. ticket_events and kb_articles are append-mostly and customers change
-- rarely, so DEFAULT (primary key only) keeps their WAL small while still keying deletes.
ALTER TABLE tickets REPLICA IDENTITY FULL;
ALTER TABLE agents REPLICA IDENTITY FULL;
ALTER TABLE customers REPLICA IDENTITY DEFAULT;
ALTER TABLE ticket_events REPLICA IDENTITY DEFAULT;
ALTER TABLE kb_articles REPLICA IDENTITY DEFAULT;

-- One publication for every CDC consumer (Debezium or the embedded reader). Truncates are
-- published so that consumers can see them (op "t") instead of silently diverging.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = 'triage_cdc') THEN
        CREATE PUBLICATION triage_cdc
            FOR TABLE customers, agents, tickets, ticket_events, kb_articles
            WITH (publish = 'insert, update, delete, truncate');
    END IF;
END
$$;
