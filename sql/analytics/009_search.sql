-- Ticket and knowledge-base search on PostgreSQL full-text search: the embedded default,
-- used when no Elasticsearch is configured (TRIAGE_ELASTICSEARCH__URL unset).
-- Idempotent: every statement can run again on an existing schema.
--
-- Written by sinks/search_pg.py: one row per ticket / article, upserted only by a strictly
-- newer `version` (the source LSN), so replays never regress a row. Deleted tickets and
-- deleted or unpublished articles stay as tombstones (deleted = true, text emptied): a
-- replayed older version cannot bring them back. Text is PII-masked unless allowed.
--
-- Text search configuration: per row, from the ticket's detected language (en, de, fr, es
-- get english, german, french, spanish; anything else simple). A single 'simple' config
-- would only match exact word forms, and support text is full of inflections ("refunds" /
-- "refund", "Rechnungen" / "Rechnung", "facturas" / "factura"); one fixed language config
-- would stem every other language's words wrongly. The Snowball stemmer of the ticket's
-- own language handles both. Queries have no reliable language (they are a few words), so
-- the API parses the query with every one of these configs and ORs the results: a constant
-- tsquery that the GIN index serves, and that matches each row in its own language.
-- The config is stored in `search_config` because a generated column cannot call a
-- function that is not immutable, and to_tsvector(regconfig, text) is.

CREATE TABLE IF NOT EXISTS analytics.ticket_search (
    ticket_id          bigint      PRIMARY KEY,
    version            bigint      NOT NULL,
    deleted            boolean     NOT NULL DEFAULT false,
    subject            text        NOT NULL DEFAULT '',
    description        text        NOT NULL DEFAULT '',
    status             text        NOT NULL,
    priority           text        NOT NULL,
    category           text        NOT NULL,
    intent             text,
    queue              text        NOT NULL,
    channel            text        NOT NULL,
    language           text        NOT NULL,
    search_config      regconfig   NOT NULL DEFAULT 'simple',
    customer_id        bigint      NOT NULL,
    customer_tier      text        NOT NULL,
    organization       text,
    assigned_agent_id  bigint,
    created_at         timestamptz NOT NULL,
    updated_at         timestamptz,
    solved_at          timestamptz,
    indexed_at         timestamptz NOT NULL DEFAULT now(),
    -- The subject says what a ticket is about: its words weigh more (A) than the body's (B).
    document           tsvector    GENERATED ALWAYS AS (
        setweight(to_tsvector(search_config, subject), 'A')
        || setweight(to_tsvector(search_config, description), 'B')
    ) STORED
);
CREATE INDEX IF NOT EXISTS ticket_search_document_idx
    ON analytics.ticket_search USING gin (document);

CREATE TABLE IF NOT EXISTS analytics.kb_search (
    article_id     bigint      PRIMARY KEY,
    version        bigint      NOT NULL,
    deleted        boolean     NOT NULL DEFAULT false,
    title          text        NOT NULL DEFAULT '',
    body           text        NOT NULL DEFAULT '',
    category       text,
    language       text        NOT NULL,
    search_config  regconfig   NOT NULL DEFAULT 'simple',
    updated_at     timestamptz,
    indexed_at     timestamptz NOT NULL DEFAULT now(),
    document       tsvector    GENERATED ALWAYS AS (
        setweight(to_tsvector(search_config, title), 'A')
        || setweight(to_tsvector(search_config, body), 'B')
    ) STORED
);
CREATE INDEX IF NOT EXISTS kb_search_document_idx
    ON analytics.kb_search USING gin (document);
