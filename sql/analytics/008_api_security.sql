-- Read API security (api/security.py, api/audit.py): API keys and the audit log. Idempotent.
--
-- A key is shown once when created (`triage api-keys create`) and stored only as the
-- SHA-256 of the key: the table alone does not let anyone call the API.

CREATE TABLE IF NOT EXISTS analytics.api_keys (
    key_id                text        PRIMARY KEY,
    name                  text        NOT NULL,
    -- hex SHA-256 of the whole key (tri_...); requests are resolved by this column
    key_hash              text        NOT NULL UNIQUE CHECK (key_hash ~ '^[0-9a-f]{64}$'),
    -- read:tickets, read:routing, read:analytics, admin (admin implies the others)
    scopes                text[]      NOT NULL CHECK (cardinality(scopes) > 0),
    rate_limit_per_minute integer     NOT NULL DEFAULT 600 CHECK (rate_limit_per_minute > 0),
    created_at            timestamptz NOT NULL DEFAULT now(),
    -- set once by `triage api-keys revoke`; the API refuses the key within its cache TTL
    revoked_at            timestamptz,
    -- written by the API's audit writer, at most about once a second per key
    last_used_at          timestamptz
);

-- One row per read of customer data (per-ticket, per-agent, queue and search endpoints),
-- whatever its status code, written in batches after the response was sent.
CREATE TABLE IF NOT EXISTS analytics.api_audit (
    id           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at           timestamptz NOT NULL,
    -- an api_keys.key_id, or 'anonymous' when the API runs without auth
    key_id       text        NOT NULL,
    method       text        NOT NULL,
    path         text        NOT NULL,
    query        text        NOT NULL DEFAULT '',
    status_code  smallint    NOT NULL,
    ticket_id    bigint,
    agent_id     bigint,
    -- the peer address as the API saw it (the proxy's, unless proxy headers are trusted)
    client_addr  text
);

-- "Who read this ticket" and "what did this key read", newest first.
CREATE INDEX IF NOT EXISTS api_audit_ticket_at_idx
    ON analytics.api_audit (ticket_id, at DESC) WHERE ticket_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS api_audit_key_at_idx
    ON analytics.api_audit (key_id, at DESC);
CREATE INDEX IF NOT EXISTS api_audit_at_idx
    ON analytics.api_audit (at);
